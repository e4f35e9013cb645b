#!/usr/bin/env python3
"""Compares the trainer's loss and parameter gradients with PyTorch's for the same weights and batch: loads a
trainer checkpoint (weights and normalisation) into the PyTorch network of
scripts/research/pytorch_step.py, cuts four fixed 128^2 crops from IMAGE and MASK, and runs the trainer's side
(trainer/examples/gradients.rs) on the same bytes. Prints, per parameter, the gradient norms and the relative difference ||ours - torch|| /
||torch||; exits 1 when any is above --tolerance.

This is how the max-pool gradient bug was found: candle 0.11's max-pool backward gives ties/4 of a window's
gradient to each maximum, so conv1's and conv2's gradients were off by factors of 1 to 4 per channel.

Not part of CI: needs torch, numpy and pillow, and a release build (`cargo build --release -p trainer
--example gradients`).
Usage: python3 scripts/research/pytorch_gradients.py CHECKPOINT IMAGE MASK [--reference-ops]
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image
from torch import nn

from pytorch_step import SegNet

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))  # scripts/research/ -> the repository
PARAMETERS = [f"conv{i}.{kind}" for i in range(1, 5) for kind in ("weight", "bias")]


def read_safetensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        start, end = info["data_offsets"]
        tensors[name] = torch.from_numpy(
            np.frombuffer(data[8 + n + start:8 + n + end], dtype="<f4").copy()).view(info["shape"])
    return tensors


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("image")
    p.add_argument("mask")
    p.add_argument("--reference-ops", action="store_true", help="the trainer with candle's own ops")
    p.add_argument("--tolerance", type=float, default=1e-3)
    a = p.parse_args()

    tensors = read_safetensors(a.checkpoint)
    net = SegNet()
    state = net.state_dict()
    for name in PARAMETERS:
        state[name].copy_(tensors[name])
    net.mean.copy_(tensors["normalization.mean"].view(1, 3, 1, 1))
    net.std.copy_(tensors["normalization.std"].view(1, 3, 1, 1))

    rgb = np.asarray(Image.open(a.image).convert("RGB"), dtype=np.float32) / 255.0
    labels = (np.asarray(Image.open(a.mask).convert("L")) > 127).astype(np.int64)
    h, w = labels.shape
    size = 128
    # Four crops spread over the image: corners and centre.
    origins = [(0, 0), (h - size, w - size), ((h - size) // 2, (w - size) // 2), (h - size, 0)]
    x = np.stack([rgb[t:t + size, l:l + size].transpose(2, 0, 1) for t, l in origins]).astype("<f4")
    y = np.stack([labels[t:t + size, l:l + size] for t, l in origins])

    with tempfile.TemporaryDirectory() as tmp:
        x.tofile(os.path.join(tmp, "x.f32"))
        y.astype("<u4").tofile(os.path.join(tmp, "y.u32"))
        cmd = [os.path.join(ROOT, "target", "release", "examples", "gradients"), a.checkpoint,
               os.path.join(tmp, "x.f32"), os.path.join(tmp, "y.u32"), str(len(origins)), str(size)]
        if a.reference_ops:
            cmd.append("--reference-ops")
        ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)

    loss = nn.functional.cross_entropy(net(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    print(f"loss: ours {ours['loss']:.6f}, torch {loss.item():.6f}")
    print(f"{'parameter':<14} {'|grad| ours':>12} {'|grad| torch':>12} {'rel. diff':>10}")
    worst = 0.0
    for name, param in net.named_parameters():
        theirs = param.grad.flatten().double()
        mine = torch.tensor(ours["gradients"][name], dtype=torch.float64)
        diff = ((mine - theirs).norm() / theirs.norm()).item()
        worst = max(worst, diff)
        print(f"{name:<14} {mine.norm().item():>12.4e} {theirs.norm().item():>12.4e} {diff:>10.1e}")
    verdict = "within" if worst <= a.tolerance else "ABOVE"
    print(f"largest relative difference {worst:.1e}: {verdict} the tolerance {a.tolerance}")
    return 0 if worst <= a.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
