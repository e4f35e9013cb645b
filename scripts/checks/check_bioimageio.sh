#!/usr/bin/env bash
# `just check-bioimageio`: checks the export formats with their consumers' own tools, from the committed
# checkpoint. Installs bioimageio.core, tritonclient and onnxruntime into .venv-bioimageio (pinned in
# scripts/checks/requirements-bioimageio.txt), builds trainer and runner, exports every format into a
# temporary folder, then runs scripts/checks/check_bioimageio.py on:
#   - the written bioimage.io package and the committed models/segmenter.bioimageio.zip (bioimageio test,
#     declared tensors against the graph, bioimageio.core's blocked prediction against whole passes);
#   - the Validation IoU in the committed package's README against `runner predict --mask` on its weights;
#   - the Triton repository entry (config.pbtxt parsed as Triton's ModelConfig, names and dims);
#   - python/predict_onnx.py against `runner predict` (identical masks, even and odd image sizes).
set -euo pipefail
export TQDM_DISABLE=1  # bioimageio.core's per-block progress bars would flood the CI log
cd "$(dirname "$0")/../.."
venv=.venv-bioimageio
requirements=scripts/checks/requirements-bioimageio.txt
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
  echo "check-bioimageio: installing $requirements into $venv"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian ships venv (ensurepip) separately from python3.
    echo "check-bioimageio: installing python3-venv (Debian) for python3 -m venv"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi
python="$venv/bin/python"

cargo build --release --quiet -p trainer -p runner
trainer=target/release/trainer
runner=target/release/runner

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== trainer export: ONNX, bioimage.io package and Triton repository from models/checkpoint.safetensors"
"$runner" predict --quiet --model models/model.onnx --image data/conifer/image.png --mask data/conifer/mask.png \
  --output "$tmp/committed.png" --metrics-json "$tmp/metrics.json" >/dev/null
"$trainer" export --checkpoint models/checkpoint.safetensors --output "$tmp/model.onnx" \
  --bioimageio "$tmp/segmenter.bioimageio.zip" --triton "$tmp/triton" --name segmenter \
  --validation-metrics "$tmp/metrics.json"

echo "== bioimage.io packages"
"$python" scripts/checks/check_bioimageio.py package "$tmp/segmenter.bioimageio.zip" models/segmenter.bioimageio.zip

echo "== a three-class package: trained briefly on data/ihc's three-class mask, exported, checked the same way"
"$trainer" train --quiet --image data/ihc/image.png --mask data/ihc/mask3.png --label-format index \
  --class-names background,haematoxylin,dab --class-colors '#000000,#0000ff,#964b00' \
  --iterations 20 --checkpoint-every 0 --out "$tmp/three" >/dev/null
"$trainer" export --checkpoint "$tmp/three/checkpoint.safetensors" --output "$tmp/three/model.onnx" \
  --bioimageio "$tmp/three.bioimageio.zip" --triton "$tmp/three-triton" --name three-classes \
  --test-image data/ihc/image.png >/dev/null
"$python" scripts/checks/check_bioimageio.py package "$tmp/three.bioimageio.zip"
"$python" scripts/checks/check_bioimageio.py triton "$tmp/three-triton" three-classes "$tmp/three/model.onnx"

echo "== the committed package's Validation section against runner predict on its own weights"
unzip -q -o models/segmenter.bioimageio.zip model.onnx -d "$tmp/committed-package"
"$runner" predict --quiet --model "$tmp/committed-package/model.onnx" --image data/conifer/image.png \
  --mask data/conifer/mask.png --output "$tmp/package.png" --metrics-json "$tmp/package-metrics.json" >/dev/null
"$python" scripts/checks/check_bioimageio.py readme-iou models/segmenter.bioimageio.zip "$tmp/package-metrics.json"

echo "== Triton model repository"
"$python" scripts/checks/check_bioimageio.py triton "$tmp/triton" segmenter "$tmp/model.onnx"

echo "== python/predict_onnx.py against runner predict"
# The training image (500x1250) and an odd-sized crop of it (exercises the even padding and short windows).
"$python" -c "from PIL import Image; Image.open('data/conifer/image.png').crop((3, 101, 3 + 301, 101 + 263)).save('$tmp/odd.png')"
for image in data/conifer/image.png "$tmp/odd.png"; do
  "$runner" predict --quiet --model "$tmp/model.onnx" --image "$image" --output "$tmp/runner.png" >/dev/null
  "$python" python/predict_onnx.py "$tmp/model.onnx" "$image" "$tmp/python.png" >/dev/null
  "$python" scripts/checks/check_bioimageio.py same-mask "$tmp/runner.png" "$tmp/python.png"
done
echo "check-bioimageio: all checks passed"
