# Recipes of the segmenter. `just --list` shows them; `./just.sh RECIPE` installs just first if needed.

set shell := ["bash", "-euo", "pipefail", "-c"]

image := "data/conifer/image.png"
mask := "data/conifer/mask.png"

default:
    @just --list

# Install what is missing: protoc (for the build), the ONNX Runtime library (into .ort/, for the runner) and
# OpenSlide (into .openslide/, for the vendors' slide formats)
setup:
    bash scripts/setup/setup.sh

# The runner's readers against third-party readers (in .venv-slides): every TIFF fixture (tifffile), the
# OpenSlide fixtures (openslide-python), the OME-Zarr fixtures (zarr-python), predicted by the runner and by
# onnxruntime on the pixels those decode; OME-TIFF outputs through check_ome_tiff.py and OpenSlide. CI runs it.
check-slides: setup
    bash scripts/checks/check_slides.sh

# The job scripts of scripts/slurm/ on a real one-node Slurm cluster (slurm-wlm and munge from Debian, installed
# when missing; run as root): a folder and one slide, each over a 4-task array, the slide's finalize job after
# them (--dependency=afterok), compared byte for byte with single runs; the daemons stopped on exit. CI runs it.
check-slurm: setup
    bash scripts/checks/check_slurm.sh

# The binaries every recipe below runs, built once: one package selection (the trainer and the runner), whose
# dependencies `cargo test --workspace --release` builds with the same features, so nothing compiles twice.
bin := env_var_or_default("CARGO_TARGET_DIR", "target") / "release"

# Train on data/conifer into models/ (3000 iterations of 4 x 128^2 crops, Adam 1e-3 constant, no augmentation:
# on this image the cosine decay and augmentation both lowered the held-out IoU, see docs/training.md)
train *ARGS: build
    @echo "demo: training on {{image}} (3000 iterations; a progress bar follows)"
    {{bin}}/trainer train --image {{image}} --mask {{mask}} --out models \
        --iterations 3000 --batch 4 --crop 128 --lr 1e-3 --lr-schedule constant --seed 0 --augment none {{ARGS}}

# Export models/checkpoint.safetensors to models/model.onnx
export: build
    @echo "demo: exporting models/checkpoint.safetensors to models/model.onnx"
    {{bin}}/trainer export --checkpoint models/checkpoint.safetensors --output models/model.onnx

# Predict the whole training image with models/model.onnx: predictions.jpg, an overlay and metrics against the mask
predict: build
    @echo "demo: predicting {{image}} into predictions.jpg and predictions_overlay.jpg"
    {{bin}}/runner predict --model models/model.onnx --image {{image}} \
        --output predictions.jpg --overlay predictions_overlay.jpg --mask {{mask}} --metrics-json models/metrics.json

# The whole pipeline: setup, build (with cargo's progress: several minutes the first time), train, export, predict
demo: setup build train export predict

# The release binaries the recipes run (target/release/trainer and target/release/runner), with cargo's progress
build:
    @echo "build: the trainer and the runner in release (several minutes the first time)"
    cargo build --release -p trainer -p runner

# The same as `build` (its earlier name)
build-demo: build

# Format check, clippy, the API docs (warnings are errors) and every test (release: the tests train real models)
test: setup
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --release -- -D warnings
    RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
    cargo test --workspace --release

# The wheels segmenter-runner (the runner, no candle) and segmenter-trainer into dist/: maturin with zig,
# tagged manylinux_2_28 and checked with auditwheel; their own build in target/wheels/ (see docs/install.md)
wheels:
    bash scripts/wheels/build_wheels.sh

# The wheels as a user without Rust gets them: built, installed into a fresh venv with their dependencies from
# PyPI, run from outside the checkout with no cargo on PATH; the runner's mask and probabilities byte for byte
# against target/release/runner, OpenSlide from openslide-bin, the trainer's train and export. CI runs it.
check-wheels: setup build
    bash scripts/checks/check_wheels.sh

# Fuzz the runner's image decoding, checkpoint loading and the tile plan (cargo-fuzz, libFuzzer), SECONDS each;
# installs cargo-fuzz if missing, works on stable; not part of CI. `just fuzz 600 tile_plan` runs one target.
fuzz SECONDS="180" *TARGETS:
    bash scripts/checks/fuzz.sh {{SECONDS}} {{TARGETS}}

# Write the bioimage.io package models/segmenter.bioimageio.zip from models/checkpoint.safetensors (its README
# reports the IoU that runner predict measures on data/conifer with the exported weights)
package: build
    {{bin}}/trainer export --checkpoint models/checkpoint.safetensors --output models/model.onnx
    {{bin}}/runner predict --quiet --model models/model.onnx --image {{image}} \
        --mask {{mask}} --output predictions.jpg --metrics-json models/metrics.json
    {{bin}}/trainer export --checkpoint models/checkpoint.safetensors \
        --bioimageio models/segmenter.bioimageio.zip --validation-metrics models/metrics.json

# Check the export formats with their consumers' tools (in .venv-bioimageio): bioimageio test on a fresh
# package and on the committed one, bioimageio.core's blocked prediction, the Triton config against Triton's
# ModelConfig, python/predict_onnx.py against runner predict
check-bioimageio: setup
    bash scripts/checks/check_bioimageio.sh
# Clippy (-D warnings, all targets) of trainer and runner with --features cuda, on any machine: no GPU needed.
# Installs a CUDA 13.0 compiler from PyPI into .venv-cuda/ and builds into target/cuda/. CI runs it.
check-cuda: setup
    bash scripts/checks/check_cuda.sh

# Build the CUDA binaries and gather everything the GPU check needs into gpu_bundle/ (for a GPU node without
# network or Rust: `bash gpu_bundle/run.sh` there). Set CUDA_COMPUTE_CAP for a GPU other than H100/H200 (90).
gpu-bundle: setup
    bash scripts/gpu/gpu_bundle.sh

# On a machine with an NVIDIA GPU: CUDA against CPU training (loss curves) and prediction (within 1e-4), GPU
# memory, seconds per step and megapixels/s beside the CPU's. Without a GPU: says so in one line and fails.
gpu-check:
    @bash scripts/gpu/gpu_check.sh --probe
    CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d .)}" \
        just gpu-bundle
    bash gpu_bundle/run.sh

# Test scripts/gpu/gpu_check.sh without a GPU (a fake nvidia-smi, CPU binaries standing in for CUDA ones): its
# refusals and its whole pipeline. CI runs it after the tests and check-cuda.
test-gpu-check:
    bash scripts/checks/test_gpu_check.sh

# Validate models/model.onnx with Python's onnx checker (full_check); not part of CI
check-onnx model="models/model.onnx":
    python3 -m venv .venv && .venv/bin/pip install -q onnx numpy
    .venv/bin/python scripts/checks/check_onnx.py {{model}}

# Benchmarks (release): sgemm yardstick, training step vs candle's ops and PyTorch, tiled vs untiled prediction,
# peak memory of an 8192^2 prediction; writes BENCHMARKS.md
bench: setup
    cargo run --release -q -p bench -- --write BENCHMARKS.md
