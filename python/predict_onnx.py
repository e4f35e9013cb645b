#!/usr/bin/env python3
"""Predicts the foreground mask of a whole image with an exported model.onnx, by the same exact
overlapping tiles as `runner predict`, using only numpy, Pillow and onnxruntime.

The tiling parameters come from the model's own metadata: `halo_px` (pixels read around each kept tile
centre), `pixel_budget` (input pixels per forward pass, batch x height x width) and `even_hw_required`
(the 2x2 max-pool needs even sizes: the image is padded with zeros at the bottom and right to even size,
predicted, and cropped back). Window origins are even and windows at the border reach the border, so the
stitched result equals one pass over the whole (even-padded) image.

Usage: predict_onnx.py MODEL.onnx IMAGE OUTPUT.png [--probabilities P.npy]
"""

import argparse
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image


def axis_windows(length, tile, halo):
    """(window start, window length, keep start, keep length) along an even `length`: full windows of
    `tile` px each keeping all but a `halo` on inner sides, then a last, possibly shorter, window that
    reaches the end."""
    windows, keep_start = [], 0
    while True:
        start = max(keep_start - halo, 0)
        if start + tile >= length:
            windows.append((start, length - start, keep_start, length - keep_start))
            return windows
        keep_end = start + tile - halo
        windows.append((start, tile, keep_start, keep_end - keep_start))
        keep_start = keep_end


def tile_plan(height, width, halo, budget):
    """Batches of windows of one size, each within `budget` input pixels: a list of
    ((window height, window width), [(wy, wx, ky, kx, kh, kw), ...])."""
    side = int(budget**0.5)
    tile = side - side % 2
    groups = {}
    for wy, wh, ky, kh in axis_windows(height, tile, halo):
        for wx, ww, kx, kw in axis_windows(width, tile, halo):
            groups.setdefault((wh, ww), []).append((wy, wx, ky, kx, kh, kw))
    batches = []
    for (wh, ww), tiles in groups.items():
        per_batch = max(budget // (wh * ww), 1)
        for i in range(0, len(tiles), per_batch):
            batches.append(((wh, ww), tiles[i : i + per_batch]))
    return batches


def metadata(session):
    meta = session.get_modelmeta().custom_metadata_map
    try:
        return int(meta["halo_px"]), int(meta["pixel_budget"]), meta.get("even_hw_required") == "true"
    except KeyError as e:
        sys.exit(f"error: the model has no `{e.args[0]}` metadata; export it with `trainer export`")


def predict(session, rgb):
    """Foreground mask (uint8 0/1) and foreground probability (float32) of an (H, W, 3) uint8 image."""
    halo, budget, even = metadata(session)
    height, width = rgb.shape[:2]
    ph, pw = (height + height % 2, width + width % 2) if even else (height, width)
    padded = np.zeros((ph, pw, 3), dtype=np.uint8)
    padded[:height, :width] = rgb
    classes = np.zeros((ph, pw), dtype=np.uint8)
    probability = np.zeros((ph, pw), dtype=np.float32)
    for (wh, ww), tiles in tile_plan(ph, pw, halo, budget):
        batch = np.stack([padded[wy : wy + wh, wx : wx + ww] for wy, wx, *_ in tiles])
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2)).astype(np.float32) / np.float32(255)
        logits, probabilities = session.run(["logits", "probabilities"], {"image": x})
        for i, (wy, wx, ky, kx, kh, kw) in enumerate(tiles):
            keep = (slice(ky - wy, ky - wy + kh), slice(kx - wx, kx - wx + kw))
            # Foreground where logit 1 > logit 0, as the runner decides.
            classes[ky : ky + kh, kx : kx + kw] = logits[i, 1][keep] > logits[i, 0][keep]
            probability[ky : ky + kh, kx : kx + kw] = probabilities[i, 1][keep]
    return classes[:height, :width], probability[:height, :width]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="model.onnx written by `trainer export`")
    parser.add_argument("image", help="image to segment (anything Pillow reads; converted to RGB)")
    parser.add_argument("output", help="predicted mask, foreground white (.png)")
    parser.add_argument("--probabilities", help="also write the foreground probability, float32 (H, W), as .npy")
    args = parser.parse_args(argv[1:])
    try:
        session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises several unrelated types for unreadable files
        sys.exit(f"error: cannot load {args.model}: {e}")
    try:
        rgb = np.asarray(Image.open(args.image).convert("RGB"))
    except OSError as e:
        sys.exit(f"error: cannot read {args.image}: {e}")
    classes, probability = predict(session, rgb)
    Image.fromarray(classes * np.uint8(255)).save(args.output)
    if args.probabilities:
        np.save(args.probabilities, probability)
    print(f"{args.image}: {rgb.shape[1]}x{rgb.shape[0]}, foreground {classes.mean():.4f} -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
