#!/usr/bin/env bash
# Instructions per op of a training step (1 x 256^2), counted by valgrind's callgrind, which a loaded
# machine does not distort. `train_step --profile` runs every op once inside its own never-inlined function
# (op_marker_NN) on a single rayon worker; callgrind's inclusive count of each marker is that op. Counts are
# the work of one thread: two threads split it. (Add --cache-sim=yes --D1=32768,8,64 --LL=524288,8,64 to the
# valgrind line for L1d / L2 misses of one core of this machine; it runs several times slower.)
#
# Usage: scripts/research/profile_ops.sh [--im2col]   (--im2col: the im2col + gemm kernels instead of the
# direct ones). Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench -p trainer --bench train_step --no-run -q 2>/dev/null
bin=$(ls -t target/release/deps/train_step-* | grep -v '\.d$' | head -1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
valgrind --tool=callgrind --callgrind-out-file="$tmp/out" "$bin" --profile "$@" >"$tmp/names" 2>"$tmp/err"
callgrind_annotate --inclusive=yes --threshold=100 "$tmp/out" >"$tmp/annotated"
echo "| op (1 x 256^2) | M instructions |"
echo "|---|---|"
while read -r marker name; do
    grep -E "train_step::${marker}( |$|\[)" "$tmp/annotated" | head -1 | tr -d ',' |
        awk -v op="$name" '{ printf "| %s | %.1f |\n", op, $1 / 1e6 }'
done <"$tmp/names"
