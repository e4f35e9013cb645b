#!/usr/bin/env python3
"""Comparisons for scripts/gpu/gpu_check.sh, standard library only (the GPU node may have no NumPy).

  gpu_compare.py losses A/loss.csv B/loss.csv TOLERANCE   loss curves of two runs of the same seed
  gpu_compare.py npy A.npy B.npy TOLERANCE                two float32 (H,W) probability maps

Prints one line with the figures; exits 1 when the difference is over TOLERANCE.
"""

import array
import ast
import struct
import sys


def read_losses(path):
    with open(path) as f:
        rows = [line.strip().split(",") for line in f.readlines()[1:] if line.strip()]
    return [float(loss) for _, loss in rows]


def read_npy(path):
    """(shape, values) of a little-endian float32 C-order .npy file, as the runner writes them."""
    with open(path, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            sys.exit(f"{path}: not a .npy file")
        major = f.read(2)[0]
        (length,) = struct.unpack("<H" if major == 1 else "<I", f.read(2 if major == 1 else 4))
        header = ast.literal_eval(f.read(length).decode("latin1"))
        if header["descr"] != "<f4" or header["fortran_order"]:
            sys.exit(f"{path}: expected little-endian float32 in C order, got {header}")
        values = array.array("f")
        values.frombytes(f.read())
    return header["shape"], values


def compare_losses(a_path, b_path, tolerance):
    a, b = read_losses(a_path), read_losses(b_path)
    if len(a) != len(b) or not a:
        print(f"loss curves have {len(a)} and {len(b)} rows")
        return False
    diffs = [abs(x - y) for x, y in zip(a, b)]
    worst = max(range(len(diffs)), key=diffs.__getitem__)
    tail = max(len(a) // 10, 1)
    mean_a, mean_b = sum(a[-tail:]) / tail, sum(b[-tail:]) / tail
    print(
        f"loss curves over {len(a)} iterations: max |difference| {diffs[worst]:.2e} (iteration {worst + 1}), "
        f"mean {sum(diffs) / len(diffs):.2e}; mean of the last {tail}: {mean_a:.4f} vs {mean_b:.4f} "
        f"(tolerance {tolerance:g})"
    )
    return diffs[worst] <= tolerance


def compare_npy(a_path, b_path, tolerance):
    (shape_a, a), (shape_b, b) = read_npy(a_path), read_npy(b_path)
    if shape_a != shape_b:
        print(f"probability maps have shapes {shape_a} and {shape_b}")
        return False
    worst = max(abs(x - y) for x, y in zip(a, b))
    print(f"probabilities {shape_a[0]}x{shape_a[1]}: max |difference| {worst:.2e} (tolerance {tolerance:g})")
    return worst <= tolerance


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("losses", "npy"):
        sys.exit(__doc__)
    kind, a, b, tolerance = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    try:
        ok = (compare_losses if kind == "losses" else compare_npy)(a, b, tolerance)
    except (OSError, ValueError) as e:
        sys.exit(f"cannot compare {a} and {b}: {e}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
