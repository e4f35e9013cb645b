#!/usr/bin/env bash
# Tests scripts/gpu/gpu_check.sh where no GPU is: (1) without nvidia-smi it fails with one line; (2) with a
# fake nvidia-smi and a bundle whose "CUDA" binaries are the CPU build (`--device cuda` rewritten to cpu), its whole
# pipeline runs: training, memory sampling, export, prediction, the comparisons, the summary; (3) a bundle
# built for another compute capability is refused; (4) a comparison out of tolerance fails the check.
# What it cannot test is CUDA itself. Needs the CPU release build (target/release) and .ort/lib.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="$PWD"
target="${CARGO_TARGET_DIR:-$repo/target}/release"
for binary in trainer runner; do
  [[ -x "$target/$binary" ]] || { echo "test_gpu_check: build first: cargo build --release -p $binary" >&2; exit 1; }
done
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail() {
  echo "test_gpu_check: FAIL: $*" >&2
  exit 1
}

# (1) No GPU: one line on stderr, exit 1, nothing on stdout.
mkdir "$tmp/empty"
if env PATH="$tmp/empty" "$BASH" scripts/gpu/gpu_check.sh "$tmp" >"$tmp/out" 2>"$tmp/err"; then fail "succeeded without a GPU"; fi
[[ ! -s "$tmp/out" && "$(wc -l <"$tmp/err")" == 1 ]] && grep -q "no NVIDIA GPU on this machine" "$tmp/err" \
  || fail "no-GPU message: $(cat "$tmp/out" "$tmp/err")"

# (2) A fake GPU: the bundle layout of gpu_bundle.sh, with CPU binaries and the CPU ONNX Runtime.
bundle="$tmp/bundle"
mkdir -p "$bundle/bin" "$bundle/lib" "$tmp/fake"
# The check's images need Pillow: in the venv of scripts/setup/cuda_toolkit.sh, as gpu_bundle.sh does.
(source scripts/setup/cuda_toolkit.sh)
"$repo/.venv-cuda/bin/python" -c 'import PIL' 2>/dev/null \
  || "$repo/.venv-cuda/bin/pip" install --quiet --disable-pip-version-check "pillow>=10"
"$repo/.venv-cuda/bin/python" scripts/gpu/gpu_check_data.py data/conifer "$bundle/data"
cp scripts/gpu/gpu_check.sh scripts/gpu/gpu_compare.py "$bundle/"
echo 90 >"$bundle/compute_cap"
cp .ort/lib/libonnxruntime.so.1.31.1 "$bundle/lib/"
cp /bin/true "$bundle/lib/libonnxruntime_providers_cuda.so" # only ldd looks at it
for binary in trainer runner; do
  cat >"$bundle/bin/$binary" <<EOF
#!/usr/bin/env bash
args=(); for a in "\$@"; do [[ "\$a" == cuda ]] && a=cpu; args+=("\$a"); done
exec "$target/$binary" "\${args[@]}"
EOF
done
cat >"$tmp/fake/nvidia-smi" <<'EOF'
#!/usr/bin/env bash
case "$*" in
  *name,driver_version*) echo "Fake GPU, 0.0, 1 MiB" ;;
  *compute_cap*) echo "${FAKE_COMPUTE_CAP:-9.0}" ;;
  *-lms*) while true; do echo 700; sleep 0.1; done ;;
  *memory.used*) echo 50 ;;
esac
EOF
chmod +x "$bundle/bin/"* "$tmp/fake/nvidia-smi"
export PATH="$tmp/fake:$PATH" GPU_CHECK_ITERATIONS=5
bash "$bundle/gpu_check.sh" "$bundle" >"$tmp/log" 2>&1 || fail "fake-GPU run: $(tail -n 3 "$tmp/log")"
summary="$bundle/work/summary.md"
[[ "$(grep -c ': PASS$' "$summary")" == 4 ]] || fail "expected 4 passed comparisons: $(cat "$summary")"
grep -q "training 1 x 256^2 peaks at 650 MiB" "$summary" || fail "memory line: $(grep -A2 'GPU memory' "$summary")"
grep -Eq '^\| 4 x 128\^2 \| [0-9.]+ \| [0-9.]+ \|$' "$summary" || fail "seconds per iteration missing: $(cat "$summary")"
grep -Eq '^\| 2048 x 2048 \| [0-9.]+ \| [0-9.]+ \|$' "$summary" || fail "megapixels/s missing: $(cat "$summary")"

# (3) Another compute capability: refused before any work, in one line.
if FAKE_COMPUTE_CAP=8.0 bash "$bundle/gpu_check.sh" "$bundle" >"$tmp/out" 2>"$tmp/err"; then fail "ran on another compute capability"; fi
grep -q "built for compute capability 90, the GPU's is 80" "$tmp/err" || fail "compute capability message: $(cat "$tmp/err")"

# (4) A difference out of tolerance fails the check: the "CUDA" run of the runner predicts with another model.
cat >"$bundle/bin/runner" <<EOF
#!/usr/bin/env bash
[[ " \$* " == *" cuda "* ]] && cuda=1 || cuda=0
args=(); previous=""
for a in "\$@"; do
  [[ "\$a" == cuda ]] && a=cpu
  ((cuda)) && [[ "\$previous" == --model ]] && a="$repo/models/model.onnx"
  args+=("\$a"); previous="\$a"
done
exec "$target/runner" "\${args[@]}"
EOF
if bash "$bundle/gpu_check.sh" "$bundle" >"$tmp/log" 2>&1; then fail "passed with differing predictions"; fi
grep -q "comparison(s) out of tolerance" "$tmp/log" || fail "tolerance failure message: $(tail -n 3 "$tmp/log")"
echo "test_gpu_check: gpu_check.sh refuses without a GPU or for another compute capability, runs its whole pipeline on a fake GPU, and fails on a difference"
