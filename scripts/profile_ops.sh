#!/usr/bin/env bash
# Instructions and simulated cache misses per op of a training step (1 x 256^2), counted by valgrind's
# callgrind, which a loaded machine does not distort: each op runs once + 1 and once + 3 times
# (`cargo bench -p trainer --bench train_step -- --profile OP --steps N`) and the difference / 2 is one
# call, without the setup. The cache model is one core of this machine: L1d 32 KiB, L2 512 KiB as the
# simulated last level (callgrind models two levels), so "L2 misses" approximate traffic beyond L2.
#
# Usage: [PROFILE_ARGS=--im2col] scripts/profile_ops.sh [OP...]   (default: every op; prints a Markdown
# table; PROFILE_ARGS=--im2col counts the im2col + gemm kernels instead of the direct ones)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo bench -p trainer --bench train_step --no-run -q 2>/dev/null
bin=$(ls -t target/release/deps/train_step-* | grep -v '\.d$' | head -1)
ops=("$@")
if [ ${#ops[@]} -eq 0 ]; then
    ops=(normalize conv1.forward conv1.grad_w conv2.forward maxpool.forward maxpool.backward conv2.grad_w
        conv2.grad_x conv3.forward conv3.grad_w conv3.grad_x upsample.forward upsample.backward conv4.forward
        conv4.grad_w conv4.grad_x loss.forward loss.forward+backward adamw step)
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Prints "Ir D1mr+D1mw LLmr+LLmw" of one run.
count() {
    RAYON_NUM_THREADS=1 valgrind --tool=callgrind --cache-sim=yes --D1=32768,8,64 --LL=524288,8,64 \
        --callgrind-out-file="$tmp/out" "$bin" --profile "$1" --steps "$2" ${PROFILE_ARGS:-} >/dev/null 2>"$tmp/err"
    awk '/^summary:/ {print $2, $6 + $7, $9 + $10}' "$tmp/out"
}
echo "| op (1 x 256^2) | M instructions | M L1d misses | M L2 misses |"
echo "|---|---|---|---|"
for op in "${ops[@]}"; do
    read -r i1 d1 l1 < <(count "$op" 1)
    read -r i3 d3 l3 < <(count "$op" 3)
    awk -v op="$op" -v i1="$i1" -v i3="$i3" -v d1="$d1" -v d3="$d3" -v l1="$l1" -v l3="$l3" \
        'BEGIN { printf "| %s | %.1f | %.2f | %.2f |\n", op, (i3-i1)/2e6, (d3-d1)/2e6, (l3-l1)/2e6 }'
done
