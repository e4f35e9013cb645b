#!/usr/bin/env bash
# Installs what the build and the runner need and is missing; safe to run again.
#   protoc                      candle-onnx's build compiles the ONNX protobuf schema
#   ONNX Runtime 1.31.1 (.so)   the runner loads it at run time, from .ort/
#                               (see scripts/setup/fetch_onnxruntime.sh)
#   OpenSlide 4.0.1 (.so)       vendors' slide formats, loaded at run time, from .openslide/
#                               (see scripts/setup/fetch_openslide.sh)
set -euo pipefail
cd "$(dirname "$0")/../.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=
apt_install() {
  [ -n "$apt_updated" ] || { as_root apt-get update -qq; apt_updated=1; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
if ! command -v protoc >/dev/null 2>&1; then
  echo "setup: installing protoc (Debian package protobuf-compiler)"
  apt_install protobuf-compiler
fi
if ! python3 -m pip --version >/dev/null 2>&1; then
  echo "setup: installing pip (Debian package python3-pip), used to fetch the ONNX Runtime and OpenSlide wheels"
  apt_install python3-pip
fi
command -v unzip >/dev/null 2>&1 || { echo "setup: installing unzip"; apt_install unzip; }
bash scripts/setup/fetch_onnxruntime.sh "${ORT_FLAVOUR:-cpu}"
bash scripts/setup/fetch_openslide.sh
