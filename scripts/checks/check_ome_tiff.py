#!/usr/bin/env python3
"""Checks a pyramidal OME-TIFF written by the runner (`--output x.ome.tif` etc.) with tifffile, a reader
that is not ours:

- tifffile sees an OME-TIFF (`tif.is_ome`), one series, whose levels are SubIFDs (NewSubFileType 1) of the
  first page; each level is ceil(w/2) x ceil(h/2) of the one above, down to the first level whose longer side
  is at most 1024; every level is tiled 512 x 512 and Deflate-compressed.
- The OME-XML parses, names the sizes, channels and type of level 0, and (with the PyPI package ome-types
  installed) is valid against the OME 2016-06 schema that ome-types bundles.
- `--reference FILE` (.png, read with Pillow, or .npy): level 0 equals it exactly.
- `--reduction mask|mean`: every level equals the 2x2 reduction of the level above computed here with numpy
  (mean: 8-bit rounded half up, float32 summed in float32; mask: foreground when at least half of the pixels
  of the block are; edge blocks use the pixels that exist).
- `--physical-size X Y`: the OME-XML's PhysicalSizeX/Y are X and Y micrometres (unit absent or µm).
- `--levels WxH,WxH,...`: the level sizes are exactly these (sizes worked out by the caller, not by the rule
  above).
- `--require-schema`: fail, instead of skipping the schema validation, when ome-types (with lxml) is missing.

Usage: check_ome_tiff.py FILE [--reference REF.png|REF.npy] [--reduction mask|mean] [--physical-size X Y]
       [--levels WxH,...] [--require-schema]
       (needs `pip install tifffile numpy`; pillow for a PNG reference, ome-types for the schema)
Exits 1 when a check fails.
"""

import argparse
import sys
import xml.etree.ElementTree as ET

import numpy as np
import tifffile

TILE = 512
SMALLEST_SIDE = 1024
OME_NS = "{http://www.openmicroscopy.org/Schemas/OME/2016-06}"


