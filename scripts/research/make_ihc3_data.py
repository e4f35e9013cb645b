#!/usr/bin/env python3
"""Builds the three-class masks of data/ihc/ beside the two-class one: scikit-image's immunohistochemistry
sample (data/ihc/image.png, see make_ihc_data.py) split by colour deconvolution (skimage.color.rgb2hed):

- class 1, haematoxylin nuclei: the haematoxylin channel smoothed (Gaussian sigma 1), above Otsu's threshold,
  objects and holes under 16 px removed;
- class 2, DAB-stained tissue: the two-class rule of make_ihc_data.py (DAB channel, sigma 2, Otsu, objects and
  holes under 64 px removed), where not nuclei (a counterstained nucleus inside stained tissue stays a
  nucleus);
- class 0, background: everything else.

Writes mask3.png (8-bit class indices 0, 1, 2: `--label-format index`) and mask3_color.png (the same classes
as colours #000000, #0000ff, #964b00: `--label-format color --class-colors '#000000,#0000ff,#964b00'`). A
reference made by an algorithm, not by hand.

Needs `pip install scikit-image==0.26.0`. Usage: python3 scripts/research/make_ihc3_data.py data/ihc
"""
import sys
from pathlib import Path

import numpy as np
from skimage import color, data, filters, io, morphology

COLORS = np.array([[0, 0, 0], [0, 0, 255], [150, 75, 0]], dtype=np.uint8)


def clean(mask, size):
    mask = morphology.remove_small_objects(mask, max_size=size)
    return morphology.remove_small_holes(mask, max_size=size)


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "data/ihc")
    out.mkdir(parents=True, exist_ok=True)
    rgb = data.immunohistochemistry()
    hed = color.rgb2hed(rgb)
    hema = filters.gaussian(hed[..., 0], sigma=1)
    nuclei = clean(hema > filters.threshold_otsu(hema), 16)
    dab = filters.gaussian(hed[..., 2], sigma=2)
    tissue = clean(dab > filters.threshold_otsu(dab), 64)
    classes = np.zeros(rgb.shape[:2], dtype=np.uint8)
    classes[tissue] = 2
    classes[nuclei] = 1
    io.imsave(out / "mask3.png", classes, check_contrast=False)
    io.imsave(out / "mask3_color.png", COLORS[classes], check_contrast=False)
    shares = ", ".join(f"class {c} {np.mean(classes == c):.3f}" for c in range(3))
    print(f"{out}: {rgb.shape[1]}x{rgb.shape[0]}, {shares}")


if __name__ == "__main__":
    main()
