#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ (cargo-fuzz, libFuzzer) for SECONDS each; not part of CI.
#   scripts/checks/fuzz.sh [SECONDS] [TARGET...]      (default: 180 s; decode_image checkpoint tile_plan)
# Works on the stable toolchain from a fresh machine: it installs cargo-fuzz from crates.io when missing,
# lets cargo-fuzz's -Z flags through with RUSTC_BOOTSTRAP=1, and builds without a sanitizer (the code under
# test is safe Rust: what fuzzing finds is a panic, a hang or an allocation over the memory limit).
# Findings land in fuzz/artifacts/TARGET/; replay one with
#   RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none --fuzz-dir fuzz TARGET fuzz/artifacts/TARGET/FILE
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$HOME/.cargo/bin:$PATH"
seconds="${1:-180}"
shift $(( $# > 0 ? 1 : 0 ))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(decode_image checkpoint tile_plan)
fi
if ! command -v c++ >/dev/null 2>&1; then
  echo "fuzz.sh: libFuzzer is built from C++: install a compiler (sudo apt-get install g++)" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz (cargo install cargo-fuzz --locked)" >&2
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

# Seeds: small images of every decoded format (fuzz/seeds, the runner's TIFF fixtures), the training
# mask, the demo checkpoint.
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target"
  if [ -d "fuzz/seeds/$target" ]; then cp -n "fuzz/seeds/$target"/* "fuzz/corpus/$target/"; fi
done
if [ -d fuzz/corpus/decode_image ]; then
  # The target's first byte picks RGB or gray, banded or whole; the rest is the file.
  for file in data/conifer/mask.png runner/tests/data/*.tif; do
    [ -f "$file" ] || continue
    seed="fuzz/corpus/decode_image/seed_$(basename "$file")"
    [ -e "$seed" ] || { printf '\x00'; cat "$file"; } > "$seed"
  done
fi
if [ -d fuzz/corpus/checkpoint ] && [ -f models/checkpoint.safetensors ]; then
  cp -n models/checkpoint.safetensors fuzz/corpus/checkpoint/demo.safetensors
fi

failed=()
for target in "${targets[@]}"; do
  echo "fuzz.sh: $target for $seconds s" >&2
  # cargo-fuzz's default build: optimised, with debug assertions and overflow checks (a wrapped size is a
  # finding too). -rss_limit_mb: an input that makes the code under test hold more than 2 GB is a finding (a
  # decompression bomb must be refused from its header). -timeout: one input over 30 s is a hang.
  features=()
  if [ "$target" = checkpoint ]; then features=(--features checkpoint); fi
  if ! cargo fuzz run --sanitizer none --fuzz-dir fuzz "${features[@]}" "$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 -print_final_stats=1; then
    failed+=("$target")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: findings in ${failed[*]}: see fuzz/artifacts/" >&2
  exit 1
fi
echo "fuzz.sh: ${targets[*]} ran $seconds s each without a finding" >&2
