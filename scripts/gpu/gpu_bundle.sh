#!/usr/bin/env bash
# Builds the CUDA release binaries on this machine (no GPU needed) and gathers everything the GPU check
# needs into gpu_bundle/ (git-ignored), for a GPU node with no network and no Rust:
#   bin/trainer, bin/runner        built with --features cuda for CUDA_COMPUTE_CAP (default 90: H100/H200;
#                                  candle's kernels run only on that compute capability, which compute_cap records)
#   lib/                           ONNX Runtime 1.31.1 GPU (from the PyPI wheel onnxruntime-gpu: the three .so
#                                  files the runner loads); lib/fallback/: the CUDA 13.0 runtime, used only if
#                                  the node has none
#   data/                          training, held-out and 2048^2 images cut from data/conifer
#   gpu_check.sh, gpu_compare.py   the check; run.sh starts it
# On the node: `bash gpu_bundle/run.sh` (needs the NVIDIA driver and a Python whose nvidia-* wheels provide
# cuBLAS, cuRAND and cuDNN 9 for CUDA 13). Usage: scripts/gpu/gpu_bundle.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$PWD"
out="${1:-$repo/gpu_bundle}"

command -v protoc >/dev/null || bash scripts/setup/setup.sh
# shellcheck source=scripts/setup/cuda_toolkit.sh
source scripts/setup/cuda_toolkit.sh
"$CUDA_VENV/bin/python" -c 'import PIL' 2>/dev/null \
  || "$CUDA_VENV/bin/pip" install --quiet --disable-pip-version-check "pillow>=10"

# candle links the CUDA libraries (cudarc's dynamic-linking), and this machine has none of them. Link
# against stubs: shared objects with the real libraries' sonames that define every function cudarc binds.
# The binaries then load the real libraries on the GPU node; the stubs never leave this machine.
make_link_stubs() { # CUDARC_SOURCE_DIR DEST_DIR
  local module library soname pattern names
  for spec in driver:cuda:libcuda.so.1:'^cu[A-Z]' nvrtc:nvrtc:libnvrtc.so.13:'^nvrtc' \
    curand:curand:libcurand.so.10:'^curand' cublas:cublas:libcublas.so.13:'^cublas' \
    cublaslt:cublasLt:libcublasLt.so.13:'^cublasLt'; do
    IFS=: read -r module library soname pattern <<<"$spec"
    names="$(sed -n 's/^pub unsafe fn \([A-Za-z0-9_]*\)(.*/\1/p' "$1/src/$module/sys/mod.rs" | grep "$pattern" | sort -u)"
    [[ -n "$names" ]] || { echo "error: no $library functions found in $1/src/$module/sys/mod.rs" >&2; return 1; }
    sed 's/.*/int &(void) { return 999; }/' <<<"$names" >"$2/$library-stub.c"
    cc -shared -fPIC -Wl,-soname,"$soname" -o "$2/lib$library.so" "$2/$library-stub.c"
    rm "$2/$library-stub.c"
  done
  # candle-kernels links -lcudart: the wheel has only the versioned file.
  ln -sf libcudart.so.13 "$2/libcudart.so"
}
cudarc_dir="$(cargo metadata --quiet --format-version 1 --features trainer/cuda \
  --filter-platform "$(rustc -vV | sed -n 's/^host: //p')" \
  | python3 -c 'import json, sys, os; print(next(os.path.dirname(p["manifest_path"]) for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"))')"
make_link_stubs "$cudarc_dir" "$CUDA_ROOT/lib"

echo "gpu-bundle: building trainer and runner with --features cuda (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP) into $CARGO_TARGET_DIR" >&2
cargo build --release -p trainer -p runner --features trainer/cuda,runner/cuda
bash scripts/setup/fetch_onnxruntime.sh gpu

stage="$out.partial"
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/lib/fallback" "$stage/data"
for binary in trainer runner; do
  # Line tables are useless on the node and make up most of the file.
  strip --strip-debug -o "$stage/bin/$binary" "$CARGO_TARGET_DIR/release/$binary"
done
cp .ort/gpu/lib/libonnxruntime.so.1.31.1 .ort/gpu/lib/libonnxruntime_providers_shared.so \
  .ort/gpu/lib/libonnxruntime_providers_cuda.so "$stage/lib/"
cp "$CUDA_ROOT/lib/libcudart.so.13" "$stage/lib/fallback/"
"$CUDA_VENV/bin/python" scripts/gpu/gpu_check_data.py data/conifer "$stage/data"
cp scripts/gpu/gpu_check.sh scripts/gpu/gpu_compare.py "$stage/"
echo "$CUDA_COMPUTE_CAP" >"$stage/compute_cap"
cat >"$stage/run.sh" <<'EOF'
#!/usr/bin/env bash
# The segmenter's GPU check: CUDA against CPU training and prediction, GPU memory and speed.
# Needs an NVIDIA GPU with its driver and a Python (PYTHON, default python3) whose nvidia-* wheels provide
# CUDA 13's cuBLAS, cuRAND and cuDNN 9. Results: work/summary.md (or $WORK/summary.md). See BUILD.txt.
exec bash "$(dirname "$0")/gpu_check.sh" "$(dirname "$0")"
EOF
cat >"$stage/BUILD.txt" <<EOF
segmenter GPU bundle, built $(date -u +%Y-%m-%dT%H:%MZ) from commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)')
CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP (candle's CUDA kernels run on GPUs of exactly this compute capability)
nvcc: $(nvcc --version | tail -n 2 | head -n 1)
ONNX Runtime 1.31.1 GPU (PyPI onnxruntime-gpu)
EOF
rm -rf "$out"
mv "$stage" "$out"
echo "gpu-bundle: $out is $(du -sh "$out" | cut -f1) ($(du -sh "$out/lib" | cut -f1) of it ONNX Runtime's CUDA libraries); run it with: bash $out/run.sh" >&2
