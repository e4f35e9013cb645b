#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library the runner loads at run time (ort's load-dynamic), from the PyPI
# wheel of the pinned version, into the git-ignored .ort/ folder of the repository. Idempotent.
#   scripts/setup/fetch_onnxruntime.sh        # or `cpu`: .ort/lib/libonnxruntime.so.1.31.1
#   scripts/setup/fetch_onnxruntime.sh gpu    # .ort/gpu/lib/ with the CUDA provider (needs CUDA 13 + cuDNN 9)
set -euo pipefail

VERSION=1.31.1
flavour="${1:-cpu}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

case "$flavour" in
  cpu) package=onnxruntime; dest="$repo/.ort/lib"; members=("libonnxruntime.so.$VERSION") ;;
  gpu) package=onnxruntime-gpu; dest="$repo/.ort/gpu/lib"
       members=("libonnxruntime.so.$VERSION" libonnxruntime_providers_shared.so libonnxruntime_providers_cuda.so) ;;
  *) echo "usage: $0 [cpu|gpu]" >&2; exit 2 ;;
esac

have_all=true
for m in "${members[@]}"; do [[ -s "$dest/$m" ]] || have_all=false; done
if $have_all; then
  echo "ONNX Runtime $VERSION ($flavour) already at $dest/libonnxruntime.so.$VERSION"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64|Linux-aarch64) ;;
  *) echo "error: this script fetches the Linux wheel; on $(uname -s)-$(uname -m) install ONNX Runtime $VERSION" \
          "yourself and pass --ort-lib or set ORT_DYLIB_PATH" >&2; exit 1 ;;
esac
command -v python3 >/dev/null || { echo "error: python3 is needed to download the wheel (pip)" >&2; exit 1; }
command -v unzip >/dev/null || { echo "error: unzip is needed to unpack the wheel (apt-get install unzip)" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "downloading $package==$VERSION from PyPI ..."
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "$package==$VERSION"
wheel="$(ls "$tmp"/*.whl | head -n 1)"
mkdir -p "$dest"
for m in "${members[@]}"; do
  unzip -o -q -j "$wheel" "onnxruntime/capi/$m" -d "$tmp/unpacked"
  # Move into place last, so an interrupted run never leaves a truncated library behind.
  mv -f "$tmp/unpacked/$m" "$dest/$m"
done
echo "ONNX Runtime $VERSION ($flavour) is at $dest/libonnxruntime.so.$VERSION"
