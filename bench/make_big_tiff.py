"""Writes the big test images of `just bench` (stream and slides sections): an RGB BigTIFF, tiled 512, from a
tile generator, so the image is never held in memory.
Usage: make_big_tiff.py PATH WIDTH HEIGHT [deflate|jpeg]
deflate (the default): RGB, Deflate. jpeg: JPEG tiles in YCbCr with 4:2:0 chroma subsampling (quality 90), as
scanners and libtiff write them (needs imagecodecs). The pattern is smooth blobs plus noise, so that the model
predicts both classes and the codec has work; both codecs get the same pixels."""
import sys

import numpy as np
import tifffile

path, width, height = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
codec = sys.argv[4] if len(sys.argv) > 4 else "deflate"
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


if codec == "deflate":
    options = dict(compression="zlib", photometric="rgb")
elif codec == "jpeg":
    options = dict(compression="jpeg", compressionargs={"level": 90}, photometric="ycbcr", subsampling=(2, 2))
else:
    sys.exit(f"make_big_tiff.py: codec {codec!r}: expected deflate or jpeg")
tifffile.imwrite(path, tiles(), shape=(height, width, 3), dtype=np.uint8, tile=(TILE, TILE), bigtiff=True,
                 **options)
