#!/usr/bin/env bash
# Builds the wheels `segmenter-runner` and `segmenter-trainer` into dist/ (`just wheels`): maturin's binary
# wheels (runner/pyproject.toml, trainer/pyproject.toml), linked by zig against glibc 2.28 so that they run on
# RHEL 8 and newer, tagged manylinux_2_28 and checked with auditwheel. Their own target folder (target/wheels):
# another linker and target than the source build's. Installs maturin, ziglang and auditwheel into
# .venv-wheels/ and protoc (the trainer's build needs it) when missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv-wheels
requirements=scripts/wheels/requirements-wheels.txt
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! cmp -s "$requirements" "$venv/requirements.txt" 2>/dev/null; then
  echo "wheels: installing $requirements into $venv/"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian ships venv (ensurepip) separately from python3.
    echo "wheels: installing python3-venv (Debian) for python3 -m venv"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf "$venv"
    python3 -m venv "$venv"
  fi
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -r "$requirements"
  cp "$requirements" "$venv/requirements.txt"
fi
command -v protoc >/dev/null 2>&1 || bash scripts/setup/setup.sh
# maturin finds zig through the ziglang package of the Python it runs under.
export PATH="$PWD/$venv/bin:$PATH"
mkdir -p dist
for crate in runner trainer; do
  name="segmenter-$crate"
  rm -f dist/"${name//-/_}"-*.whl
  echo "wheels: building $name (maturin --zig, manylinux_2_28)"
  maturin build --release --locked --zig --manifest-path "$crate/Cargo.toml" --target-dir target/wheels \
    --out dist
  wheel="$(ls dist/"${name//-/_}"-*.whl)"
  # The tag auditwheel reads from the binary's symbols must be manylinux 2.28 or older, as the name says.
  [[ "$wheel" == *manylinux_2_28_x86_64.whl ]] || { echo "error: $wheel is not tagged manylinux_2_28" >&2; exit 1; }
  shown="$("$venv/bin/auditwheel" show "$wheel")"
  echo "$shown"
  # (auditwheel wraps its lines: joined first.)
  minor="$(tr -s '\n ' '  ' <<<"$shown" \
    | grep -o 'consistent with the following platform tag: "manylinux_2_[0-9]*_x86_64"' \
    | grep -o '_2_[0-9]*_' | cut -d_ -f3)"
  if [ -z "$minor" ] || [ "$minor" -gt 28 ]; then
    echo "error: auditwheel does not agree that $wheel runs on glibc 2.28 (see above)" >&2
    exit 1
  fi
  echo "wheels: $wheel ($(du -h "$wheel" | cut -f1))"
done
