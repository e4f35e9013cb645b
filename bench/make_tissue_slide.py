"""Writes the tissue bench's slide: islands of H&E-like tissue (eosin-pink with haematoxylin-purple nuclei)
on off-white glass with scanner-like noise, as a tiled BigTIFF with JPEG tiles (quality 90) and
reduced-resolution pages down to 1/32, from a tile generator (never held whole). Also writes PATH.truth.npy,
the islands at 1/8 (True where tissue), for the coverage check.
Usage: make_tissue_slide.py PATH SIDE [TISSUE_SHARE]  (default share 0.25)"""
import sys

import numpy as np
import tifffile

path, side = sys.argv[1], int(sys.argv[2])
share = float(sys.argv[3]) if len(sys.argv) > 3 else 0.25
TILE = 512
rng = np.random.default_rng(7)

# Islands: ellipses added until their union covers about `share` of the slide (measured on a 1/8 grid).
coarse = side // 8
yy, xx = np.mgrid[0:coarse, 0:coarse].astype(np.float32) * 8 + 4
truth = np.zeros((coarse, coarse), bool)
islands = []
while truth.mean() < share:
    cx, cy = rng.uniform(0.08, 0.92, 2) * side
    rx, ry = rng.uniform(0.03, 0.09, 2) * side
    islands.append((cx, cy, rx, ry))
    truth |= ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
np.save(path + ".truth.npy", truth)


def inside(x, y):
    m = np.zeros(x.shape, bool)
    for cx, cy, rx, ry in islands:
        m |= ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1
    return m


def level_tiles(scale):
    width = height = side // scale
    for ty in range(0, height, TILE):
        for tx in range(0, width, TILE):
            y, x = np.mgrid[ty:ty + TILE, tx:tx + TILE].astype(np.float32) * scale
            tissue = inside(x, y)
            glass = np.array([238, 236, 240], np.int16) + rng.integers(-6, 7, (TILE, TILE, 3), dtype=np.int16)
            nuclei = (np.sin(x / 5.0) * np.cos(y / 7.0) > 0.6)[..., None]
            stain = np.where(nuclei, np.array([110, 50, 150], np.int16), np.array([225, 140, 190], np.int16))
            stain = stain + rng.integers(-15, 16, (TILE, TILE, 3), dtype=np.int16)
            tile = np.where(tissue[..., None], stain, glass)
            yield np.clip(tile, 0, 255).astype(np.uint8)


# tifffile takes photometric="ycbcr" pixels as YCbCr already; with "rgb" the JPEG codec converts to YCbCr
# internally (as a scanner's JPEG tiles hold it), and the TIFF says RGB.
options = dict(tile=(TILE, TILE), compression="jpeg", compressionargs={"level": 90}, photometric="rgb")
with tifffile.TiffWriter(path, bigtiff=True) as tif:
    for i, scale in enumerate([1, 4, 16, 32]):
        n = side // scale
        tif.write(level_tiles(scale), shape=(n, n, 3), dtype=np.uint8, subfiletype=0 if i == 0 else 1, **options)
print(f"{path}: {side}x{side}, {len(islands)} islands, tissue {truth.mean():.3f} of the slide")
