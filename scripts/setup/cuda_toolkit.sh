#!/usr/bin/env bash
# Sourced by scripts/checks/check_cuda.sh, scripts/gpu/gpu_bundle.sh and scripts/checks/test_gpu_check.sh:
# puts a CUDA 13.0 compiler (nvcc, ptxas, CCCL headers) from PyPI wheels into the git-ignored venv
# .venv-cuda/ (about 300 MB, once) and exports what the build of `--features cuda` reads. No GPU and no
# CUDA library is needed to build: cudarc loads them at run time.
#
# Why these settings:
# - CUDA 13.0, pinned (every wheel, including nvcc's dependencies crt and nvvm): candle's kernels are
#   compiled to PTX, which a driver loads only if it knows that PTX version; 13.0's PTX loads on any CUDA 13
#   driver, while 13.5's (pip's default today) would need a 13.5 driver. cudarc 0.19.10 also refuses nvcc
#   13.5 ("Unsupported cuda toolkit version").
# - CUDARC_CUDA_VERSION=13000: cudarc binds the CUDA 13.0 driver API, the oldest CUDA 13 driver.
# - CUDA_COMPUTE_CAP (default 90, Hopper: H100/H200): candle-kernels would otherwise ask nvidia-smi. Set it
#   to your GPU's (e.g. 80 for an A100) before building for another GPU.
# - candle-kernels includes CCCL headers (nv/target): the nvidia-cuda-cccl wheel provides them.

_cuda_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CUDA_VENV="${CUDA_VENV:-$_cuda_repo/.venv-cuda}"
CUDA_WHEELS=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
  nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85)

_cuda_apt_install() {
  local sudo=""
  [[ "$(id -u)" == 0 ]] || sudo=sudo
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

cuda_toolkit_install() {
  local stamp="$CUDA_VENV/.cuda-wheels" wanted="${CUDA_WHEELS[*]}"
  if [[ -x "$CUDA_VENV/bin/python" && "$(cat "$stamp" 2>/dev/null)" == "$wanted" ]]; then
    return 0
  fi
  command -v python3 >/dev/null || { echo "error: python3 is needed to install the CUDA compiler (pip)" >&2; return 1; }
  if ! command -v g++ >/dev/null; then
    echo "cuda toolkit: installing g++ (nvcc's host compiler)" >&2
    _cuda_apt_install g++ || { echo "error: nvcc needs a host C++ compiler: install g++" >&2; return 1; }
  fi
  echo "cuda toolkit: installing ${CUDA_WHEELS[*]} into $CUDA_VENV" >&2
  rm -rf "$CUDA_VENV"
  # Debian's python3 creates venvs only with python3-venv installed.
  python3 -m venv "$CUDA_VENV" 2>/dev/null || { rm -rf "$CUDA_VENV" && _cuda_apt_install python3-venv \
    && python3 -m venv "$CUDA_VENV"; } || {
    echo "error: cannot create a Python venv: install python3-venv" >&2
    return 1
  }
  "$CUDA_VENV/bin/pip" install --quiet --disable-pip-version-check "${CUDA_WHEELS[@]}"
  echo "$wanted" >"$stamp"
}

cuda_toolkit_env() {
  local root
  root="$(echo "$CUDA_VENV"/lib/python3*/site-packages/nvidia/cu13)"
  [[ -x "$root/bin/nvcc" ]] || { echo "error: no nvcc under $root" >&2; return 1; }
  export CUDA_ROOT="$root" CUDA_PATH="$root" CUDA_HOME="$root"
  export PATH="$root/bin:$PATH"
  export CUDARC_CUDA_VERSION=13000
  export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
  # candle-kernels also compiles its MoE/GGUF kernels (15 heavy files) to machine code, one at a time; this
  # network never calls them. ptxas -O0 only lowers the optimisation of that machine code: the kernels the
  # network runs are PTX, which the driver compiles (optimised) on the GPU, and PTX never passes ptxas here.
  export NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:--Xptxas -O0}"
  # Its own target folder: the feature changes candle's build, and sharing target/ would rebuild the CPU
  # build's artifacts every time one switches.
  export CARGO_TARGET_DIR="${CUDA_TARGET_DIR:-$_cuda_repo/target/cuda}"
}

cuda_toolkit_install && cuda_toolkit_env
