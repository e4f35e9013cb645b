#!/usr/bin/env python3
"""The images `just check-slurm` predicts on its Slurm cluster, cut from and tiled out of data/conifer
(needs Pillow):

  folder/      six images of different sizes, so that a 4-task array gets uneven shares: the conifer image,
               crops of it, a mirrored copy and a gray one
  slide.png    SLIDE_WIDTH x SLIDE_HEIGHT, the conifer image tiled with mirror flips (seamless), so that the
               slide has several rows of 512 chunks for the shares of one slide

usage: slurm_data.py CONIFER_IMAGE OUT_DIR
"""

import sys
from pathlib import Path

from PIL import Image, ImageOps

SLIDE_WIDTH, SLIDE_HEIGHT = 1500, 2200


def mirror_tiled(image, width, height):
    """`image` repeated over a width x height canvas, every other tile flipped so that edges meet."""
    canvas = Image.new(image.mode, (width, height))
    w, h = image.size
    for row, y in enumerate(range(0, height, h)):
        for col, x in enumerate(range(0, width, w)):
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
    conifer = Image.open(sys.argv[1]).convert("RGB")
    out = Path(sys.argv[2])
    folder = out / "folder"
    folder.mkdir(parents=True, exist_ok=True)
    w, h = conifer.size
    conifer.save(folder / "a_conifer.png")
    conifer.crop((0, 0, w, h // 2)).save(folder / "b_top.png")
    conifer.crop((0, h // 2, w, h)).save(folder / "c_bottom.tif")
    conifer.crop((37, 101, 37 + 301, 101 + 455)).save(folder / "d_odd.png")
    ImageOps.mirror(conifer).save(folder / "e_mirrored.png")
    ImageOps.grayscale(conifer).save(folder / "f_gray.png")
    mirror_tiled(conifer, SLIDE_WIDTH, SLIDE_HEIGHT).save(out / "slide.png")


if __name__ == "__main__":
    main()
