#!/usr/bin/env python3
"""`just check-slides`: the runner's readers against third-party readers, through the model.

For each input fixture (the TIFF fixtures of imaging/tests/data/tiff/manifest.txt, the OpenSlide fixtures
small.svs and boxes_0.dcm, the OME-Zarr fixtures of imaging/tests/data/zarr, every level listed or held):

  (a) `runner predict --image FIXTURE [--level N] --output x.png --probabilities x.npy --quiet`;
  (b) the same image and level decoded by a reader that is not ours: tifffile (+imagecodecs) for TIFF,
      openslide-python (read_region, alpha 0 replaced by the slide's background colour, white by default)
      for the vendor slides, zarr-python for OME-Zarr (the level's array, axes from the multiscales
      metadata); samples converted to 8-bit RGB by the rules of imaging/src/source/mod.rs;
  (c) the same model run on those pixels with python onnxruntime (python/predict_onnx.py's tiles);
  (d) argmax agreement of the two: 1.0 for lossless codecs, >= 0.999 for lossy ones (JPEG, lossy WebP:
      decoders may differ by a level); the max probability difference is printed.

Then (e): one fixture predicted into pyramidal OME-TIFF outputs, checked by check_ome_tiff.py (level 0 equals
the .png / .npy written by the same run, every level the reduction of the one above), and the OME-TIFF mask
opened with openslide-python (generic-tiff): read_region of level 0 equals the PNG mask.

Usage: check_slides.py RUNNER MODEL OUTDIR. Exits 1 when a check fails.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openslide
import tifffile
import zarr
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
import predict_onnx  # noqa: E402

DATA = ROOT / "imaging" / "tests" / "data"
LOSSY_THRESHOLD = 0.999


# --- sample conversion, as imaging/src/source/mod.rs -------------------------------------------------------


def to_u8(a):
    """Samples of any supported type as uint8 (see the module docstring of imaging/src/source/mod.rs)."""
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.uint16:
        return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if a.dtype == np.int16:
        return ((np.maximum(a, 0).astype(np.uint32) * 255 + 16383) // 32767).astype(np.uint8)
    if a.dtype.kind == "f":
        v = a.astype(np.float32)
        scaled = (v * np.float32(255)).astype(np.float64)
        out = np.floor(scaled + 0.5)  # round half away from zero (positive values only are kept)
        out = np.where(v >= 1, 255, np.where(v > 0, out, 0))  # NaN fails both: 0
        return out.astype(np.uint8)
    raise ValueError(f"unsupported sample type {a.dtype}")


def to_rgb(a):
    """(H, W) or (H, W, C) samples as (H, W, 3) uint8: gray repeated, alpha and extra samples dropped."""
    a = to_u8(a)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.shape[2] <= 2:
        return np.repeat(a[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(a[:, :, :3])


# --- third-party readers -----------------------------------------------------------------------------------


def tiff_page(tif, level):
    """The page (or SubIFD) holding `level` of the first series, as tifffile sees the pyramid."""
    series = tif.series[0]
    if level == 0:
        return series.levels[0].keyframe if hasattr(series.levels[0], "keyframe") else tif.pages[0]
    if len(series.levels) > level:
        return series.levels[level].keyframe
    # A multi-page pyramid that tifffile lists as one series per page.
    return tif.series[level].keyframe


def read_tiff(path, level):
    with tifffile.TiffFile(path) as tif:
        page = tiff_page(tif, level)
        a = page.asarray()
        photometric = int(page.photometric)
        if photometric == 3:  # palette: 16-bit map, or 8-bit values stored in it (libtiff's rule)
            cmap = page.colormap.astype(np.uint32)
            cmap = cmap.astype(np.uint8) if cmap.max() < 256 else to_u8(cmap.astype(np.uint16))
            return np.ascontiguousarray(cmap[:, a].transpose(1, 2, 0))
        if photometric == 0:  # min-is-white
            a = np.iinfo(a.dtype).max - a
        if page.planarconfig == 2 and a.ndim == 3 and a.shape[0] == page.samplesperpixel:
            a = a.transpose(1, 2, 0)
        return to_rgb(a)


TIFFFILE_DIFFERS = {"planar_jpeg_bioformats.tif", "jpeg2000_33003_ycbcr.tif"}


def read_reference(png):
    """A reader returning the fixture's reference pixels, whatever the path and level asked."""

    def read(_path, _level):
        return to_rgb(np.asarray(Image.open(png).convert("RGB")))

    return read


