"""Writes the OME-Zarr fixtures of imaging/tests/zarr.rs and a PNG of each one's level 0, decoded and
converted to 8-bit RGB by the rule every reader follows (docs/prediction.md).

Made with (python3 -m venv /tmp/venv-zarr && /tmp/venv-zarr/bin/pip install "zarr>=3" ome-zarr numpy pillow):
    zarr==3.1.6 ome-zarr==0.18.0 numpy==2.4.6 numcodecs==0.16.6 pillow==13.0.0
Run from this folder: /tmp/venv-zarr/bin/python make_fixtures.py
"""

import json
import os
import shutil

import numpy as np
import zarr
from numcodecs import Blosc, GZip
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
RNG = np.random.default_rng(20)
W, H = 97, 75  # odd sizes: the last row and column of chunks are partial


def u16_to_u8(v):
    return ((v.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def f32_to_u8(v):
    x = (v.astype(np.float32) * np.float32(255.0)).astype(np.float64)
    out = np.floor(x + 0.5)  # Rust's f32::round: half away from zero (x > 0 here)
    out = np.where(v >= 1.0, 255, np.where(v > 0.0, out, 0))
    return np.nan_to_num(out, nan=0).astype(np.uint8)


def rgb_image(dtype):
    """A gradient with noise, (3, H, W)."""
    y, x = np.mgrid[0:H, 0:W]
    base = np.stack([x / (W - 1), y / (H - 1), ((x + y) % 17) / 16.0])
    noisy = np.clip(base + RNG.normal(0, 0.05, base.shape), 0, 1)
    if dtype == np.uint8:
        return (noisy * 255).round().astype(np.uint8)
    if dtype == np.uint16:
        return (noisy * 65535).round().astype(np.uint16)
    raise ValueError(dtype)


def downsample(a):
    """Every other pixel of the last two axes (y, x)."""
    return a[..., ::2, ::2].copy()


def save_reference(name, rgb_u8):
    """rgb_u8: (H, W, 3) or (H, W) uint8."""
    if rgb_u8.ndim == 2:
        rgb_u8 = np.repeat(rgb_u8[..., None], 3, axis=2)
    Image.fromarray(np.ascontiguousarray(rgb_u8), "RGB").save(os.path.join(HERE, name + ".png"))


def axes_json(names, unit):
    kinds = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
    axes = []
    for n in names:
        axis = {"name": n, "type": kinds[n]}
        if unit and n in "yx":
            axis["unit"] = unit
        axes.append(axis)
    return axes


def multiscales(names, unit, levels, pixel, version):
    datasets = []
    for i in range(levels):
        scale = [1.0 if n not in "yx" else pixel * 2**i for n in names]
        datasets.append({"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": scale}]})
    ms = {"axes": axes_json(names, unit), "datasets": datasets, "name": "fixture"}
    if version == "0.4":
        ms["version"] = "0.4"
    return [ms]


def write(path, pyramid, names, unit, pixel, zarr_format, chunks, **array_options):
    """Writes the levels of `pyramid` (arrays in axis order `names`) as an OME-Zarr image."""
    full = os.path.join(HERE, path)
    shutil.rmtree(full, ignore_errors=True)
    root = zarr.open_group(full, mode="w", zarr_format=zarr_format)
    version = "0.4" if zarr_format == 2 else "0.5"
    ms = multiscales(names, unit, len(pyramid), pixel, version)
    if zarr_format == 2:
        root.attrs["multiscales"] = ms
    else:
        root.attrs["ome"] = {"version": "0.5", "multiscales": ms}
    for i, level in enumerate(pyramid):
        extra = {} if zarr_format == 2 else {"dimension_names": list(names)}
        arr = root.create_array(str(i), shape=level.shape, dtype=level.dtype, chunks=chunks, **array_options, **extra)
        arr[...] = level
    return full


