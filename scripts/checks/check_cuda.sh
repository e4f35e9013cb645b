#!/usr/bin/env bash
# `just check-cuda`: clippy (-D warnings, every target) of the trainer and the runner with `--features cuda`,
# on any machine, GPU or not: the CUDA build is checked on every CI run instead of rotting unseen. Installs
# its compiler itself (scripts/setup/cuda_toolkit.sh) and builds into target/cuda/.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v protoc >/dev/null || bash scripts/setup/setup.sh
# shellcheck source=scripts/setup/cuda_toolkit.sh
source scripts/setup/cuda_toolkit.sh
started=$SECONDS
for crate in trainer runner; do
  echo "check-cuda: cargo clippy -p $crate --features cuda (CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP)" >&2
  cargo clippy --release -p "$crate" --all-targets --features cuda -- -D warnings
done
echo "check-cuda: trainer and runner are clippy-clean with --features cuda ($((SECONDS - started)) s)" >&2
