"""Writes the big test image of `just bench` (stream section): an RGB BigTIFF, tiled 512, Deflate, from a
tile generator, so the image is never held in memory. Usage: make_big_tiff.py PATH WIDTH HEIGHT
The pattern is smooth blobs plus noise, so that the model predicts both classes and Deflate has work."""
import sys

import numpy as np
import tifffile

path, width, height = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
TILE = 512


def tiles():
    rng = np.random.default_rng(0)
    for ty in range(0, height, TILE):
        for tx in range(0, width, TILE):
            y, x = np.mgrid[ty:ty + TILE, tx:tx + TILE].astype(np.float32)
            v = 0.5 + 0.25 * np.sin(x / 37.0) * np.cos(y / 53.0) + 0.25 * np.sin((x + y) / 91.0)
            noise = rng.integers(0, 24, (TILE, TILE, 3), dtype=np.uint8)
            base = (v * 200).astype(np.uint8)[..., None]
            yield np.concatenate([base, 255 - base, base // 2], axis=-1) + noise


tifffile.imwrite(path, tiles(), shape=(height, width, 3), dtype=np.uint8, tile=(TILE, TILE), compression="zlib",
                 bigtiff=True, photometric="rgb")
