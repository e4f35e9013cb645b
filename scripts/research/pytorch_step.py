#!/usr/bin/env python3
"""Seconds per training step (forward, cross-entropy, backward, Adam) of the segmenter's network in PyTorch
on the CPU: the reference the Rust trainer is compared with by `just bench` (bench/src/train.rs).

Not a project requirement: it needs torch (`pip install torch`), which stays out of CI. Prints one JSON line:
{"torch": version, "threads": n, "batch": b, "size": s, "seconds": [per timed step],
 "peak_resident_bytes": the process's VmHWM or null}.
"""
import argparse
import json
import time

import torch
from torch import nn


class SegNet(nn.Module):
    """The fixed network: conv 3x3 16 -> ReLU -> conv 3x3 32 -> ReLU -> maxpool 2 -> conv 3x3 16 -> ReLU
    -> upsample 2x nearest -> conv 5x5 C (logits, C classes: 2 by default); input normalised per channel
    inside the network."""

    def __init__(self, classes=2):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 16, 3, padding=1)
        self.conv4 = nn.Conv2d(16, classes, 5, padding=2)
        self.register_buffer("mean", torch.full((1, 3, 1, 1), 0.5))
        self.register_buffer("std", torch.full((1, 3, 1, 1), 0.25))

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        x = nn.functional.max_pool2d(x, 2)
        x = torch.relu(self.conv3(x))
        x = nn.functional.interpolate(x, scale_factor=2, mode="nearest")
        return self.conv4(x)


def peak_resident_bytes():
    """The process's resident high-water mark (VmHWM), or None off Linux."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="intra-op threads (0: torch's default)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    net = SegNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x = torch.rand(args.batch, 3, args.size, args.size)
    labels = (torch.rand(args.batch, args.size, args.size) >= 0.5).long()
    seconds = []
    for i in range(args.warmup + args.steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x), labels)
        loss.backward()
        opt.step()
        loss.item()
        if i >= args.warmup:
            seconds.append(time.perf_counter() - start)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "batch": args.batch,
                      "size": args.size, "seconds": seconds, "peak_resident_bytes": peak_resident_bytes()}))


if __name__ == "__main__":
    main()
