#!/usr/bin/env python3
"""Stroke-like partial labels from a dense mask, as an annotator's brush would give them (the study of
docs/training.md, "Partial labels: the stroke study").

From MASK (> 127 foreground: on data/conifer the cell lumens), strokes of --width pixels are drawn along
  - the centre lines of the foreground regions (lumens) and of the background (cell walls): the skeletons
    of each class, labelled with that class;
  - with --edge D (default 0: none), also a line D pixels inside each foreground region's edge (the pixels
    whose distance to the background is D), labelled foreground: what tells the network where a lumen ends.
Every other pixel of the rows above the bottom --val-fraction is unlabelled (--ignore-value, 128); the
held-out rows keep their dense labels, so that `trainer train --val-fraction F --ignore-value 128` trains on
the strokes and scores against the dense mask.

Writes OUT (gray PNG: 0 background, 255 foreground, 128 unlabelled), prints the share of training-row pixels
labelled, and with --picture P.png draws the strokes over IMAGE (foreground strokes cyan, background ones
magenta, the held-out rows below a line).

Needs numpy, pillow, scipy and scikit-image.
Usage: python3 scripts/research/make_strokes.py MASK OUT [--edge 3] [--width 3] [--val-fraction 0.2]
       [--picture P.png --image IMAGE]
"""
import argparse
import math

import numpy as np
from PIL import Image
from scipy import ndimage
from skimage.morphology import skeletonize

IGNORE = 128


def strokes(foreground, width, edge):
    """(labelled, class) of stroke pixels: boolean arrays of the mask's shape."""
    brush = np.ones((width, width), bool)
    centre_fg = ndimage.binary_dilation(skeletonize(foreground), brush) & foreground
    centre_bg = ndimage.binary_dilation(skeletonize(~foreground), brush) & ~foreground
    fg = centre_fg
    if edge > 0:
        # Distance of each foreground pixel to the nearest background pixel (1 at the edge).
        distance = ndimage.distance_transform_edt(foreground)
        ring = (distance >= edge) & (distance < edge + 1)
        fg = fg | ring
    return fg | centre_bg, fg


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mask")
    p.add_argument("out")
    p.add_argument("--edge", type=float, default=0.0, help="a foreground stroke this far inside each edge")
    p.add_argument("--width", type=int, default=3, help="brush width in pixels")
    p.add_argument("--val-fraction", type=float, default=0.2, help="bottom rows kept dense (as the trainer's)")
    p.add_argument("--picture", help="also draw the strokes over --image into this file")
    p.add_argument("--image", help="the image the mask belongs to (for --picture)")
    a = p.parse_args()

    foreground = np.asarray(Image.open(a.mask).convert("L")) > 127
    h, _ = foreground.shape
    held = math.ceil(a.val_fraction * h)
    held += held % 2
    start = h - held  # the trainer's holdout_start
    labelled, fg = strokes(foreground, a.width, a.edge)
    out = np.full(foreground.shape, IGNORE, np.uint8)
    out[labelled & ~fg] = 0
    out[fg] = 255
    out[start:] = np.where(foreground[start:], 255, 0)
    Image.fromarray(out).save(a.out)
    share = labelled[:start].mean()
    fg_share = fg[:start].sum() / max(labelled[:start].sum(), 1)
    print(f"{a.out}: {100 * share:.1f}% of the {start} training rows labelled "
          f"({100 * fg_share:.0f}% of them foreground); rows {start}.. dense")

    if a.picture:
        rgb = np.asarray(Image.open(a.image).convert("RGB")).astype(np.float32) * 0.6
        rgb[labelled & ~fg] = (255, 0, 255)
        rgb[fg] = (0, 255, 255)
        rgb[start:] = np.asarray(Image.open(a.image).convert("RGB"))[start:] * 0.6
        rgb[start - 1:start + 1] = (255, 255, 0)
        Image.fromarray(rgb.astype(np.uint8)).save(a.picture)


if __name__ == "__main__":
    main()
