#!/usr/bin/env bash
# Runs a just recipe (`./just.sh demo`, `./just.sh test`), installing just first when it is missing:
# a fresh Debian machine with Rust and Python 3 needs nothing else.
set -euo pipefail
cd "$(dirname "$0")"
export PATH="$HOME/.local/bin:$HOME/.cargo/bin:$PATH"
if ! command -v just >/dev/null 2>&1; then
  echo "just.sh: installing just (the command runner)" >&2
  # A user install of the prebuilt binary; Debian's own Python marks itself externally managed (PEP 668),
  # which a --user install of this standalone tool can safely override. cargo builds it as a last resort.
  python3 -m pip install --quiet --user rust-just 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages rust-just 2>/dev/null \
    || cargo install just --locked
fi
exec just "$@"
