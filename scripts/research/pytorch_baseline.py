#!/usr/bin/env python3
"""The held-out bar for the trainer's defaults: the segmenter's network (scripts/research/pytorch_step.py)
trained in PyTorch with plain random crops (no augmentation), 4 x 128^2, Adam 1e-3 constant, 3000
iterations, on the rows of IMAGE above the bottom --val-fraction, then scored on those held-out rows
(foreground IoU, Dice, pixel accuracy) from one whole-image pass, as the trainer's --val-fraction does (the
held-out rows see up to 8 training rows above them through the receptive field).

With --ignore-value V (partial labels, e.g. from scripts/research/make_strokes.py) the mask's pixels equal to
V are unlabelled: the loss is cross_entropy(..., ignore_index=255) and the held-out scores count labelled
pixels only.

With --label-format index the mask's values are class indices and the network has as many classes as the
mask implies (the largest value + 1; the trainer's --label-format index); with more than two classes the
crops are drawn as the trainer draws them (a class uniformly among those present in the training rows, one
of its pixels uniformly, the crop uniformly among those holding that pixel), and the held-out scores are
each class's IoU and Dice (argmax, the first class on a tie) and their means.

Not part of CI: needs torch, numpy and pillow. Prints one JSON line.
Usage: python3 scripts/research/pytorch_baseline.py IMAGE MASK [--val-fraction 0.2] [--iterations 3000]
       [--seed 0] [--ignore-value V] [--label-format binary|index]
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
    p.add_argument("--label-format", choices=["binary", "index"], default="binary")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    rgb = np.asarray(Image.open(a.image).convert("RGB"), dtype=np.float32) / 255.0
    gray = np.asarray(Image.open(a.mask).convert("L"))
    labels = gray.astype(np.int64) if a.label_format == "index" else (gray > 127).astype(np.int64)
    if a.ignore_value is not None:
        labels[gray == a.ignore_value] = 255
    classes = max(2, int(labels[labels != 255].max()) + 1)
    h, w = labels.shape
    held = math.ceil(a.val_fraction * h)
    held += held % 2
    start = h - held  # the trainer's holdout_start
    train = rgb[:start]
    net = SegNet(classes)
    net.mean.copy_(torch.tensor(train.reshape(-1, 3).mean(0)).view(1, 3, 1, 1))
    net.std.copy_(torch.tensor(train.reshape(-1, 3).std(0)).view(1, 3, 1, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x_all = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    y_all = torch.from_numpy(labels)
    t0 = time.time()
    # The trainer's class-targeted crops (more than two classes): up to 65,536 pixels kept per class, every
    # k-th in raster order.
    kept = []
    for c in range(classes):
        at = np.flatnonzero(labels[:start] == c)
        kept.append(at[::max(1, -(-len(at) // 65536))])
    present = [c for c in range(classes) if len(kept[c])]
    for _ in range(a.iterations):
        if classes > 2:
            tops, lefts = [], []
            for _ in range(a.batch):
                c = present[rng.integers(len(present))]
                row, col = divmod(int(kept[c][rng.integers(len(kept[c]))]), w)
                tops.append(rng.integers(max(0, row + 1 - a.crop), min(row, start - a.crop) + 1))
                lefts.append(rng.integers(max(0, col + 1 - a.crop), min(col, w - a.crop) + 1))
        else:
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
        logits = net(x)[0, :, :h, :w][:, start:]
        classes_pred = logits.argmax(0).numpy()
        pred = (logits[1] > logits[0]).numpy()
    scored = labels[start:] != 255
    if classes > 2:
        ref_c, pred_c = labels[start:][scored], classes_pred[scored]
        ious, dices = [], []
        for c in range(classes):
            tp = int(((pred_c == c) & (ref_c == c)).sum())
            union = int(((pred_c == c) | (ref_c == c)).sum())
            both = int((pred_c == c).sum() + (ref_c == c).sum())
            ious.append(tp / union if union else None)
            dices.append(2 * tp / both if both else None)
        defined = [v for v in ious if v is not None]
        print(json.dumps({
            "image": a.image, "mask": a.mask, "classes": classes, "held_out_rows": [int(start), int(h)],
            "seed": a.seed, "iterations": a.iterations, "iou_per_class": ious, "dice_per_class": dices,
            "mean_iou": sum(defined) / len(defined), "accuracy": float((pred_c == ref_c).mean()),
            "final_loss": loss.item(), "seconds": seconds, "torch": torch.__version__,
        }))
        return
    ref = labels[start:] == 1
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
