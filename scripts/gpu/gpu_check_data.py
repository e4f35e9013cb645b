#!/usr/bin/env python3
"""The images scripts/gpu/gpu_check.sh uses, cut from data/conifer (needs Pillow):

  train.png, train_mask.png       rows 0-999 of the conifer image and mask: what the check trains on
  heldout.png, heldout_mask.png   rows 1000-1249: never trained on (the held-out split of docs/gpu.md)
  big2048.png                     2048 x 2048, the conifer image tiled with mirror flips (seamless), for
                                  prediction parity and speed on a large image

usage: gpu_check_data.py CONIFER_DIR OUT_DIR
"""

import sys
from pathlib import Path

from PIL import Image, ImageOps

HELD_OUT_FROM_ROW = 1000
BIG_SIDE = 2048


def mirror_tiled(image, side):
    """`image` repeated over a side x side canvas, every other tile flipped so that edges meet seamlessly."""
    canvas = Image.new(image.mode, (side, side))
    w, h = image.size
    for row, y in enumerate(range(0, side, h)):
        for col, x in enumerate(range(0, side, w)):
            tile = image
            if col % 2:
                tile = ImageOps.mirror(tile)
            if row % 2:
                tile = ImageOps.flip(tile)
            canvas.paste(tile, (x, y))
    return canvas


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    image = Image.open(source / "image.png").convert("RGB")
    mask = Image.open(source / "mask.png").convert("L")
    w, h = image.size
    if mask.size != (w, h) or h <= HELD_OUT_FROM_ROW:
        sys.exit(f"expected an image and mask of the same size, taller than {HELD_OUT_FROM_ROW} rows")
    image.crop((0, 0, w, HELD_OUT_FROM_ROW)).save(out / "train.png")
    mask.crop((0, 0, w, HELD_OUT_FROM_ROW)).save(out / "train_mask.png")
    image.crop((0, HELD_OUT_FROM_ROW, w, h)).save(out / "heldout.png")
    mask.crop((0, HELD_OUT_FROM_ROW, w, h)).save(out / "heldout_mask.png")
    mirror_tiled(image, BIG_SIDE).save(out / "big2048.png", optimize=True)


if __name__ == "__main__":
    main()
