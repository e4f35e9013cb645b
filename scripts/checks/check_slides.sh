#!/usr/bin/env bash
# `just check-slides`: the runner's image readers against third-party readers, through the model. Installs
# tifffile, imagecodecs, openslide-python + openslide-bin, zarr, onnxruntime into .venv-slides (pinned in
# scripts/checks/requirements-slides.txt), builds the runner in release, then runs
# scripts/checks/check_slides.py: every TIFF fixture of imaging/tests/data/tiff/manifest.txt, the OpenSlide
# fixtures (small.svs, boxes_0.dcm) and the OME-Zarr fixtures, each predicted by `runner predict` and by
# python onnxruntime on the pixels tifffile / openslide-python / zarr-python decode (argmax agreement 1.0 for
# lossless codecs, >= 0.999 for lossy ones); then OME-TIFF outputs checked by check_ome_tiff.py and read back
# through OpenSlide. Then scripts/checks/check_slide_outputs.py: a 3003x2501 OME-TIFF with a pixel size
# predicted into plain, OME-TIFF and OME-Zarr outputs (mask, probabilities, overlay, error map), read back
# with tifffile (check_ome_tiff.py: levels, tiles, OME-XML against the schema with ome-types, pixel size),
# OpenSlide, zarr-python (check_ome_zarr.py) and ome-zarr-models. Both scripts run; it fails if either does.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv-slides
requirements=scripts/checks/requirements-slides.txt
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
  echo "check-slides: installing $requirements into $venv"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian ships venv (ensurepip) separately from python3.
    echo "check-slides: installing python3-venv (Debian) for python3 -m venv"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi

cargo build --release --quiet -p trainer -p runner
runner="${CARGO_TARGET_DIR:-target}/release/runner"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0
"$venv/bin/python" scripts/checks/check_slides.py "$runner" models/model.onnx "$tmp/readers" || status=1
"$venv/bin/python" scripts/checks/check_slide_outputs.py "$runner" models/model.onnx "$tmp/outputs" || status=1
exit $status