def read_openslide(path, level):
    slide = openslide.OpenSlide(str(path))
    width, height = slide.level_dimensions[level]
    downsample = slide.level_downsamples[level]
    rgba = np.asarray(slide.read_region((0, 0), level, (width, height)))
    assert downsample == 1 or level > 0
    background = slide.properties.get(openslide.PROPERTY_NAME_BACKGROUND_COLOR) or "FFFFFF"
    colour = [int(background[i : i + 2], 16) for i in (0, 2, 4)]
    rgb = rgba[..., :3].copy()
    rgb[rgba[..., 3] == 0] = colour
    slide.close()
    return rgb


def zarr_multiscale(group):
    attrs = dict(group.attrs)
    ms = attrs["ome"]["multiscales"] if "ome" in attrs else attrs["multiscales"]
    return ms[0]


def zarr_levels(path):
    return len(zarr_multiscale(zarr.open_group(str(path), mode="r"))["datasets"])


def read_zarr(path, level):
    group = zarr.open_group(str(path), mode="r")
    ms = zarr_multiscale(group)
    axes = [ax["name"] if isinstance(ax, dict) else ax for ax in ms["axes"]]
    a = group[ms["datasets"][level]["path"]][...]
    index = tuple(0 if name in ("t", "z") else slice(None) for name in axes)
    kept = [name for name in axes if name not in ("t", "z")]
    a = a[index]
    order = [kept.index("y"), kept.index("x")] + ([kept.index("c")] if "c" in kept else [])
    return to_rgb(np.transpose(a, order))


# --- the fixtures ------------------------------------------------------------------------------------------


