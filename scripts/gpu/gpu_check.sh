#!/usr/bin/env bash
# The GPU check (`just gpu-check`, `bash gpu_bundle/run.sh`): on a machine with an NVIDIA GPU,
#   1. trains the same seed for 200 iterations on CUDA and on the CPU and compares the loss curves;
#   2. reports the GPU memory of training at 1 x 256^2 (the memory rule's largest forward pass);
#   3. exports the CUDA-trained checkpoint and compares `runner predict --device cuda` with `--device cpu`
#      on a 2048^2 image and on held-out rows (probabilities within 1e-4);
#   4. prints seconds per training iteration (1 x 256^2, 4 x 128^2) and prediction megapixels/s, GPU beside
#      CPU, and writes everything to $WORK/summary.md.
# Without a GPU it says so in one line and exits 1, before anything else.
#
#   gpu_check.sh --probe          only the GPU test (`just gpu-check` runs it before building)
#   gpu_check.sh BUNDLE_DIR       the check, with BUNDLE_DIR/{bin,lib,data} laid out as by
#                                 scripts/gpu/gpu_bundle.sh
# Environment: WORK (default BUNDLE_DIR/work), PYTHON (default python3: its nvidia-* wheels provide cuBLAS,
# cuRAND, cuDNN, ...), GPU_CHECK_ITERATIONS (default 200).
set -euo pipefail

die() {
  echo "gpu-check: $*" >&2
  exit 1
}

# --- 1. Is there a GPU? One line and exit 1 if not. ---------------------------------------------------
command -v nvidia-smi >/dev/null 2>&1 \
  || die "no NVIDIA GPU on this machine (nvidia-smi not found): run this on a machine with an NVIDIA GPU and its driver"
gpu_index="${CUDA_VISIBLE_DEVICES:-0}"
gpu_index="${gpu_index%%,*}"
[[ "$gpu_index" =~ ^[0-9]+$ ]] || gpu_index=0
if ! gpu_name="$(nvidia-smi -i "$gpu_index" --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)" \
  || [[ -z "$gpu_name" ]]; then
  die "no usable NVIDIA GPU on this machine (nvidia-smi: $(echo "$gpu_name" | head -n 1))"
fi
if [[ "${1:-}" == "--probe" ]]; then
  echo "gpu-check: found $gpu_name"
  exit 0
fi

bundle="$(cd "${1:?usage: gpu_check.sh --probe | gpu_check.sh BUNDLE_DIR}" && pwd)"
bin="$bundle/bin" lib="$bundle/lib" data="$bundle/data"
work="${WORK:-$bundle/work}"
python="${PYTHON:-python3}"
iterations="${GPU_CHECK_ITERATIONS:-200}"
mkdir -p "$work"
# candle's kernels are PTX for one architecture (sm_90a for 90: it does not run on other GPUs).
built_for="$(cat "$bundle/compute_cap")"
gpu_cap="$(nvidia-smi -i "$gpu_index" --query-gpu=compute_cap --format=csv,noheader | tr -d '.')"
[[ "$gpu_cap" == "$built_for" ]] || die "this bundle's CUDA kernels are built for compute capability $built_for," \
  "the GPU's is $gpu_cap: rebuild it with CUDA_COMPUTE_CAP=$gpu_cap scripts/gpu/gpu_bundle.sh"
echo "gpu-check: $gpu_name; results in $work"

# --- The CUDA libraries: the node's Python wheels (nvidia-cublas, -curand, -cudnn, ...), then the bundle's
# fallback copy of the CUDA 13.0 runtime. Report every missing one at once, with the wheel that has it. -----
wheel_libs="$("$python" - <<'EOF' 2>/dev/null || true
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except ImportError:
    roots = []
dirs = sorted({os.path.dirname(p) for r in roots for p in glob.glob(os.path.join(r, "**", "lib", "*.so*"), recursive=True)})
print(":".join(dirs))
EOF
)"
export LD_LIBRARY_PATH="$lib${wheel_libs:+:$wheel_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}:$lib/fallback"
missing="$( { ldd "$bin/trainer" || true; ldd "$lib/libonnxruntime_providers_cuda.so" || true; } 2>&1 \
  | awk '/not found/ {print $1}' | sort -u)"
