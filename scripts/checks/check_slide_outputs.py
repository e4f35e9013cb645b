#!/usr/bin/env python3
"""`just check-slides`, second part: the runner's viewer-ready outputs of a slide-sized input, read back by
readers that are not ours.

The input: data/conifer/image.png mirrored out to 3003 x 2501 px (odd sizes, so every level rounds up; more
than one band of rows) and written by tifffile as a tiled, Deflate OME-TIFF with PhysicalSizeX = 250 nm and
PhysicalSizeY = 0.5 µm (different on purpose, so that a swap or a lost unit shows); its mask likewise, for
--errors. The runner predicts it three times, with the same outputs in three formats:

  plain:    --output mask.png      --probabilities p.npy       --overlay overlay.png      --errors errors.png
  OME-TIFF: --output mask.ome.tif  --probabilities p.ome.tif   --overlay overlay.ome.tif  --errors errors.ome.tif
  OME-Zarr: --output mask.ome.zarr --probabilities p.ome.zarr  --overlay overlay.ome.zarr --errors errors.ome.zarr

and the checks are:

  (a) the plain mask against python onnxruntime on the pixels tifffile decodes (python/predict_onnx.py):
      every pixel agrees (the input is lossless);
  (b) tifffile, through check_ome_tiff.py: an OME-TIFF, tiled 512, levels as SubIFDs of the first page with
      the sizes of 2x reductions rounded up down to a longer side <= 1024 (here 3003x2501, 1502x1251,
      751x626), OME-XML valid against the schema (ome-types) with the sizes, channels, type and the pixel size
      in µm; level 0 equals the plain output, every level the reduction of the one above (numpy);
  (c) OpenSlide (openslide-python + openslide-bin) opens each 8-bit OME-TIFF (generic-tiff): read_region of
      level 0 equals the plain PNG (RGB, opaque); every level OpenSlide lists equals tifffile's level of the
      same size. OpenSlide's generic-tiff reader walks the main IFD chain only, not SubIFDs, so it lists
      level 0 alone today: the line says so, and the lower levels are checked by (b) and (d);
  (d) zarr-python, through check_ome_zarr.py (NGFF metadata, shapes, chunks, level 0 against the plain
      output), then ome-zarr-models validates the store as an NGFF 0.4 image, the scale transforms are the
      pixel size (y 0.5, x 0.25 µm, unit micrometer) times 2^level, and every level read by zarr-python
      equals the OME-TIFF's level read by tifffile;
  (e) the same outputs as NGFF 0.5 (--ngff 0.5, Zarr v3) through check_ome_zarr.py and ome-zarr-models, each
      level equal to the NGFF 0.4 store's; and --labels NAME written into copies of OME-Zarr inputs (0.4 at
      levels 0 and 1, 0.5 at level 0), checked by check_ome_zarr.py --labels (ome-zarr-models validates the
      image and its labels, ome-zarr-py's Reader finds the label node, every label level as the rule says).

Usage: check_slide_outputs.py RUNNER MODEL OUTDIR. Exits 1 when a check fails.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import openslide
import tifffile
import zarr
from PIL import Image

import ome_zarr_models
import ome_zarr_models.v04.image

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ROOT / "scripts" / "checks"
sys.path.insert(0, str(ROOT / "python"))
import predict_onnx  # noqa: E402

WIDTH, HEIGHT = 3003, 2501
MICRONS_X, MICRONS_Y = 0.25, 0.5
LEVEL_SIZES = [(3003, 2501), (1502, 1251), (751, 626)]  # (width, height), worked out by hand
# output stem -> (plain reference, reduction rule of check_ome_tiff.py)
OUTPUTS = {
    "mask": ("mask.png", "mask"),
    "p": ("p.npy", "mean"),
    "overlay": ("overlay.png", "mean"),
    "errors": ("errors.png", "mean"),
}


def mirrored(path):
    """The image at `path` mirrored out to WIDTH x HEIGHT (numpy's symmetric padding, repeated)."""
    a = np.asarray(Image.open(path))
    pad = [(0, HEIGHT - a.shape[0]), (0, WIDTH - a.shape[1])] + [(0, 0)] * (a.ndim - 2)
    return np.pad(a, pad, mode="symmetric")


def write_inputs(outdir):
    """The OME-TIFF input (tifffile, tiled 256, Deflate, pixel size in nm and µm) and its mask (PNG)."""
    image = outdir / "slide.ome.tif"
    rgb = mirrored(ROOT / "data" / "conifer" / "image.png")
    metadata = {
        "axes": "YXS",
        "PhysicalSizeX": MICRONS_X * 1000,
        "PhysicalSizeXUnit": "nm",
        "PhysicalSizeY": MICRONS_Y,
        "PhysicalSizeYUnit": "µm",
    }
    tifffile.imwrite(image, rgb, ome=True, photometric="rgb", tile=(256, 256), compression="zlib", metadata=metadata)
    mask = outdir / "slide_mask.png"
    Image.fromarray(mirrored(ROOT / "data" / "conifer" / "mask.png")).save(mask)
    return image, mask


def run_runner(runner, model, image, mask, outputs, extra=()):
    cmd = [runner, "predict", "--model", model, "--image", str(image), "--mask", str(mask), "--quiet", *extra]
    for flag, path in zip(("--output", "--probabilities", "--overlay", "--errors"), outputs):
        cmd += [flag, str(path)]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")


def read_plain(path):
    return np.load(path) if path.suffix == ".npy" else np.asarray(Image.open(path))


def as_rgb(a):
    """Gray (h, w) repeated into (h, w, 3), as OpenSlide returns a gray TIFF; RGB unchanged."""
    return np.repeat(a[..., None], 3, axis=2) if a.ndim == 2 else a


def tiff_levels(path):
    with tifffile.TiffFile(path) as tif:
        return [level.asarray() for level in tif.series[0].levels]


class Report:
    def __init__(self):
        self.failed = 0

    def line(self, ok, text, detail=""):
        self.failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {text}", flush=True)
        if detail and not ok:
            print("     " + detail.strip().replace("\n", "\n     "), flush=True)

    def script(self, args, text):
        result = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True)
        self.line(result.returncode == 0, text, result.stdout + result.stderr)
        return result.returncode == 0


