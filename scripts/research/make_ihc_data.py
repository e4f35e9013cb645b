#!/usr/bin/env python3
"""Builds data/ihc/ (image.png, mask.png): scikit-image's immunohistochemistry sample (colonic glands, FHL2
protein revealed with DAB, hematoxylin counterstain; "no known copyright restrictions", shipped in the PyPI
package scikit-image, BSD-3-Clause) and a mask of the DAB-positive (brown) tissue made by colour
deconvolution: the DAB channel of skimage.color.rgb2hed, smoothed (Gaussian sigma 2), Otsu threshold, objects
and holes under 64 px removed. A reference segmentation made by an algorithm, not by hand.

Needs `pip install scikit-image==0.26.0`. Usage: python3 scripts/research/make_ihc_data.py data/ihc
"""
import sys
from pathlib import Path

import numpy as np
from skimage import color, data, filters, io, morphology


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "data/ihc")
    out.mkdir(parents=True, exist_ok=True)
    rgb = data.immunohistochemistry()
    dab = filters.gaussian(color.rgb2hed(rgb)[..., 2], sigma=2)
    fg = dab > filters.threshold_otsu(dab)
    fg = morphology.remove_small_objects(fg, max_size=64)
    fg = morphology.remove_small_holes(fg, max_size=64)
    io.imsave(out / "image.png", rgb, check_contrast=False)
    io.imsave(out / "mask.png", (fg * 255).astype(np.uint8), check_contrast=False)
    print(f"{out}: {rgb.shape[1]}x{rgb.shape[0]}, foreground {fg.mean():.3f}")


if __name__ == "__main__":
    main()
