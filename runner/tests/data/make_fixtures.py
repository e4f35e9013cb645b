"""Writes the small TIFF fixtures of runner/tests/streaming.rs (tiff_fixtures_decode_to_their_pattern).

Every file holds the same pattern at 40x37 (odd, so edge tiles and strips are partial):
R = 7x + 3y, G = 5x + 11y, B = x xor y (mod 256); gray files hold R; 16-bit files hold v * 257.
Run: python3 -m venv .venv && .venv/bin/pip install tifffile numpy pillow && .venv/bin/python make_fixtures.py
"""
import numpy as np
import tifffile
from PIL import Image  # LZW: tifffile needs imagecodecs for it, Pillow has it built in

H, W = 37, 40
y, x = np.mgrid[0:H, 0:W]
rgb = np.stack([(7 * x + 3 * y) % 256, (5 * x + 11 * y) % 256, (x ^ y) % 256], axis=-1).astype(np.uint8)
gray = rgb[..., 0].copy()
alpha = np.full((H, W, 1), 7, np.uint8)

tifffile.imwrite("tiled_rgb_deflate.tif", rgb, tile=(16, 16), compression="zlib", photometric="rgb")
Image.fromarray(rgb).save("striped_rgb_lzw.tif", compression="tiff_lzw")
tifffile.imwrite("rgb16_deflate.tif", rgb.astype(np.uint16) * 257, rowsperstrip=8, compression="zlib",
                 photometric="rgb")
tifffile.imwrite("bigtiff_tiled_rgb.tif", rgb, bigtiff=True, tile=(16, 32), compression="zlib", photometric="rgb")
tifffile.imwrite("gray_tiled_deflate.tif", gray, tile=(16, 16), compression="zlib", photometric="minisblack")
Image.fromarray(gray).save("gray_lzw.tif", compression="tiff_lzw")
tifffile.imwrite("gray16_striped.tif", gray.astype(np.uint16) * 257, rowsperstrip=4, photometric="minisblack")
tifffile.imwrite("rgba_striped.tif", np.concatenate([rgb, alpha], axis=-1), rowsperstrip=10, photometric="rgb",
                 extrasamples=["unassalpha"])
