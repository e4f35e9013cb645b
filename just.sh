#!/usr/bin/env bash
# Runs a just recipe (`./just.sh demo`, `./just.sh test`), installing just first when it is missing:
# a fresh Debian machine with Rust and Python 3 needs nothing else.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$HOME/.local/bin:$HOME/.cargo/bin:$PATH"
if ! command -v just >/dev/null 2>&1; then
  echo "just.sh: installing just (the command runner)" >&2
  python3 -m pip install --quiet --user rust-just 2>/dev/null \
    || python3 -m pip install --quiet rust-just 2>/dev/null \
    || cargo install just --locked
fi
exec just "$@"
