#!/usr/bin/env python3
"""Checks an OME-Zarr store written by imaging's OME-Zarr writer with zarr-python, a reader that is not ours:

- the store opens as a Zarr v2 group whose `.zattrs` hold NGFF 0.4 `multiscales`: axes y,x (gray) or c,y,x
  (RGB) with types space/channel, datasets "0", "1", ... each with a `scale` transform that doubles per level;
- each level is ceil(w/2) x ceil(h/2) of the one above, down to the first level whose longer side is at most
  1024; chunks are 512 x 512 (channel chunk 3); dtype uint8 or float32; fill value 0;
- `REFERENCE` (.png read with Pillow, or .npy): level 0 equals it exactly (RGB compared as c,y,x).

Usage: check_ome_zarr.py STORE [REFERENCE]   (needs zarr >= 2.x, numpy; pillow for a PNG reference)
Exits 1 when a check fails.
"""

import sys

import numpy as np
import zarr

SMALLEST_SIDE = 1024
CHUNK = 512


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__)
        sys.exit(2)
    store = sys.argv[1]
    group = zarr.open_group(store, mode="r")
    attrs = dict(group.attrs)
    multiscales = attrs.get("multiscales")
    if not multiscales:
        fail("no multiscales in .zattrs")
    m = multiscales[0]
    if m.get("version") != "0.4":
        fail(f"version {m.get('version')!r}, expected '0.4'")
    axes = [a["name"] for a in m["axes"]]
    if axes not in (["y", "x"], ["c", "y", "x"]):
        fail(f"axes {axes}")
    for a in m["axes"]:
        want = "channel" if a["name"] == "c" else "space"
        if a.get("type") != want:
            fail(f"axis {a['name']} has type {a.get('type')!r}")
    datasets = m["datasets"]
    first_scale = None
    shapes = []
    for level, d in enumerate(datasets):
        if d["path"] != str(level):
            fail(f"dataset {level} has path {d['path']!r}")
        scale = [t for t in d["coordinateTransformations"] if t["type"] == "scale"][0]["scale"]
        if first_scale is None:
            first_scale = scale
        want = [s * (2**level) for s in first_scale[-2:]]
        if not np.allclose(scale[-2:], want):
            fail(f"level {level} scale {scale}, expected {want} in y,x")
        array = group[d["path"]]
        shapes.append(array.shape)
        if len(array.shape) != len(axes):
            fail(f"level {level} shape {array.shape} for axes {axes}")
        want_chunks = (3, CHUNK, CHUNK) if len(axes) == 3 else (CHUNK, CHUNK)
        if tuple(array.chunks) != want_chunks:
            fail(f"level {level} chunks {array.chunks}")
        if array.dtype not in (np.uint8, np.float32):
            fail(f"level {level} dtype {array.dtype}")
        if array.fill_value != 0:
            fail(f"level {level} fill value {array.fill_value}")
        print(f"level {level}: shape {array.shape}, chunks {array.chunks}, dtype {array.dtype}, scale {scale}")
    h, w = shapes[0][-2:]
    want_sizes = [(h, w)]
    while max(h, w) > SMALLEST_SIDE:
        h, w = (h + 1) // 2, (w + 1) // 2
        want_sizes.append((h, w))
    if [s[-2:] for s in shapes] != want_sizes:
        fail(f"level sizes {[s[-2:] for s in shapes]}, expected {want_sizes}")
    level0 = group["0"][...]
    if len(sys.argv) == 3:
        ref_path = sys.argv[2]
        if ref_path.lower().endswith(".npy"):
            ref = np.load(ref_path)
        else:
            from PIL import Image

            ref = np.asarray(Image.open(ref_path))
        if ref.ndim == 3:
            ref = np.moveaxis(ref, 2, 0)
        if ref.shape != level0.shape or ref.dtype != level0.dtype:
            fail(f"reference {ref.shape} {ref.dtype} vs level 0 {level0.shape} {level0.dtype}")
        if not np.array_equal(ref, level0):
            fail(f"level 0 differs from the reference in {(ref != level0).sum()} samples")
        print(f"level 0 equals {ref_path}")
    print(f"OK: {store}: NGFF 0.4, {len(datasets)} levels, axes {','.join(axes)} (zarr {zarr.__version__})")


if __name__ == "__main__":
    main()