if [[ -n "$missing" ]]; then
  hint=""
  for so in $missing; do
    case "$so" in
      libcuda.so*) hint+=" $so (the NVIDIA driver)" ;;
      libcublas*) hint+=" $so (nvidia-cublas)" ;;
      libcurand*) hint+=" $so (nvidia-curand)" ;;
      libnvrtc*) hint+=" $so (nvidia-cuda-nvrtc)" ;;
      libcudart*) hint+=" $so (nvidia-cuda-runtime)" ;;
      *) hint+=" $so" ;;
    esac
  done
  die "missing CUDA 13 libraries:$hint; install those wheels into the Python given by PYTHON (now $python), or add their folders to LD_LIBRARY_PATH"
fi
"$python" -c 'import sys; sys.exit(0)' || die "no Python at PYTHON=$python (the comparisons need one, standard library only)"
# ONNX Runtime opens cuDNN only when the CUDA provider starts: say early if it cannot be found.
have_library() {
  local dir
  for dir in ${LD_LIBRARY_PATH//:/ }; do [[ -e "$dir/$1" ]] && return 0; done
  ldconfig -p 2>/dev/null | grep -q "$1"
}
have_library libcudnn.so.9 \
  || echo "gpu-check: warning: libcudnn.so.9 is not in $python's wheels nor LD_LIBRARY_PATH; ONNX Runtime's CUDA provider needs it (wheel nvidia-cudnn-cu13)" >&2

compare() { "$python" "$bundle/gpu_compare.py" "$@" 2>&1; }
# "... in 12.3 s (0.061 s/it); ..." -> 0.061
seconds_per_iteration() { sed -n 's/.*(\([0-9.]*\) s\/it).*/\1/p' "$1"; }
# "... 0.70 s, 5.98 megapixels/s, ..." -> 5.98
megapixels_per_second() { sed -n 's/.* \([0-9.]*\) megapixels\/s.*/\1/p' "$1"; }

# GPU memory in use (MiB), sampled every 100 ms into $1 until stop_sampling.
start_sampling() {
  nvidia-smi -i "$gpu_index" --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$1" &
  sampler=$!
}
stop_sampling() { kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true; }
peak_mib() { sort -n "$1" | tail -n 1; }

train() { # DEVICE BATCH CROP OUT
  "$bin/trainer" train --image "$data/train.png" --mask "$data/train_mask.png" --out "$4" --device "$1" \
    --batch "$2" --crop "$3" --iterations "$iterations" --lr 1e-3 --lr-schedule cosine --seed 0 \
    --augment none --checkpoint-every 0 --quiet >"$4.log" 2>&1 || die "training on $1 failed: $(tail -n 1 "$4.log")"
}

failures=0
summary="$work/summary.md"
{
  echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "GPU: $gpu_name. CPU: $(nproc) threads, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)."
  echo
} >"$summary"

# --- 2. Training: CUDA against the CPU, same seed; GPU memory at 1 x 256^2 ----------------------------------
# Loss tolerance: candle's CUDA ops and the fused CPU kernels sum in different orders, and 200 Adam steps
# can amplify that. Measured on the CPU, candle's own ops against the fused kernels (`--reference-ops`, seed
# 0, 200 iterations of 1 x 64^2 on data/train.png) differ by at most 5.9e-6 at any iteration. 1e-3 leaves
# 170 times that for the GPU's summation order, and still fails a wrong op or gradient.
loss_tolerance=1e-3
idle_mib="$(nvidia-smi -i "$gpu_index" --query-gpu=memory.used --format=csv,noheader,nounits)"
for shape in "4 128" "1 256" "1 16"; do
  read -r batch crop <<<"$shape"
  for device in cuda cpu; do
    if [[ "$crop" == 16 && "$device" == cpu ]]; then continue; fi # 1 x 16^2: the CUDA baseline memory only
    out="$work/train_${device}_${batch}x${crop}"
    echo "gpu-check: training $iterations iterations of $batch x $crop^2 on $device"
    if [[ "$device" == cuda ]]; then
      start_sampling "$out.memory"
      train "$device" "$batch" "$crop" "$out"
      stop_sampling
    else
      train "$device" "$batch" "$crop" "$out"
    fi
  done
done
echo "## Training ($iterations iterations, seed 0, Adam 1e-3 cosine, data/train.png)" >>"$summary"
echo >>"$summary"
for shape in 4x128 1x256; do
  if line="$(compare losses "$work/train_cuda_$shape/loss.csv" "$work/train_cpu_$shape/loss.csv" "$loss_tolerance")"; then
    echo "- $shape^2 CUDA vs CPU: $line: PASS" >>"$summary"
  else
    echo "- $shape^2 CUDA vs CPU: $line: FAIL" >>"$summary"
    failures=$((failures + 1))
  fi
done
peak256="$(peak_mib "$work/train_cuda_1x256.memory")" peak16="$(peak_mib "$work/train_cuda_1x16.memory")"
cat >>"$summary" <<EOF
- GPU memory in use above the idle GPU's $idle_mib MiB (nvidia-smi every 100 ms):
  - training 1 x 256^2 peaks at $((peak256 - idle_mib)) MiB
  - training 1 x 16^2 peaks at $((peak16 - idle_mib)) MiB (mostly the CUDA context, kernels and allocator)
  - the difference, $((peak256 - peak16)) MiB, is what the 256^2 step itself adds

| seconds per iteration (\`trainer train\`, whole loop) | CUDA | CPU |
|---|---|---|
| 1 x 256^2 | $(seconds_per_iteration "$work/train_cuda_1x256.log") | $(seconds_per_iteration "$work/train_cpu_1x256.log") |
| 4 x 128^2 | $(seconds_per_iteration "$work/train_cuda_4x128.log") | $(seconds_per_iteration "$work/train_cpu_4x128.log") |

EOF

# --- 3. Export the CUDA-trained checkpoint; predict on CUDA and on the CPU ---------------------------------
model="$work/model.onnx"
"$bin/trainer" export --checkpoint "$work/train_cuda_4x128/checkpoint.safetensors" --output "$model" \
  >"$work/export.log" 2>&1 || die "export failed: $(tail -n 1 "$work/export.log")"
predict() { # DEVICE IMAGE NAME [MASK]
  local out="$work/predict_${3}_$1"
  "$bin/runner" predict --model "$model" --image "$2" --output "$out.png" --probabilities "$out.npy" \
    --device "$1" --ort-lib "$lib/libonnxruntime.so.1.31.1" --quiet ${4:+--mask "$4"} >"$out.log" 2>&1 \
    || die "runner predict --device $1 on $2 failed: $(tail -n 1 "$out.log")"
}
echo "## Prediction (ONNX Runtime 1.31.1, model.onnx exported from the CUDA-trained checkpoint)" >>"$summary"
echo >>"$summary"
for image in big2048 heldout; do
  mask=""
  if [[ "$image" == heldout ]]; then mask="$data/heldout_mask.png"; fi
  for device in cuda cpu; do
    echo "gpu-check: predicting $image on $device"
    # Twice: the first run pays for ONNX Runtime's CUDA setup (cuDNN algorithm search); the second is timed.
    predict "$device" "$data/$image.png" "$image" "$mask"
    predict "$device" "$data/$image.png" "$image" "$mask"
  done
  if line="$(compare npy "$work/predict_${image}_cuda.npy" "$work/predict_${image}_cpu.npy" 1e-4)"; then
    echo "- $image CUDA vs CPU: $line: PASS" >>"$summary"
  else
    echo "- $image CUDA vs CPU: $line: FAIL" >>"$summary"
    failures=$((failures + 1))
  fi
done
iou() { grep -o 'IoU[^,]*' "$1" | head -n 1; }
cat >>"$summary" <<EOF
- held-out rows, against their mask: CUDA $(iou "$work/predict_heldout_cuda.log"), CPU $(iou "$work/predict_heldout_cpu.log")

| megapixels/s (\`runner predict\`, second of two runs) | CUDA | CPU |
|---|---|---|
| 2048 x 2048 | $(megapixels_per_second "$work/predict_big2048_cuda.log") | $(megapixels_per_second "$work/predict_big2048_cpu.log") |
EOF

cat "$summary"
if ((failures > 0)); then
  die "$failures comparison(s) out of tolerance (see $summary)"
fi
echo "gpu-check: all comparisons passed; summary in $summary"
