#!/usr/bin/env python3
"""The held-out bar for the trainer's defaults: the segmenter's network (scripts/research/pytorch_step.py)
trained in PyTorch with plain random crops (no augmentation), 4 x 128^2, Adam 1e-3 constant, 3000
iterations, on the rows of IMAGE above the bottom --val-fraction, then scored on those held-out rows
(foreground IoU, Dice, pixel accuracy) from one whole-image pass, as the trainer's --val-fraction does (the
held-out rows see up to 8 training rows above them through the receptive field).

With --ignore-value V (partial labels, e.g. from scripts/research/make_strokes.py) the mask's pixels equal to
V are unlabelled: the loss is cross_entropy(..., ignore_index=255) and the held-out scores count labelled
pixels only.

Not part of CI: needs torch, numpy and pillow. Prints one JSON line.
Usage: python3 scripts/research/pytorch_baseline.py IMAGE MASK [--val-fraction 0.2] [--iterations 3000]
       [--seed 0] [--ignore-value V]
"""
import argparse
import json
import math
import time

import numpy as np
import torch
from PIL import Image
from torch import nn

from pytorch_step import SegNet


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("image")
    p.add_argument("mask")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ignore-value", type=int, help="mask pixels of this value are unlabelled")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    rgb = np.asarray(Image.open(a.image).convert("RGB"), dtype=np.float32) / 255.0
    gray = np.asarray(Image.open(a.mask).convert("L"))
    labels = (gray > 127).astype(np.int64)
    if a.ignore_value is not None:
        labels[gray == a.ignore_value] = 255
    h, w = labels.shape
    held = math.ceil(a.val_fraction * h)
    held += held % 2
    start = h - held  # the trainer's holdout_start
    train = rgb[:start]
    net = SegNet()
    net.mean.copy_(torch.tensor(train.reshape(-1, 3).mean(0)).view(1, 3, 1, 1))
    net.std.copy_(torch.tensor(train.reshape(-1, 3).std(0)).view(1, 3, 1, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x_all = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    y_all = torch.from_numpy(labels)
    t0 = time.time()
    for _ in range(a.iterations):
        tops = rng.integers(0, start - a.crop + 1, a.batch)
        lefts = rng.integers(0, w - a.crop + 1, a.batch)
        x = torch.stack([x_all[:, t:t + a.crop, l:l + a.crop] for t, l in zip(tops, lefts)])
        y = torch.stack([y_all[t:t + a.crop, l:l + a.crop] for t, l in zip(tops, lefts)])
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x), y, ignore_index=255)
        loss.backward()
        opt.step()
    seconds = time.time() - t0
    with torch.no_grad():
        ph, pw = h + h % 2, w + w % 2
        x = torch.zeros(1, 3, ph, pw)
        x[0, :, :h, :w] = x_all
        pred = (net(x)[0, 1] > net(x)[0, 0])[:h, :w].numpy()[start:]
    ref = labels[start:] == 1
    scored = labels[start:] != 255
    pred, ref = pred[scored], ref[scored]
    tp, fp, fn = (pred & ref).sum(), (pred & ~ref).sum(), (~pred & ref).sum()
    print(json.dumps({
        "image": a.image, "held_out_rows": [int(start), int(h)], "seed": a.seed, "iterations": a.iterations,
        "iou": float(tp / max(tp + fp + fn, 1)), "dice": float(2 * tp / max(2 * tp + fp + fn, 1)),
        "accuracy": float((pred == ref).mean()), "final_loss": loss.item(), "seconds": seconds,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
