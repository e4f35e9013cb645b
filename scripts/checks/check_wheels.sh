#!/usr/bin/env bash
# `just check-wheels`: the wheels as a user without Rust gets them. Builds them (scripts/wheels/build_wheels.sh),
# makes a fresh venv outside the checkout, installs both wheels there with their dependencies from PyPI
# (onnxruntime, openslide-bin), and runs them from a folder outside the checkout with a PATH that holds no cargo
# or rustc and none of the libraries' environment variables:
#   - both commands print their version and the commit they were built from;
#   - `segmenter-runner predict` of data/conifer/image.png with models/model.onnx writes the same mask and
#     probabilities .npy, byte for byte, as the cargo-built runner, with ONNX Runtime from the onnxruntime wheel;
#   - `segmenter-runner info` of an Aperio SVS slide names OpenSlide as its reader, loaded from openslide-bin;
#   - `segmenter-trainer train --iterations 50` and `export` write the same checkpoint and model.onnx as the
#     cargo-built trainer, and the runner wheel predicts with that model;
#   - the runner wheel holds no candle code and is at most 40 MB; prints the wheel sizes and the install time.
# Needs the cargo-built binaries and .ort/ (`just build`, `just setup`: the recipe runs both first).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
bin="${CARGO_TARGET_DIR:-$repo/target}/release"
fail() { echo "check-wheels: FAIL: $*" >&2; exit 1; }
pass() { echo "check-wheels: ok: $*"; }

bash scripts/wheels/build_wheels.sh
runner_wheel="$(ls "$repo"/dist/segmenter_runner-*.whl)"
trainer_wheel="$(ls "$repo"/dist/segmenter_trainer-*.whl)"

# --- what the runner wheel holds -----------------------------------------------------------------------------
mb() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
echo "check-wheels: $(basename "$runner_wheel"): $(mb "$runner_wheel")"
echo "check-wheels: $(basename "$trainer_wheel"): $(mb "$trainer_wheel")"
[ "$(stat -c %s "$runner_wheel")" -le $((40 * 1000 * 1000)) ] || fail "the runner wheel is over 40 MB"
work="$(mktemp -d /tmp/check-wheels.XXXXXX)"
trap 'rm -rf "$work"' EXIT
# Code keeps the source paths of its crates in panic messages, stripped or not: candle's name in the trainer's
# binary, none in the runner's.
python3 -m zipfile -e "$runner_wheel" "$work/runner-wheel"
python3 -m zipfile -e "$trainer_wheel" "$work/trainer-wheel"
candle_in() {
  python3 -c 'import sys; print(open(sys.argv[1], "rb").read().count(b"candle"))' \
    "$(find "$1" -path '*.data/scripts/*' -type f | head -n 1)"
}
[ "$(candle_in "$work/trainer-wheel")" -gt 0 ] || fail "no candle found in the trainer's binary: the search is broken"
[ "$(candle_in "$work/runner-wheel")" -eq 0 ] || fail "the runner wheel holds candle code"
pass "the runner wheel holds no candle code (the trainer's names it $(candle_in "$work/trainer-wheel") times)"

# --- a fresh venv, the wheels and their dependencies from PyPI -------------------------------------------------
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
start=$(date +%s.%N)
"$work/venv/bin/pip" install -q "$runner_wheel" "$trainer_wheel"
echo "check-wheels: pip install of both wheels and their dependencies took" \
  "$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }')"

# A PATH without cargo or rustc, and nothing else from this shell (no ORT_DYLIB_PATH, OPENSLIDE_LIB, CARGO_*).
clean_path="$work/venv/bin"
IFS=: read -r -a dirs <<<"$PATH"
for d in "${dirs[@]}"; do
  [ -n "$d" ] && [ -d "$d" ] && [ ! -e "$d/cargo" ] && [ ! -e "$d/rustc" ] && clean_path="$clean_path:$d"
done
user() { env -i HOME="$work/home" PATH="$clean_path" LANG=C.UTF-8 "$@"; }
user bash -c '! command -v cargo && ! command -v rustc' >/dev/null || fail "cargo or rustc is still on PATH"
run="$work/run"
mkdir -p "$run" "$work/home"
cp data/conifer/image.png data/conifer/mask.png models/model.onnx imaging/tests/data/openslide/small.svs "$run/"
cd "$run"

# --- versions -------------------------------------------------------------------------------------------------
commit="$(git -C "$repo" rev-parse --short=12 HEAD)"
for cmd in segmenter-runner segmenter-trainer; do
  version="$(user "$cmd" --version)"
  [[ "$version" == *"(commit $commit)"* ]] || fail "$cmd --version says '$version', not commit $commit"
  pass "$version"
done

# --- the runner: byte for byte against the cargo-built one ----------------------------------------------------
"$bin/runner" predict --quiet --model model.onnx --image image.png --output cargo_mask.png \
  --probabilities cargo_probabilities.npy
user env LD_DEBUG=files segmenter-runner predict --quiet --model model.onnx --image image.png \
  --output wheel_mask.png --probabilities wheel_probabilities.npy 2>ld_predict.log
cmp cargo_mask.png wheel_mask.png || fail "the masks differ"
cmp cargo_probabilities.npy wheel_probabilities.npy || fail "the probabilities differ"
grep -q "file=$work/venv/lib/python3[.0-9]*/site-packages/onnxruntime/capi/libonnxruntime.so" ld_predict.log \
  || fail "ONNX Runtime was not loaded from the onnxruntime wheel"
pass "segmenter-runner predict: mask and probabilities identical to $bin/runner's, ONNX Runtime from the wheel"

# --- OpenSlide from openslide-bin -----------------------------------------------------------------------------
info="$(user env LD_DEBUG=files segmenter-runner info small.svs 2>ld_info.log)"
[[ "$info" == "small.svs: OpenSlide 4."* ]] || fail "info does not name OpenSlide as the reader: $info"
grep -q "file=$work/venv/lib/python3[.0-9]*/site-packages/openslide_bin/libopenslide.so.1" ld_info.log \
  || fail "OpenSlide was not loaded from the openslide-bin wheel"
pass "segmenter-runner info: ${info%%$'\n'*}, loaded from openslide-bin"

# --- the trainer: train and export as the cargo-built one does, then predict with the result ------------------
train=(train --image image.png --mask mask.png --iterations 50 --batch 4 --crop 128 --seed 0)
"$bin/trainer" "${train[@]}" --out cargo_models >/dev/null 2>&1
"$bin/trainer" export --checkpoint cargo_models/checkpoint.safetensors --output cargo_models/model.onnx >/dev/null
user segmenter-trainer "${train[@]}" --out wheel_models >/dev/null 2>&1
user segmenter-trainer export --checkpoint wheel_models/checkpoint.safetensors --output wheel_models/model.onnx \
  >/dev/null
for f in checkpoint.safetensors loss.csv model.onnx; do
  cmp "cargo_models/$f" "wheel_models/$f" || fail "segmenter-trainer's $f differs from $bin/trainer's"
done
user segmenter-runner predict --quiet --model wheel_models/model.onnx --image image.png --output trained.png
[ -s trained.png ] || fail "segmenter-runner wrote no mask with the trained model"
pass "segmenter-trainer train (50 iterations) + export: checkpoint, loss.csv and model.onnx identical to" \
  "$bin/trainer's; segmenter-runner predicts with it"
echo "check-wheels: all passed"
