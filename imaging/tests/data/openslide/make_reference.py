"""Writes the expected pixels of the OpenSlide fixtures, as openslide-python reads them, for
imaging/tests/openslide.rs. Run once (the .png files are committed):

    python3 -m venv /tmp/venv-os
    /tmp/venv-os/bin/pip install openslide-python==1.4.2 openslide-bin==4.0.1.2 numpy pillow
    /tmp/venv-os/bin/python imaging/tests/data/openslide/make_reference.py

Each reference is level 0 read whole with read_region, un-premultiplied by openslide-python, with
transparent pixels (alpha 0) replaced by the slide's background colour (white by default), as RGB.
"""

from pathlib import Path

import numpy as np
import openslide
from PIL import Image

HERE = Path(__file__).resolve().parent


def reference(slide_name: str, png_name: str) -> None:
    slide = openslide.OpenSlide(str(HERE / slide_name))
    width, height = slide.level_dimensions[0]
    rgba = np.asarray(slide.read_region((0, 0), 0, (width, height)))
    background = slide.properties.get(openslide.PROPERTY_NAME_BACKGROUND_COLOR) or "FFFFFF"
    colour = [int(background[i : i + 2], 16) for i in (0, 2, 4)]
    rgb = rgba[..., :3].copy()
    rgb[rgba[..., 3] == 0] = colour
    Image.fromarray(rgb, "RGB").save(HERE / png_name)
    print(f"{png_name}: {width}x{height} from {slide_name} ({slide.properties.get('openslide.vendor')})")


reference("small.svs", "small_svs_level0.png")
reference("boxes_0.dcm", "boxes_dcm_level0.png")
