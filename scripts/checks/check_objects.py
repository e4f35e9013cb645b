#!/usr/bin/env python3
"""The runner's QuPath objects against shapely and the probabilities it wrote.

    check_objects.py OBJECTS.geojson[.gz] PROBABILITIES.npy OBJECTS.csv [--downsample D]

For every feature: `Area px^2` and `Perimeter px` equal shapely's `area` and `length` of the polygon (holes
subtracted and included), `Probability mean` and `Probability max` equal the mean and max of the .npy over the
pixels whose centres lie inside the polygon (the level predicted, of downsample D, default 1), and the CSV has
one row per feature with the same figures. Needs shapely 2 and numpy. Exits non-zero on the first mismatch.
"""

import argparse
import csv
import gzip
import json
import sys

import numpy as np
import shapely
from shapely.geometry import shape


def load(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def close(a, b, tol=1e-9):
    return abs(a - b) <= tol * max(abs(a), abs(b), 1.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("geojson")
    parser.add_argument("npy")
    parser.add_argument("csv")
    parser.add_argument("--downsample", type=float, default=1.0)
    args = parser.parse_args()

    features = load(args.geojson)["features"]
    probabilities = np.load(args.npy)
    with open(args.csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if len(rows) != len(features):
        sys.exit(f"{args.csv}: {len(rows)} rows for {len(features)} features")
    h, w = probabilities.shape
    d = args.downsample
    for feature, row in zip(features, rows):
        props = feature["properties"]
        m = props["measurements"]
        name = props["name"]
        polygon = shape(feature["geometry"])
        if not polygon.is_valid:
            sys.exit(f"feature {name}: invalid polygon ({shapely.validation.explain_validity(polygon)})")
        checks = [
            ("Area px^2", m["Area px^2"], polygon.area),
            ("Perimeter px", m["Perimeter px"], polygon.length),
            ("area_px", float(row["area_px"]), polygon.area),
            ("perimeter_px", float(row["perimeter_px"]), polygon.length),
            ("centroid_x", float(row["centroid_x"]), polygon.centroid.x),
            ("centroid_y", float(row["centroid_y"]), polygon.centroid.y),
        ]
        # The pixels of the level whose centres are inside (the boundary passes between centres).
        x0, y0, x1, y1 = polygon.bounds
        cols = np.arange(max(int(x0 / d) - 1, 0), min(int(x1 / d) + 2, w))
        lines = np.arange(max(int(y0 / d) - 1, 0), min(int(y1 / d) + 2, h))
        gx, gy = np.meshgrid(cols, lines)
        inside = shapely.contains_xy(polygon, (gx + 0.5) * d, (gy + 0.5) * d)
        values = probabilities[gy[inside], gx[inside]].astype(np.float64)
        if values.size == 0:
            sys.exit(f"feature {name}: no pixel centre inside")
        checks += [
            ("Probability mean", m["Probability mean"], values.mean()),
            ("Probability max", m["Probability max"], values.max()),
            ("probability_mean", float(row["probability_mean"]), values.mean()),
        ]
        for label, got, want in checks:
            if not close(got, want):
                sys.exit(f"feature {name}: {label} {got} but shapely/numpy give {want}")
        if row["id"] != name:
            sys.exit(f"row {row['id']} for feature {name}: the CSV is not in the features' order")
    print(f"{len(features)} objects: area, perimeter, centroid (shapely), mean and max probability (numpy) agree")


if __name__ == "__main__":
    main()
