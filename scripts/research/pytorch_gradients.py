#!/usr/bin/env python3
"""Compares the trainer's loss and parameter gradients with PyTorch's for the same weights and batch: loads a
trainer checkpoint (weights and normalisation) into the PyTorch network of
scripts/research/pytorch_step.py, cuts four fixed 128^2 crops from IMAGE and MASK, and runs the trainer's side
(trainer/examples/gradients.rs) on the same bytes. Prints, per parameter, the gradient norms and the relative difference ||ours - torch|| /
||torch||; exits 1 when any is above --tolerance.

This is how the max-pool gradient bug was found: candle 0.11's max-pool backward gives ties/4 of a window's
gradient to each maximum, so conv1's and conv2's gradients were off by factors of 1 to 4 per channel.

With --ignore-value V the mask's pixels equal to V are unlabelled (checked before the > 127 rule, as the
trainer's --ignore-value): the trainer's labels carry 255 there and PyTorch gets ignore_index=255.

More than two classes: the network takes the checkpoint's number of classes (conv4's outputs); with
--label-format index the mask's values are the classes (the trainer's --label-format index). The logits of
both sides are compared too (largest absolute difference, --logits-tolerance), and the loss and every
gradient by their relative difference (--tolerance). How the N = 3 case was run is in docs/training.md.

--loss-reference OUT.json writes the masked loss alone on a small fixed batch of logits (2 x 2 x 6 x 10,
seeded, about a third unlabelled): logits, labels, PyTorch's cross_entropy(..., ignore_index=255) and its
gradient with respect to the logits. trainer/tests/masked_loss.rs compares the trainer's loss with the
committed file (trainer/tests/data/masked_loss_torch.json), and runs this to compare with PyTorch itself
where python3 has torch.

Not part of CI: needs torch, numpy and pillow, and a release build (`cargo build --release -p trainer
--example gradients`).
Usage: python3 scripts/research/pytorch_gradients.py CHECKPOINT IMAGE MASK [--reference-ops]
       [--ignore-value V] [--label-format binary|index] [--tolerance T] [--logits-tolerance T]
       python3 scripts/research/pytorch_gradients.py --loss-reference OUT.json
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
IGNORE_INDEX = 255  # the trainer's label of an unlabelled pixel (imaging::labels::UNLABELLED)


def loss_reference(path):
    """The masked loss of a small seeded batch and its gradient, as JSON (see the docstring)."""
    gen = torch.Generator().manual_seed(23)
    shape = (2, 2, 6, 10)
    logits = (torch.randn(shape, generator=gen) * 3).float()
    labels = torch.randint(0, 2, (shape[0], shape[2], shape[3]), generator=gen)
    labels[torch.rand(labels.shape, generator=gen) < 0.35] = IGNORE_INDEX
    x = logits.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(x, labels, ignore_index=IGNORE_INDEX)
    loss.backward()
    out = {
        "shape": list(shape),
        "ignore_index": IGNORE_INDEX,
        "logits": [float(v) for v in logits.flatten()],
        "labels": [int(v) for v in labels.flatten()],
        "loss": loss.item(),
        "grad": [float(v) for v in x.grad.flatten()],
        "torch": torch.__version__,
    }
    with open(path, "w") as f:
        json.dump(out, f)
        f.write("\n")


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
    p.add_argument("checkpoint", nargs="?")
    p.add_argument("image", nargs="?")
    p.add_argument("mask", nargs="?")
    p.add_argument("--reference-ops", action="store_true", help="the trainer with candle's own ops")
    p.add_argument("--ignore-value", type=int, help="mask pixels of this value are unlabelled")
    p.add_argument("--loss-reference", metavar="OUT.json", help="write the masked-loss reference and stop")
    p.add_argument("--label-format", choices=["binary", "index"], default="binary",
                   help="binary: > 127 is class 1; index: the mask's values are the classes")
    p.add_argument("--tolerance", type=float, default=1e-3, help="largest relative difference of the loss "
                   "and of each gradient")
    p.add_argument("--logits-tolerance", type=float, default=1e-5,
                   help="largest absolute difference of a logit")
    p.add_argument("--binary", help="the gradients example to run [default: target/release/examples/gradients]")
    a = p.parse_args()
    if a.loss_reference:
        loss_reference(a.loss_reference)
        return 0
    if not (a.checkpoint and a.image and a.mask):
        p.error("CHECKPOINT IMAGE MASK are needed (or --loss-reference OUT.json)")

    tensors = read_safetensors(a.checkpoint)
    classes = tensors["conv4.bias"].shape[0]
    net = SegNet(classes)
    state = net.state_dict()
    for name in PARAMETERS:
        state[name].copy_(tensors[name])
    net.mean.copy_(tensors["normalization.mean"].view(1, 3, 1, 1))
    net.std.copy_(tensors["normalization.std"].view(1, 3, 1, 1))

    rgb = np.asarray(Image.open(a.image).convert("RGB"), dtype=np.float32) / 255.0
    gray = np.asarray(Image.open(a.mask).convert("L"))
    labels = gray.astype(np.int64) if a.label_format == "index" else (gray > 127).astype(np.int64)
    if a.ignore_value is not None:
        labels[gray == a.ignore_value] = IGNORE_INDEX
    h, w = labels.shape
    size = 128
    # Four crops spread over the image: corners and centre.
    origins = [(0, 0), (h - size, w - size), ((h - size) // 2, (w - size) // 2), (h - size, 0)]
    x = np.stack([rgb[t:t + size, l:l + size].transpose(2, 0, 1) for t, l in origins]).astype("<f4")
    y = np.stack([labels[t:t + size, l:l + size] for t, l in origins])

    with tempfile.TemporaryDirectory() as tmp:
        x.tofile(os.path.join(tmp, "x.f32"))
        y.astype("<u4").tofile(os.path.join(tmp, "y.u32"))
        binary = a.binary or os.path.join(ROOT, "target", "release", "examples", "gradients")
        cmd = [binary, a.checkpoint,
               os.path.join(tmp, "x.f32"), os.path.join(tmp, "y.u32"), str(len(origins)), str(size)]
        if a.reference_ops:
            cmd.append("--reference-ops")
        cmd += ["--logits", os.path.join(tmp, "logits.f32")]
        ours = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        our_logits = np.fromfile(os.path.join(tmp, "logits.f32"), dtype="<f4")

    logits = net(torch.from_numpy(x))
    logit_diff = float(np.abs(our_logits - logits.detach().numpy().ravel()).max())
    labelled = int((y != IGNORE_INDEX).sum())
    print(f"{classes} classes, {labelled} of {y.size} pixels labelled; logits: largest |ours - torch| "
          f"{logit_diff:.1e} (largest |logit| {float(logits.detach().abs().max()):.2f})")
    loss = nn.functional.cross_entropy(logits, torch.from_numpy(y), ignore_index=IGNORE_INDEX)
    loss.backward()
    loss_diff = abs(ours["loss"] - loss.item()) / abs(loss.item())
    print(f"loss: ours {ours['loss']:.6f}, torch {loss.item():.6f}, relative difference {loss_diff:.1e}")
    print(f"{'parameter':<14} {'|grad| ours':>12} {'|grad| torch':>12} {'rel. diff':>10}")
    worst = 0.0
    for name, param in net.named_parameters():
        theirs = param.grad.flatten().double()
        mine = torch.tensor(ours["gradients"][name], dtype=torch.float64)
        diff = ((mine - theirs).norm() / theirs.norm()).item()
        worst = max(worst, diff)
        print(f"{name:<14} {mine.norm().item():>12.4e} {theirs.norm().item():>12.4e} {diff:>10.1e}")
    worst = max(worst, loss_diff)
    ok = worst <= a.tolerance and logit_diff <= a.logits_tolerance
    verdict = "within" if ok else "ABOVE"
    print(f"largest relative difference {worst:.1e}, largest logit difference {logit_diff:.1e}: {verdict} the "
          f"tolerances {a.tolerance} and {a.logits_tolerance}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