def main():
    # 1. NGFF 0.4 (Zarr v2), c,y,x uint8 RGB, blosc (zstd), 3 levels, chunks 1x32x32, 0.5 um per pixel.
    rgb = rgb_image(np.uint8)
    pyramid = [rgb, downsample(rgb), downsample(downsample(rgb))]
    v04 = write("v04_cyx_u8.ome.zarr", pyramid, "cyx", "micrometer", 0.5, 2, (1, 32, 32),
                compressors=Blosc(cname="zstd", clevel=5, shuffle=Blosc.SHUFFLE))
    save_reference("v04_cyx_u8", rgb.transpose(1, 2, 0))

    # 2. NGFF 0.5 (Zarr v3), c,y,x uint16 RGB, sharding (shards 3x64x64 of chunks 3x32x32), zstd, 2 levels,
    #    250 nanometer per pixel.
    rgb16 = rgb_image(np.uint16)
    write("v05_cyx_u16_sharded.ome.zarr", [rgb16, downsample(rgb16)], "cyx", "nanometer", 250.0, 3,
          (3, 32, 32), shards=(3, 64, 64), compressors=zarr.codecs.ZstdCodec(level=3))
    save_reference("v05_cyx_u16_sharded", u16_to_u8(rgb16).transpose(1, 2, 0))

    # 3. NGFF 0.4 (Zarr v2), y,x gray float32 in [-0.2, 1.2] with a NaN, gzip, 2 levels, 0.25 um (in mm).
    gray = (RNG.random((H, W)) * 1.4 - 0.2).astype(np.float32)
    gray[3, 5] = np.nan
    write("v04_yx_f32_gray.ome.zarr", [gray, downsample(gray)], "yx", "millimeter", 0.00025, 2, (32, 32),
          compressors=GZip(level=5))
    save_reference("v04_yx_f32_gray", f32_to_u8(gray))

    # 4. NGFF 0.5 (Zarr v3), t,c,z,y,x uint8 RGBA (alpha dropped), sizes 1 for t and z, plain (zstd), no unit.
    rgba = np.concatenate([rgb_image(np.uint8), np.full((1, H, W), 7, np.uint8)])
    tczyx = rgba[None, :, None]
    write("v05_tczyx_u8_rgba.ome.zarr", [tczyx], "tczyx", None, 1.0, 3, (1, 4, 1, 32, 32))
    save_reference("v05_tczyx_u8_rgba", rgba[:3].transpose(1, 2, 0))

    # 5. y,x,c int16 RGB, Zarr v2 without compression (the metadata is written directly: NGFF wants the
    #    channel axis before the spatial ones, but readers meet y,x,c too).
    yxc = (rgb_image(np.uint16).astype(np.int32) - 16384).clip(-32768, 32767).astype(np.int16).transpose(1, 2, 0)
    write("v04_yxc_i16.ome.zarr", [yxc.copy()], "yxc", "micrometer", 0.25, 2, (32, 32, 3), compressors=None)
    i16 = ((np.maximum(yxc.astype(np.int32), 0) * 255 + 16383) // 32767).astype(np.uint8)
    save_reference("v04_yxc_i16", i16)

    # 6. Sparse stores, as zarr-python writes them with write_empty_chunks=False: a chunk (or a whole shard)
    #    holding only the fill value is not stored; the Zarr specification reads an absent chunk as the fill
    #    value. v2: chunks 1x32x32, fill 200; v3: shards 3x64x64 of chunks 3x32x32, fill 200.
    sparse = rgb_image(np.uint8)
    sparse[:, 32:64, :] = 200  # chunk row 1, every column and channel
    sparse[:, :64, 64:] = 200  # the last column of chunk rows 0 and 1: a whole shard in v3
    for zarr_format, name, chunks, extra, absent in [
        (2, "sparse_v04_cyx_u8", (1, 32, 32), {}, ["0/0/1.1.0", "0/0/0.0.2", "0/0/2.1.1"]),
        (3, "sparse_v05_cyx_u8_sharded", (3, 32, 32), {"shards": (3, 64, 64)}, ["0/c/0/0/1"]),
    ]:
        path = write(name + ".ome.zarr", [sparse], "cyx", "micrometer", 0.5, zarr_format, chunks,
                     fill_value=200, config={"write_empty_chunks": False}, **extra)
        for key in absent:
            assert not os.path.exists(os.path.join(path, key)), key
        save_reference(name, sparse.transpose(1, 2, 0))

    # Broken copies of 1: one chunk overwritten with garbage, one chunk removed.
    for kind in ["corrupt", "missing"]:
        broken = os.path.join(HERE, f"{kind}.ome.zarr")
        shutil.rmtree(broken, ignore_errors=True)
        shutil.copytree(v04, broken)
        chunk = os.path.join(broken, "0", "1.1.2")  # level 0, channel 1, chunk row 1, column 2
        assert os.path.exists(chunk), chunk
        if kind == "corrupt":
            with open(chunk, "wb") as f:
                f.write(b"this is not a blosc chunk" * 4)
        else:
            os.remove(chunk)

    # Not an image: a Zarr group without multiscales.
    plain = os.path.join(HERE, "plain_group.zarr")
    shutil.rmtree(plain, ignore_errors=True)
    zarr.open_group(plain, mode="w", zarr_format=2).attrs["something"] = 1

    # The metadata is written here directly (so the levels are exactly these arrays); ome-zarr's reader
    # checks it. It refuses y,x,c (NGFF puts the channel axis before the spatial ones), which is kept anyway.
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    for name in ["v04_cyx_u8", "v05_cyx_u16_sharded", "v04_yx_f32_gray", "v05_tczyx_u8_rgba"]:
        node = next(iter(Reader(parse_url(os.path.join(HERE, name + ".ome.zarr")))()))
        print(name, [tuple(level.shape) for level in node.data])

    print(json.dumps({"zarr": zarr.__version__, "numpy": np.__version__}))


if __name__ == "__main__":
    main()