def fixtures():
    """(name, path, level, reader, lossy) of every input checked."""
    out = []
    seen = set()
    for line in (DATA / "tiff" / "manifest.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, ref, level, tolerance, _what = line.split("\t")
        if (name, level) in seen:
            continue
        seen.add((name, level))
        # tifffile decodes these differently from the readers users have (Bio-Formats' planar JPEG, which
        # tifffile refuses once tagged YCbCr; Aperio's YCbCr JPEG 2000, left unconverted): their pixels are
        # the manifest's reference, made by make_fixtures.py from the source planes and OpenSlide's arithmetic.
        reader = read_reference(DATA / "tiff" / ref) if name in TIFFFILE_DIFFERS else read_tiff
        out.append((name, DATA / "tiff" / name, int(level), reader, int(tolerance) > 0))
    for name in ("small.svs", "boxes_0.dcm"):
        out.append((name, DATA / "openslide" / name, 0, read_openslide, True))  # JPEG tiles
    for path in sorted((DATA / "zarr").glob("v0*.ome.zarr")):
        for level in range(zarr_levels(path)):
            out.append((path.name, path, level, read_zarr, False))
    return out


def run_runner(runner, model, image, level, outputs):
    cmd = [runner, "predict", "--model", model, "--image", str(image), "--quiet"]
    if level:
        cmd += ["--level", str(level)]
    cmd += outputs
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")


def read_mask(path):
    return np.asarray(Image.open(path).convert("L")) > 127


def check_fixture(runner, model, session, outdir, name, path, level, reader, lossy):
    stem = f"{name.replace('.', '_')}_l{level}"
    png, npy = outdir / f"{stem}.png", outdir / f"{stem}.npy"
    run_runner(runner, model, path, level, ["--output", str(png), "--probabilities", str(npy)])
    runner_mask = read_mask(png)
    runner_prob = np.load(npy)
    rgb = reader(path, level)
    classes, prob = predict_onnx.predict(session, rgb)
    if runner_prob.shape != prob.shape or runner_mask.shape != classes.shape:
        return False, f"{name} level {level}: runner {runner_prob.shape}, third-party reader {prob.shape}"
    agreement = float(np.mean(runner_mask == classes.astype(bool)))
    diff = float(np.max(np.abs(runner_prob - prob)))
    needed = LOSSY_THRESHOLD if lossy else 1.0
    ok = agreement >= needed
    h, w = prob.shape
    line = (
        f"{'ok  ' if ok else 'FAIL'} {name} level {level} ({w}x{h}, {reader.__name__[5:]}"
        f"{', lossy' if lossy else ''}): argmax agreement {agreement:.6f} (needs {needed}), "
        f"max probability difference {diff:.3g}"
    )
    return ok, line


def check_ome_tiff_outputs(runner, model, outdir, name, path, level):
    """(e): OME-TIFF outputs against the plain outputs of the same run, and the mask through OpenSlide."""
    lines, ok = [], True
    d = outdir / "ome"
    d.mkdir(exist_ok=True)
    # Run 1: the mask as OME-TIFF, the probabilities as .npy; run 2: the mask as PNG, probabilities OME-TIFF.
    run_runner(runner, model, path, level, ["--output", str(d / "mask.ome.tif"), "--probabilities", str(d / "p.npy")])
    run_runner(runner, model, path, level, ["--output", str(d / "mask.png"), "--probabilities", str(d / "p.ome.tif")])
    checker = ROOT / "scripts" / "checks" / "check_ome_tiff.py"
    for ome, ref, reduction in (("mask.ome.tif", "mask.png", "mask"), ("p.ome.tif", "p.npy", "mean")):
        cmd = [sys.executable, str(checker), str(d / ome), "--reference", str(d / ref), "--reduction", reduction]
        result = subprocess.run(cmd, capture_output=True, text=True)
        good = result.returncode == 0
        ok &= good
        lines.append(f"{'ok  ' if good else 'FAIL'} {name}: check_ome_tiff.py {ome} --reference {ref} --reduction {reduction}")
        if not good:
            lines.append((result.stdout + result.stderr).strip())
    # OpenSlide opens the OME-TIFF mask as a generic TIFF; its level 0 must be the PNG mask (the runner is
    # deterministic: the PNG of run 2 is the mask of run 1).
    slide = openslide.OpenSlide(str(d / "mask.ome.tif"))
    vendor = slide.properties.get(openslide.PROPERTY_NAME_VENDOR)
    w, h = slide.level_dimensions[0]
    rgba = np.asarray(slide.read_region((0, 0), 0, (w, h)))
    slide.close()
    png = np.asarray(Image.open(d / "mask.png").convert("L"))
    same = (
        vendor == "generic-tiff"
        and rgba.shape[:2] == png.shape
        and bool(np.all(rgba[..., 3] == 255))
        and all(np.array_equal(rgba[..., c], png) for c in range(3))
    )
    ok &= same
    lines.append(
        f"{'ok  ' if same else 'FAIL'} {name}: OpenSlide ({vendor}) read_region of mask.ome.tif level 0 "
        f"({w}x{h}, {int((png > 127).sum())} foreground px) equals mask.png"
    )
    return ok, lines


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    runner, model, outdir = argv[0], argv[1], Path(argv[2])
    outdir.mkdir(parents=True, exist_ok=True)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    failed = 0
    for name, path, level, reader, lossy in fixtures():
        try:
            ok, line = check_fixture(runner, model, session, outdir, name, path, level, reader, lossy)
        except Exception as e:  # noqa: BLE001 - report every fixture, fail at the end
            ok, line = False, f"FAIL {name} level {level}: {type(e).__name__}: {e}"
        failed += not ok
        print(line, flush=True)
    ok, lines = check_ome_tiff_outputs(
        runner, model, outdir, "ome_pyramid.ome.tif", DATA / "tiff" / "ome_pyramid.ome.tif", 0
    )
    failed += not ok
    print("\n".join(lines))
    if failed:
        print(f"check-slides: {failed} check(s) failed")
        return 1
    print("check-slides: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