def reduce(a, rule):
    """The next level of `a` (h, w) or (h, w, c): see the module's docstring."""
    h, w = a.shape[:2]
    pad = [(0, h % 2), (0, w % 2)] + [(0, 0)] * (a.ndim - 2)
    valid = np.pad(np.ones((h, w), np.int64), pad[:2])
    n = valid[0::2, 0::2] + valid[0::2, 1::2] + valid[1::2, 0::2] + valid[1::2, 1::2]
    if a.ndim == 3:
        n = n[:, :, None]
    if rule == "mask":
        on = np.pad((a >= 128).astype(np.int64), pad)
        count = on[0::2, 0::2] + on[0::2, 1::2] + on[1::2, 0::2] + on[1::2, 1::2]
        return np.where(2 * count >= n, 255, 0).astype(np.uint8)
    if a.dtype == np.float32:
        f = np.pad(a, pad)
        # The order of the writer's sums: the top row's pixels, then the bottom row's.
        total = ((f[0::2, 0::2] + f[0::2, 1::2]) + f[1::2, 0::2]) + f[1::2, 1::2]
        return (total / n.astype(np.float32)).astype(np.float32)
    f = np.pad(a.astype(np.int64), pad)
    total = f[0::2, 0::2] + f[0::2, 1::2] + f[1::2, 0::2] + f[1::2, 1::2]
    return ((total + n // 2) // n).astype(np.uint8)


def expected_sizes(width, height):
    sizes = [(width, height)]
    while max(width, height) > SMALLEST_SIDE:
        width, height = (width + 1) // 2, (height + 1) // 2
        sizes.append((width, height))
    return sizes


def check_physical_size(attrs, want):
    """Errors unless PhysicalSizeX/Y are `want` (x, y) in micrometres."""
    errors = []
    for axis, value in zip("XY", want):
        got, unit = attrs.get(f"PhysicalSize{axis}"), attrs.get(f"PhysicalSize{axis}Unit", "µm")
        if got is None or unit != "µm" or not np.isclose(float(got), value, rtol=1e-9, atol=0):
            errors.append(f"OME-XML PhysicalSize{axis}={got!r} {unit}, expected {value} µm")
    return errors


def check_xml(xml, width, height, channels, dtype, physical_size=None, require_schema=False):
    errors = []
    root = ET.fromstring(xml)
    pixels = root.find(f"{OME_NS}Image/{OME_NS}Pixels")
    if pixels is None:
        return ["no Image/Pixels element in the OME-XML"]
    attrs = pixels.attrib
    kind = {"uint8": "uint8", "float32": "float"}.get(str(dtype))
    want = {"SizeX": str(width), "SizeY": str(height), "SizeC": str(channels), "SizeZ": "1", "SizeT": "1",
            "Type": kind, "DimensionOrder": "XYCZT"}
    for key, value in want.items():
        if attrs.get(key) != value:
            errors.append(f"OME-XML Pixels {key}={attrs.get(key)!r}, expected {value!r}")
    physical = {k: v for k, v in attrs.items() if k.startswith("PhysicalSize")}
    print(f"OME-XML: {', '.join(f'{k}={attrs[k]}' for k in want)}; {physical or 'no PhysicalSize'}")
    if physical_size is not None:
        errors += check_physical_size(attrs, physical_size)
    try:
        from ome_types import validate_xml
    except ImportError:
        if require_schema:
            return errors + ["ome-types is not installed: cannot validate the OME-XML against the schema"]
        print("ome-types not installed: skipping the schema validation")
        return errors
    try:
        validate_xml(xml)
        print("OME-XML is valid against the OME 2016-06 schema (ome-types)")
    except Exception as e:  # noqa: BLE001 (any validation error is a failure to report)
        errors.append(f"OME-XML is not valid against the schema: {e}")
    return errors


def read_reference(path):
    if path.endswith(".npy"):
        return np.load(path)
    from PIL import Image

    return np.asarray(Image.open(path))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("file")
    parser.add_argument("--reference")
    parser.add_argument("--reduction", choices=["mask", "mean"])
    parser.add_argument("--physical-size", nargs=2, type=float, metavar=("X", "Y"))
    parser.add_argument("--levels", help="the level sizes, WxH,WxH,...")
    parser.add_argument("--require-schema", action="store_true")
    args = parser.parse_args()
    errors = []
    with tifffile.TiffFile(args.file) as tif:
        if not tif.is_ome:
            print(f"FAIL: {args.file}: tifffile does not see an OME-TIFF")
            return 1
        series = tif.series[0]
        levels = series.levels
        first = tif.pages[0]
        print(f"{args.file}: OME-TIFF, {'BigTIFF' if tif.is_bigtiff else 'classic TIFF'}, {len(tif.series)} "
              f"series, {len(levels)} levels: {', '.join('x'.join(map(str, l.shape)) for l in levels)}, "
              f"{series.dtype}")
        if len(tif.pages) != 1:
            errors.append(f"{len(tif.pages)} pages in the main chain, expected 1 (levels are SubIFDs)")
        height, width = series.shape[:2]
        channels = series.shape[2] if len(series.shape) == 3 else 1
        sizes = [(l.shape[1], l.shape[0]) for l in levels]
        if sizes != expected_sizes(width, height):
            errors.append(f"level sizes {sizes}, expected {expected_sizes(width, height)}")
        if args.levels:
            given = [tuple(int(v) for v in size.split("x")) for size in args.levels.split(",")]
            if sizes != given:
                errors.append(f"level sizes {sizes}, expected {given} (--levels)")
        if len(first.subifds or []) != len(levels) - 1:
            errors.append(f"{len(first.subifds or [])} SubIFDs in the first page for {len(levels)} levels")
        for i, level in enumerate(levels):
            page = level.keyframe
            if (page.tilewidth, page.tilelength) != (TILE, TILE):
                errors.append(f"level {i} tiles {page.tilewidth}x{page.tilelength}, expected {TILE}x{TILE}")
            if page.compression not in (8, 32946):
                errors.append(f"level {i} compression {page.compression!r}, expected Deflate")
            if i > 0 and page.subfiletype != 1:
                errors.append(f"level {i} NewSubFileType {page.subfiletype}, expected 1")
        name = lambda v: getattr(v, "name", v)  # noqa: E731 (tifffile gives enums, or ints when unknown)
        print(f"tiles {first.tilewidth}x{first.tilelength}, compression {name(first.compression)}, "
              f"predictor {name(first.predictor)}, SubIFDs {len(first.subifds or [])}")
        errors += check_xml(tif.ome_metadata, width, height, channels, series.dtype, args.physical_size,
                            args.require_schema)
        arrays = [level.asarray() for level in levels]
    if args.reference:
        reference = read_reference(args.reference)
        if reference.shape != arrays[0].shape or not np.array_equal(reference, arrays[0]):
            errors.append(f"level 0 ({arrays[0].shape}, {arrays[0].dtype}) differs from {args.reference} "
                          f"({reference.shape}, {reference.dtype})")
        else:
            print(f"level 0 equals {args.reference} ({reference.dtype})")
    if args.reduction:
        for i in range(1, len(arrays)):
            expected = reduce(arrays[i - 1], args.reduction)
            if expected.shape != arrays[i].shape or not np.array_equal(expected, arrays[i]):
                diff = np.abs(expected.astype(np.float64) - arrays[i].astype(np.float64)).max()
                errors.append(f"level {i} is not the {args.reduction} reduction of level {i - 1} (max diff {diff})")
        print(f"levels 1..{len(arrays) - 1} checked against the {args.reduction} reduction (numpy)")
    for e in errors:
        print(f"FAIL: {e}")
    if not errors:
        print("OK")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