def check_onnxruntime(report, model, image, outdir):
    """(a): the runner's mask against onnxruntime on tifffile's pixels."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    rgb = tifffile.imread(image)
    classes, _ = predict_onnx.predict(session, rgb)
    runner_mask = read_plain(outdir / "mask.png") > 127
    agreement = float(np.mean(runner_mask == classes.astype(bool))) if runner_mask.shape == classes.shape else 0.0
    report.line(
        agreement == 1.0,
        f"mask.png ({WIDTH}x{HEIGHT}, {int(runner_mask.sum())} foreground px) against onnxruntime on tifffile's "
        f"pixels of slide.ome.tif: agreement {agreement:.6f} (needs 1.0)",
    )


def check_tifffile(report, outdir):
    """(b): every OME-TIFF through check_ome_tiff.py."""
    for stem, (plain, rule) in OUTPUTS.items():
        report.script(
            [
                CHECKS / "check_ome_tiff.py",
                outdir / f"{stem}.ome.tif",
                "--reference", outdir / plain,
                "--reduction", rule,
                "--physical-size", MICRONS_X, MICRONS_Y,
                "--levels", ",".join(f"{w}x{h}" for w, h in LEVEL_SIZES),
                "--require-schema",
            ],
            f"tifffile: check_ome_tiff.py {stem}.ome.tif --reference {plain} --reduction {rule} "
            f"--physical-size {MICRONS_X} {MICRONS_Y} (levels {', '.join(f'{w}x{h}' for w, h in LEVEL_SIZES)}, "
            f"schema)",
        )


def check_openslide(report, outdir):
    """(c): the 8-bit OME-TIFFs through OpenSlide."""
    for stem, (plain, _) in OUTPUTS.items():
        if plain.endswith(".npy"):
            continue  # float32: OpenSlide reads 8-bit images only
        slide = openslide.OpenSlide(str(outdir / f"{stem}.ome.tif"))
        vendor = slide.properties.get(openslide.PROPERTY_NAME_VENDOR)
        dims = list(slide.level_dimensions)
        regions = [np.asarray(slide.read_region((0, 0), k, size)) for k, size in enumerate(dims)]
        slide.close()
        reference = as_rgb(read_plain(outdir / plain))
        rgba = regions[0]
        same = (
            vendor == "generic-tiff"
            and rgba.shape[:2] == reference.shape[:2]
            and bool(np.all(rgba[..., 3] == 255))
            and np.array_equal(rgba[..., :3], reference)
        )
        report.line(
            same,
            f"OpenSlide ({vendor}): read_region of {stem}.ome.tif level 0 ({dims[0][0]}x{dims[0][1]}) equals {plain}",
        )
        levels = tiff_levels(outdir / f"{stem}.ome.tif")
        for k in range(1, len(dims)):
            # OpenSlide's level k is tifffile's level of the same size, whatever chain it came from.
            match = [a for a in levels if (a.shape[1], a.shape[0]) == dims[k]]
            ok = bool(match) and np.array_equal(regions[k][..., :3], as_rgb(match[0]))
            report.line(ok, f"OpenSlide: {stem}.ome.tif level {k} ({dims[k][0]}x{dims[k][1]}) equals tifffile's level")
        if len(dims) == 1:
            print(
                f"     OpenSlide lists 1 level of {stem}.ome.tif (generic-tiff does not walk SubIFDs); its "
                f"{len(levels) - 1} lower levels are checked through tifffile and zarr-python",
                flush=True,
            )


def check_zarr(report, outdir):
    """(d): every OME-Zarr store through check_ome_zarr.py, ome-zarr-models and against the OME-TIFF levels."""
    for stem, (plain, _) in OUTPUTS.items():
        store = outdir / f"{stem}.ome.zarr"
        report.script([CHECKS / "check_ome_zarr.py", store, outdir / plain], f"zarr-python: check_ome_zarr.py {store.name} {plain}")
        group = zarr.open_group(str(store), mode="r")
        try:
            model = ome_zarr_models.open_ome_zarr(group, version="0.4")
            valid = isinstance(model, ome_zarr_models.v04.image.Image)
            detail = f"opened as {type(model).__module__}.{type(model).__name__}"
        except Exception as e:  # noqa: BLE001 (any validation error is a failure to report)
            valid, detail = False, f"{type(e).__name__}: {e}"
        report.line(valid, f"ome-zarr-models {ome_zarr_models.__version__}: {store.name} validates as an NGFF 0.4 image", detail)
        multiscale = dict(group.attrs)["multiscales"][0]
        axes = multiscale["axes"]
        units = {a["name"]: a.get("unit") for a in axes}
        scales_ok, shown = units.get("y") == "micrometer" and units.get("x") == "micrometer", []
        for k, dataset in enumerate(multiscale["datasets"]):
            scale = [t for t in dataset["coordinateTransformations"] if t["type"] == "scale"][0]["scale"]
            shown.append(scale[-2:])
            scales_ok &= np.allclose(scale[-2:], [MICRONS_Y * 2**k, MICRONS_X * 2**k], rtol=1e-12, atol=0)
        report.line(scales_ok, f"{store.name}: axes units {units}, y,x scales {shown} (µm: y {MICRONS_Y}, x {MICRONS_X} times 2^level)")
        tiff = tiff_levels(outdir / f"{stem}.ome.tif")
        arrays = [group[d["path"]][...] for d in multiscale["datasets"]]
        arrays = [np.moveaxis(a, 0, 2) if a.ndim == 3 else a for a in arrays]  # c,y,x -> y,x,c
        same = len(arrays) == len(tiff) and all(a.dtype == t.dtype and np.array_equal(a, t) for a, t in zip(arrays, tiff))
        report.line(
            same,
            f"{store.name}: {len(arrays)} levels ({', '.join('x'.join(map(str, a.shape)) for a in arrays)}) equal "
            f"{stem}.ome.tif's {len(tiff)} levels (tifffile)",
        )


def check_ngff05_and_labels(report, runner, model, image, mask, outdir):
    """(e): the same outputs as NGFF 0.5 (Zarr v3), and the mask written as an NGFF label image into copies of
    OME-Zarr inputs (0.4 and 0.5, at level 0 and, where the image has one, level 1)."""
    names = [f"{stem}.v05.ome.zarr" for stem in OUTPUTS]
    run_runner(runner, model, image, mask, [outdir / n for n in names], ["--ngff", "0.5"])
    for (stem, (plain, _)), name in zip(OUTPUTS.items(), names):
        report.script([CHECKS / "check_ome_zarr.py", outdir / name, outdir / plain],
                      f"NGFF 0.5: check_ome_zarr.py {name} {plain} (zarr-python, ome-zarr-models 0.5)")
        v04 = zarr.open_group(str(outdir / f"{stem}.ome.zarr"), mode="r")
        v05 = zarr.open_group(str(outdir / name), mode="r")
        paths = [d["path"] for d in dict(v04.attrs)["multiscales"][0]["datasets"]]
        same = all(np.array_equal(v04[p][...], v05[p][...]) for p in paths)
        report.line(same, f"{name}: every level equals {stem}.ome.zarr's (NGFF 0.4)")
    fixtures = ROOT / "imaging" / "tests" / "data" / "zarr"
    for fixture, levels in (("v04_cyx_u8.ome.zarr", (0, 1)), ("v05_tczyx_u8_rgba.ome.zarr", (0,))):
        for level in levels:
            copy = outdir / f"labelled_l{level}_{fixture}"
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(fixtures / fixture, copy)
            cmd = [runner, "predict", "--model", model, "--image", str(copy), "--level", str(level),
                   "--output", str(outdir / f"labelled_l{level}_{fixture}.png"), "--labels", "segmenter", "--quiet"]
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                report.line(False, f"runner predict --labels segmenter --level {level} into {fixture}", result.stderr)
                continue
            report.script([CHECKS / "check_ome_zarr.py", copy, "--labels", "segmenter"],
                          f"--labels at level {level} into a copy of {fixture}: check_ome_zarr.py (ome-zarr-models, "
                          "ome-zarr-py's Reader finds the label, levels)")


def main(argv):
    if len(argv) != 3:
        sys.exit(__doc__)
    runner, model, outdir = argv[0], argv[1], Path(argv[2])
    outdir.mkdir(parents=True, exist_ok=True)
    image, mask = write_inputs(outdir)
    print(f"check-slides: outputs of {image.name} ({WIDTH}x{HEIGHT}, OME-TIFF by tifffile {tifffile.__version__}, "
          f"PhysicalSizeX 250 nm, PhysicalSizeY 0.5 µm)", flush=True)
    for kind in ("{}.png {}.npy {}.png {}.png", "{}.ome.tif {}.ome.tif {}.ome.tif {}.ome.tif",
                 "{}.ome.zarr {}.ome.zarr {}.ome.zarr {}.ome.zarr"):
        names = kind.format(*OUTPUTS).split()
        run_runner(runner, model, image, mask, [outdir / n for n in names])
    report = Report()
    check_onnxruntime(report, model, image, outdir)
    check_tifffile(report, outdir)
    check_openslide(report, outdir)
    check_zarr(report, outdir)
    check_ngff05_and_labels(report, runner, model, image, mask, outdir)
    if report.failed:
        print(f"check-slides outputs: {report.failed} check(s) failed")
        return 1
    print("check-slides outputs: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
