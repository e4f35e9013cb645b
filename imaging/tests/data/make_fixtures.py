"""Writes the TIFF (and JPEG/PNG) fixtures of imaging/tests/tiff_codecs.rs, and what third-party decoders
read from them, with the writers scanners and imaging tools use (libtiff conventions, as tifffile and
imagecodecs write them).

Made with (pin these to regenerate byte for byte):
    python3 -m venv /tmp/venv-tiff
    /tmp/venv-tiff/bin/pip install tifffile==2026.3.3 imagecodecs==2026.3.6 numpy==2.4.6
    cd imaging/tests/data && /tmp/venv-tiff/bin/python make_fixtures.py
imagecodecs 2026.3.6 bundles libjpeg-turbo 3.1.3, zstd 1.4.5, libwebp 1.6.0 and zlib 1.2.13.

Every image is 96x80 (tiles of 32 or 16, so edge tiles and strips are partial). For each fixture,
`manifest.txt` names the reference: a PNG holding the 8-bit RGB rows the Rust reader must return, made
from what tifffile/imagecodecs decode (`tifffile.imread`) with the conversion rules of
docs/prediction.md (16-bit: v * 255 / 65535 rounded; int16: negatives 0, v * 255 / 32767 rounded; float:
clamped to [0, 1], * 255 rounded, NaN 0; gray repeated to RGB; alpha dropped). Lossless fixtures must
match exactly (tolerance 0); lossy ones (JPEG, lossy WebP) within the tolerance written there.
"""

import os
import struct
import zlib

import imagecodecs
import numpy as np
import tifffile

H, W = 80, 96
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "tiff")
REF = os.path.join(OUT, "ref")
BAD = os.path.join(OUT, "bad")
for d in (OUT, REF, BAD):
    os.makedirs(d, exist_ok=True)

manifest = []  # (fixture, reference, level, tolerance, what)


def picture(h, w):
    """Smooth gradients, a disc, a checkerboard corner and fine texture: content that JPEG and WebP
    must work on, with sharp edges where decoders differ most."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = x * 255 / (w - 1)
    g = y * 255 / (h - 1)
    b = 128 + 100 * np.sin(x / 7) * np.cos(y / 5)
    disc = (x - w * 0.6) ** 2 + (y - h * 0.45) ** 2 < (min(h, w) * 0.22) ** 2
    r[disc], g[disc], b[disc] = 230, 40, 60
    check = ((x // 4 + y // 4) % 2 == 1) & (x < w // 4) & (y < h // 4)
    r[check], g[check], b[check] = 20, 20, 200
    texture = ((x * 7919 + y * 104729) % 23) - 11
    rgb = np.stack([r + texture, g - texture, b + texture / 2], axis=-1)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


RGB8 = picture(H, W)
GRAY8 = (RGB8[..., 1] // 2 + RGB8[..., 0] // 2).astype(np.uint8)
yy, xx = np.mgrid[0:H, 0:W]
RGB16 = np.stack([xx * 683 + yy * 7, yy * 811 + xx * 3, (xx * yy * 37) % 65536], axis=-1).astype(np.uint16)
GRAY16 = RGB16[..., 0].copy()
ALPHA8 = ((xx * 3 + yy) % 256).astype(np.uint8)
GRAY_ALPHA8 = np.stack([GRAY8, ALPHA8], axis=-1)
GRAY_ALPHA16 = np.stack([GRAY16, RGB16[..., 2]], axis=-1)
INT16 = (GRAY8.astype(np.int32) * 137 - 2000).clip(-32768, 32767).astype(np.int16)
FLOAT32 = (GRAY8.astype(np.float32) / 255).astype(np.float32)
FLOAT32[0, :4] = [-0.25, 1.5, np.nan, 0.5]
FLOAT16 = FLOAT32.astype(np.float16)


# -- the conversion rules of docs/prediction.md, for references -------------------------------------


def to_rgb8(a):
    """What the Rust reader must return for decoded samples `a` (H, W) or (H, W, S)."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[..., None]
    if a.dtype == np.uint8:
        v = a
    elif a.dtype == np.uint16:
        v = (a.astype(np.uint64) * 255 + 32767) // 65535
    elif a.dtype == np.int16:
        v = (np.maximum(a.astype(np.int64), 0) * 255 + 16383) // 32767
    elif a.dtype.kind == "f":
        f = a.astype(np.float32) * np.float32(255)
        f = np.where(np.isnan(f), 0, f).astype(np.float64)
        v = np.floor(np.clip(f, 0, 255) + 0.5)
    else:
        raise ValueError(a.dtype)
    v = v.astype(np.uint8)
    if v.shape[2] in (1, 2):
        return np.repeat(v[..., :1], 3, axis=2)
    return v[..., :3]


refs = {}


def reference(name, pixels):
    """Writes `pixels` (8-bit RGB) as ref/<name>.png once; returns the file name."""
    file = f"{name}.png"
    if name in refs:
        assert np.array_equal(refs[name], pixels), name
    else:
        refs[name] = pixels
        with open(os.path.join(REF, file), "wb") as f:
            f.write(imagecodecs.png_encode(np.ascontiguousarray(pixels), level=9))
    return "ref/" + file


def add(fixture, ref_name, what, tolerance=0, level=0, source=None):
    """Records a fixture; a lossless one must decode (tifffile) to `source` exactly."""
    path = os.path.join(OUT, fixture)
    with tifffile.TiffFile(path) as tif:
        if level == 0:
            decoded = tif.pages[0].asarray()
        else:
            series = tif.series[0]
            decoded = series.levels[level].asarray()
    if source is not None:
        assert np.array_equal(decoded, source, equal_nan=decoded.dtype.kind == "f"), fixture
    if decoded.ndim == 3 and decoded.shape[0] in (2, 3, 4) and decoded.shape[2] not in (2, 3, 4):
        decoded = np.moveaxis(decoded, 0, -1)  # planar (separate) -> interleaved
    manifest.append((fixture, reference(ref_name, to_rgb8(decoded)), level, tolerance, what))
    return decoded


def out(name):
    return os.path.join(OUT, name)


# -- JPEG as libtiff writes it: one tables-only stream (JPEGTables) and abbreviated tile streams ------


def segments(jpeg):
    """(marker, segment bytes including the marker) up to and including SOS, then the rest."""
    i, parts = 2, []
    while True:
        assert jpeg[i] == 0xFF
        marker = jpeg[i + 1]
        length = struct.unpack(">H", jpeg[i + 2 : i + 4])[0]
        parts.append((marker, jpeg[i : i + 2 + length]))
        i += 2 + length
        if marker == 0xDA:
            return parts, jpeg[i:]


def split_tables(streams):
    """JPEGTables (SOI, DQT, DHT, EOI) shared by `streams`, and each stream without its tables and APPn
    segments, as libtiff writes them (the tables must be the same in every stream)."""
    tables, abbreviated = None, []
    for s in streams:
        parts, scan = segments(s)
        t = b"\xff\xd8" + b"".join(p for m, p in parts if m in (0xDB, 0xC4)) + b"\xff\xd9"
        assert tables is None or tables == t, "tables differ between tiles"
        tables = t
        keep = b"".join(p for m, p in parts if m not in (0xDB, 0xC4) and not 0xE0 <= m <= 0xEF)
        abbreviated.append(b"\xff\xd8" + keep + scan)
    return tables, abbreviated


def tiles_of(a, th, tw):
    """Tiles in row-major order, edge tiles zero-padded to the full tile size (as libtiff writes them)."""
    for y in range(0, a.shape[0], th):
        for x in range(0, a.shape[1], tw):
            t = np.zeros((th, tw) + a.shape[2:], a.dtype)
            part = a[y : y + th, x : x + tw]
            t[: part.shape[0], : part.shape[1]] = part
            yield np.ascontiguousarray(t)


def jpeg_tiled_with_tables(fixture, a, subsampling, photometric, tile=32, quality=85):
    rgb = a.ndim == 3
    if rgb:
        space = "RGB" if photometric == "rgb" else "YCbCr"
        enc = dict(colorspace="RGB", outcolorspace=space, subsampling=subsampling)
    else:
        enc = dict(colorspace="GRAY", outcolorspace="GRAY")
    streams = [imagecodecs.jpeg8_encode(t, level=quality, optimize=False, **enc) for t in tiles_of(a, tile, tile)]
    tables, abbreviated = split_tables(streams)
    kw = dict(subsampling=subsampling, compressionargs={"outcolorspace": photometric}) if rgb else {}
    tifffile.imwrite(
        out(fixture), iter(abbreviated), shape=a.shape, dtype=np.uint8, tile=(tile, tile), compression="jpeg",
        photometric="rgb" if rgb else "minisblack", jpegtables=tables, metadata=None, **kw,
    )


jpeg_tiled_with_tables("jpeg_ycbcr420_tables.tif", RGB8, (2, 2), "ycbcr")
add("jpeg_ycbcr420_tables.tif", "jpeg_ycbcr420_tables", "tiled JPEG, YCbCr 4:2:0, JPEGTables", 4)
jpeg_tiled_with_tables("jpeg_rgb_tables.tif", RGB8, (1, 1), "rgb")
add("jpeg_rgb_tables.tif", "jpeg_rgb_tables", "tiled JPEG, photometric RGB (no colour transform), JPEGTables", 4)
jpeg_tiled_with_tables("jpeg_gray_tables.tif", GRAY8, None, "minisblack", tile=16)
add("jpeg_gray_tables.tif", "jpeg_gray_tables", "tiled gray JPEG, JPEGTables", 4)
tifffile.imwrite(out("jpeg_ycbcr422.tif"), RGB8, tile=(32, 32), compression="jpeg", subsampling=(2, 1),
                 photometric="rgb", metadata=None)
add("jpeg_ycbcr422.tif", "jpeg_ycbcr422", "tiled JPEG, YCbCr 4:2:2, tables in each tile", 4)
tifffile.imwrite(out("jpeg_ycbcr444.tif"), RGB8, tile=(32, 32), compression="jpeg", subsampling=(1, 1),
                 photometric="rgb", metadata=None)
add("jpeg_ycbcr444.tif", "jpeg_ycbcr444", "tiled JPEG, YCbCr 4:4:4, tables in each tile", 4)
tifffile.imwrite(out("jpeg_ycbcr420_strips.tif"), RGB8, rowsperstrip=32, compression="jpeg", photometric="rgb",
                 metadata=None)
add("jpeg_ycbcr420_strips.tif", "jpeg_ycbcr420_strips", "striped JPEG, YCbCr 4:2:0, last strip 16 rows", 4)

# -- lossless codecs, predictors, layouts -------------------------------------------------------------

tifffile.imwrite(out("zstd_rgb.tif"), RGB8, tile=(32, 32), compression="zstd", photometric="rgb", metadata=None)
add("zstd_rgb.tif", "rgb8", "tiled ZSTD (50000), RGB", source=RGB8)
tifffile.imwrite(out("webp_lossless.tif"), RGB8, tile=(32, 32), compression="webp",
                 compressionargs={"lossless": True}, photometric="rgb", metadata=None)
add("webp_lossless.tif", "rgb8", "tiled WebP (50001), lossless", source=RGB8)
tifffile.imwrite(out("webp_lossy.tif"), RGB8, tile=(32, 32), compression="webp", compressionargs={"level": 80, "lossless": False},
                 photometric="rgb", metadata=None)
add("webp_lossy.tif", "webp_lossy", "tiled WebP (50001), lossy", 2)
RGBA8 = np.concatenate([RGB8, ALPHA8[..., None]], axis=-1)
tifffile.imwrite(out("webp_rgba_lossless.tif"), RGBA8, tile=(32, 32), compression="webp",
                 compressionargs={"lossless": True}, photometric="rgb", extrasamples=["unassalpha"], metadata=None)
add("webp_rgba_lossless.tif", "rgb8", "tiled WebP, lossless RGBA (alpha dropped)", source=RGBA8)
tifffile.imwrite(out("packbits_rgb.tif"), RGB8, rowsperstrip=7, compression="packbits", photometric="rgb",
                 metadata=None)
add("packbits_rgb.tif", "rgb8", "striped PackBits, 7-row strips", source=RGB8)
tifffile.imwrite(out("lzw_pred2_rgb8.tif"), RGB8, tile=(16, 32), compression="lzw", predictor="horizontal",
                 photometric="rgb", metadata=None)
add("lzw_pred2_rgb8.tif", "rgb8", "tiled LZW, horizontal predictor, 8-bit RGB", source=RGB8)
tifffile.imwrite(out("lzw_pred2_rgb16_be.tif"), RGB16, rowsperstrip=9, compression="lzw", predictor="horizontal",
                 photometric="rgb", byteorder=">", metadata=None)
add("lzw_pred2_rgb16_be.tif", "rgb16", "striped LZW, horizontal predictor, 16-bit RGB, big-endian",
    source=RGB16)
tifffile.imwrite(out("lzw_pred2_gray16.tif"), GRAY16, tile=(32, 32), compression="lzw", predictor="horizontal",
                 photometric="minisblack", metadata=None)
add("lzw_pred2_gray16.tif", "gray16", "tiled LZW, horizontal predictor, 16-bit gray", source=GRAY16)
tifffile.imwrite(out("deflate_pred3_f32.tif"), FLOAT32, tile=(16, 16), compression="zlib",
                 predictor="floatingpoint", photometric="minisblack", metadata=None)
add("deflate_pred3_f32.tif", "f32", "tiled Deflate (8), floating-point predictor, float32 gray", source=FLOAT32)
tifffile.imwrite(out("deflate32946_pred3_f32_be_big.tif"), FLOAT32, rowsperstrip=16, compression=32946,
                 predictor="floatingpoint", photometric="minisblack", byteorder=">", bigtiff=True, metadata=None)
add("deflate32946_pred3_f32_be_big.tif", "f32",
    "striped Deflate (32946), floating-point predictor, float32, big-endian BigTIFF", source=FLOAT32)
RGB_PLANES = np.ascontiguousarray(np.moveaxis(RGB8, -1, 0))
tifffile.imwrite(out("planar_rgb_tiled.tif"), RGB_PLANES, tile=(32, 32), compression="zlib", photometric="rgb",
                 planarconfig="separate", metadata=None)
add("planar_rgb_tiled.tif", "rgb8", "planar configuration 2 (one plane per channel), tiled Deflate",
    source=RGB_PLANES)
RGB16_PLANES = np.ascontiguousarray(np.moveaxis(RGB16, -1, 0))
tifffile.imwrite(out("planar_rgb16_strips.tif"), RGB16_PLANES, rowsperstrip=11, compression="lzw",
                 predictor="horizontal", photometric="rgb", planarconfig="separate", metadata=None)
add("planar_rgb16_strips.tif", "rgb16", "planar configuration 2, striped LZW + predictor, 16-bit",
    source=RGB16_PLANES)
tifffile.imwrite(out("gray_alpha8.tif"), GRAY_ALPHA8, rowsperstrip=16, photometric="minisblack",
                 extrasamples=["unassalpha"], metadata=None)
add("gray_alpha8.tif", "gray8", "gray+alpha, 8-bit (alpha dropped)", source=GRAY_ALPHA8)
tifffile.imwrite(out("gray_alpha16.tif"), GRAY_ALPHA16, tile=(16, 16), compression="zlib",
                 photometric="minisblack", extrasamples=["assocalpha"], metadata=None)
add("gray_alpha16.tif", "gray16", "gray+alpha, 16-bit, tiled Deflate (alpha dropped)", source=GRAY_ALPHA16)
tifffile.imwrite(out("int16.tif"), INT16, rowsperstrip=16, compression="zlib", predictor="horizontal",
                 photometric="minisblack", metadata=None)
add("int16.tif", "int16", "signed 16-bit gray, Deflate + horizontal predictor (negatives 0)", source=INT16)
tifffile.imwrite(out("float16.tif"), FLOAT16, rowsperstrip=16, photometric="minisblack", metadata=None)
add("float16.tif", "f16", "float16 gray, uncompressed", source=FLOAT16)

INDEX8 = ((xx // 12 + yy // 10 * 8) % 64).astype(np.uint8)
CMAP = np.stack([np.arange(256) * 257, (255 - np.arange(256)) * 257, (np.arange(256) * 97 % 256) * 257]).astype(np.uint16)
tifffile.imwrite(out("palette8.tif"), INDEX8, rowsperstrip=16, compression="lzw", photometric="palette",
                 colormap=CMAP, metadata=None)
add("palette8.tif", "palette8_raw", "8-bit palette (16-bit colour map), LZW", source=INDEX8)
manifest[-1] = manifest[-1][:1] + (reference("palette8", to_rgb8(np.moveaxis(CMAP[:, INDEX8], 0, -1))),) + manifest[-1][2:]
os.remove(os.path.join(REF, "palette8_raw.png"))
del refs["palette8_raw"]
tifffile.imwrite(out("miniswhite8.tif"), GRAY8, tile=(16, 16), compression="zlib", photometric="miniswhite",
                 metadata=None)
manifest.append(("miniswhite8.tif", reference("miniswhite8", to_rgb8(255 - GRAY8)), 0, 0,
                 "8-bit gray, 0 is white (inverted)"))
with tifffile.TiffFile(out("miniswhite8.tif")) as tif:
    assert tif.pages[0].photometric == 0 and np.array_equal(tif.pages[0].asarray(), GRAY8)

# -- pyramids, pages, metadata ------------------------------------------------------------------------


def halve(a):
    """2x2 mean, rounded (a level below `a`)."""
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    a = a[:h, :w].astype(np.float64)
    return np.round((a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) / 4).astype(np.uint8)


L1, L2 = halve(RGB8), halve(halve(RGB8))
with tifffile.TiffWriter(out("ome_pyramid.ome.tif"), ome=True) as tif:
    meta = {"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.75, "PhysicalSizeXUnit": "µm",
            "PhysicalSizeYUnit": "µm"}
    opts = dict(compression="zlib", photometric="rgb")
    tif.write(RGB8, subifds=2, tile=(32, 32), metadata=meta, **opts)
    tif.write(L1, subfiletype=1, tile=(16, 16), **opts)
    tif.write(L2, subfiletype=1, tile=(16, 16), **opts)
add("ome_pyramid.ome.tif", "rgb8", "OME-TIFF pyramid, level 0 (SubIFDs), PhysicalSize 0.5 x 0.75 um",
    source=RGB8)
add("ome_pyramid.ome.tif", "l1", "OME-TIFF pyramid, level 1 (SubIFD)", level=1, source=L1)
add("ome_pyramid.ome.tif", "l2", "OME-TIFF pyramid, level 2 (SubIFD)", level=2, source=L2)

with tifffile.TiffWriter(out("pages_pyramid.tif")) as tif:
    opts = dict(compression="zstd", photometric="rgb", metadata=None, resolutionunit="CENTIMETER")
    tif.write(RGB8, tile=(32, 32), resolution=(1e4 / 0.25, 1e4 / 0.25), **opts)
    tif.write(L1, tile=(16, 16), subfiletype=1, resolution=(1e4 / 0.5, 1e4 / 0.5), **opts)
    tif.write(L2, tile=(16, 16), subfiletype=1, resolution=(1e4 / 1.0, 1e4 / 1.0), **opts)
manifest.append(("pages_pyramid.tif", reference("rgb8", RGB8), 0, 0, "multi-page pyramid, page 0; 0.25 um/px in cm"))
manifest.append(("pages_pyramid.tif", reference("l1", L1), 1, 0, "multi-page pyramid, page 1 (NewSubFileType 1)"))
manifest.append(("pages_pyramid.tif", reference("l2", L2), 2, 0, "multi-page pyramid, page 2 (NewSubFileType 1)"))

APERIO = "Aperio Image Library v12.0.15 \r\n"
with tifffile.TiffWriter(out("aperio_like.svs")) as tif:
    jpeg_rgb = dict(compression="jpeg", photometric="rgb", subsampling=(1, 1),
                    compressionargs={"outcolorspace": "rgb"}, metadata=None)
    tif.write(RGB8, tile=(32, 32), description=APERIO + "96x80 [0,0 96x80] (32x32) JPEG/RGB Q=85|AppMag = 40|"
              "MPP = 0.2500|Filename = fixture", **jpeg_rgb)
    tif.write(L2, rowsperstrip=20, description=APERIO + "96x80 -> 24x20 - |AppMag = 40|MPP = 0.2500",
              photometric="rgb", metadata=None)  # the thumbnail: striped, not a level
    tif.write(L1, tile=(16, 16), description=APERIO + "96x80 [0,0 96x80] (32x32) -> 48x40 JPEG/RGB Q=85",
              **jpeg_rgb)
    tif.write(L2[:16, :20], rowsperstrip=16, subfiletype=1, description=APERIO + "label 20x16",
              compression="lzw", photometric="rgb", metadata=None)
    tif.write(L1[:24, :40], rowsperstrip=16, subfiletype=9, description=APERIO + "macro 40x24",
              compression="zlib", photometric="rgb", metadata=None)
with tifffile.TiffFile(out("aperio_like.svs")) as tif:
    assert tif.is_svs and len(tif.pages) == 5
    svs0, svs2 = tif.pages[0].asarray(), tif.pages[2].asarray()
manifest.append(("aperio_like.svs", reference("aperio_l0", to_rgb8(svs0)), 0, 4,
                 "SVS-like: level 0 (JPEG RGB), MPP = 0.25; thumbnail, label, macro pages"))
manifest.append(("aperio_like.svs", reference("aperio_l1", to_rgb8(svs2)), 1, 4, "SVS-like: level 1 = page 3"))

tifffile.imwrite(out("orientation6.tif"), RGB8, rowsperstrip=40, compression="zlib", photometric="rgb",
                 extratags=[(274, 3, 1, 6, True)], metadata=None)
add("orientation6.tif", "rgb8", "Orientation tag 6 (stored pixels returned as stored)", source=RGB8)

with tifffile.TiffWriter(out("stack_pages.tif")) as tif:
    tif.write(RGB8, rowsperstrip=16, compression="zlib", photometric="rgb", metadata=None)
    tif.write(picture(64, 64), rowsperstrip=16, photometric="rgb", metadata=None)
    tif.write(picture(30, 100), rowsperstrip=16, photometric="rgb", metadata=None)
add("stack_pages.tif", "rgb8", "multi-page stack of unrelated sizes (not a pyramid): page 0", source=RGB8)

# -- JPEG 2000 tiles (raw codestreams, OpenJPEG through imagecodecs) ---------------------------------------
# 34712 lossless (reversible 5/3 wavelet, RCT), 33005 lossy (9/7, ICT), gray 34712 lossy; 33003 (Aperio's
# YCbCr): the components are Y, Cb, Cr (JPEG's full-range transform of RGB8), coded without a component
# transform. tifffile returns 33003's components as they are; its reference is OpenSlide's YCbCr to RGB
# (make-tables.c) applied to them, as OpenSlide reads Aperio's files.
tifffile.imwrite(out("jpeg2000_34712_lossless.tif"), RGB8, tile=(32, 32), compression=34712,
                 compressionargs={"reversible": True}, photometric="rgb", metadata=None)
add("jpeg2000_34712_lossless.tif", "rgb8", "tiled JPEG 2000 (34712), lossless 5/3 + RCT", source=RGB8)
tifffile.imwrite(out("jpeg2000_33005_lossy.tif"), RGB8, tile=(32, 32), compression=33005,
                 compressionargs={"level": 40}, photometric="rgb", metadata=None)
add("jpeg2000_33005_lossy.tif", "jpeg2000_33005_lossy", "tiled JPEG 2000 (33005, Aperio RGB), lossy 9/7 + ICT", 2)
tifffile.imwrite(out("jpeg2000_gray_lossy.tif"), GRAY8, tile=(16, 16), compression=34712,
                 compressionargs={"level": 40}, photometric="minisblack", metadata=None)
add("jpeg2000_gray_lossy.tif", "jpeg2000_gray_lossy", "tiled gray JPEG 2000 (34712), lossy", 2)


def rgb_to_ycbcr(a):
    r, g, b = (a[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return np.clip(np.round(np.stack([y, cb, cr], axis=-1)), 0, 255).astype(np.uint8)


def openslide_ycbcr_to_rgb(a):
    """OpenSlide's make-tables.c: C's round() (half away from zero), green in 16-bit fixed point."""
    def rnd(x):
        return np.sign(x) * np.floor(np.abs(x) + 0.5)
    y, cb, cr = (a[..., i].astype(np.int64) for i in range(3))
    cb, cr = cb - 128, cr - 128
    r = y + rnd(1.402 * cr).astype(np.int64)
    g = y + ((rnd(65536 * (0.5 - 0.34414 * cb)).astype(np.int64) + rnd(65536 * -0.71414 * cr).astype(np.int64)) >> 16)
    b = y + rnd(1.772 * cb).astype(np.int64)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


YCBCR8 = rgb_to_ycbcr(RGB8)
tifffile.imwrite(out("jpeg2000_33003_ycbcr.tif"), YCBCR8, tile=(32, 32), compression=33003,
                 compressionargs={"reversible": True, "mct": False}, photometric="rgb", metadata=None)
with tifffile.TiffFile(out("jpeg2000_33003_ycbcr.tif")) as tif:
    components = tif.pages[0].asarray()
    assert np.array_equal(components, YCBCR8)
manifest.append(("jpeg2000_33003_ycbcr.tif", reference("jpeg2000_33003_ycbcr", openslide_ycbcr_to_rgb(components)), 0, 0,
                 "tiled JPEG 2000 (33003, Aperio YCbCr), lossless, no component transform: OpenSlide's YCbCr to RGB"))

# Bio-Formats' planar JPEG (`bfconvert -compression JPEG`): PlanarConfiguration 2, photometric YCbCr, no
# YCbCrSubsampling tag, each tile a one-component JPEG of one plane; Bio-Formats reads the planes as R, G, B.
tifffile.imwrite(out("planar_jpeg_bioformats.tif"), RGB_PLANES, tile=(32, 32), compression="jpeg",
                 compressionargs={"level": 90}, photometric="rgb", planarconfig="separate", metadata=None)
with tifffile.TiffFile(out("planar_jpeg_bioformats.tif"), mode="r+b") as tif:
    assert "YCbCrSubSampling" not in tif.pages[0].tags
    planes = tif.pages[0].asarray()
    tif.pages[0].tags["PhotometricInterpretation"].overwrite(6)
manifest.append(("planar_jpeg_bioformats.tif",
                 reference("planar_jpeg_bioformats", np.ascontiguousarray(np.moveaxis(planes, 0, -1))), 0, 4,
                 "planar JPEG tagged YCbCr, no subsampling tag, one-component tiles (Bio-Formats' bfconvert): RGB planes"))

# Refused with a reason: old-style JPEG (compression 6, patched in), 32-bit integers.
tifffile.imwrite(out("refused_ojpeg.tif"), RGB8[:32, :32], rowsperstrip=32, photometric="rgb", metadata=None)
with tifffile.TiffFile(out("refused_ojpeg.tif"), mode="r+b") as tif:
    tif.pages[0].tags["Compression"].overwrite(6)
tifffile.imwrite(out("refused_uint32.tif"), GRAY16[:16, :16].astype(np.uint32), photometric="minisblack",
                 metadata=None)

# -- orientation in JPEG (APP1 EXIF) and PNG (eXIf), big-endian EXIF --------------------------------------
exif = b"MM\x00\x2a\x00\x00\x00\x08" + struct.pack(">HHHIHHI", 1, 274, 3, 1, 8, 0, 0)
jpeg = imagecodecs.jpeg8_encode(RGB8, level=90)
app1 = b"Exif\x00\x00" + exif
with open(out("orientation8.jpg"), "wb") as f:
    f.write(jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:])
png = imagecodecs.png_encode(RGB8)
chunk = b"eXIf" + exif.replace(struct.pack(">HHI", 8, 0, 0), struct.pack(">HHI", 3, 0, 0))
with open(out("orientation3.png"), "wb") as f:
    f.write(png[:33] + struct.pack(">I", len(chunk) - 4) + chunk + struct.pack(">I", zlib.crc32(chunk)) + png[33:])

# -- truncated and corrupt files of each codec --------------------------------------------------------
for name in ["jpeg_ycbcr420_tables.tif", "zstd_rgb.tif", "webp_lossy.tif", "webp_lossless.tif",
             "packbits_rgb.tif", "lzw_pred2_rgb8.tif", "deflate_pred3_f32.tif", "jpeg2000_33005_lossy.tif"]:
    data = open(out(name), "rb").read()
    with tifffile.TiffFile(out(name)) as tif:
        offset, count = tif.pages[0].dataoffsets[0], tif.pages[0].databytecounts[0]
    stem = name[: -len(".tif")]
    with open(os.path.join(BAD, f"truncated_{stem}.tif"), "wb") as f:
        f.write(data[: int(len(data) * 0.6)])
    corrupt = bytearray(data)
    for i in range(offset + count // 4, offset + count // 4 + min(48, count // 2)):
        corrupt[i] ^= 0x5A
    with open(os.path.join(BAD, f"corrupt_{stem}.tif"), "wb") as f:
        f.write(bytes(corrupt))

with open(os.path.join(OUT, "manifest.txt"), "w") as f:
    f.write("# fixture\treference\tlevel\tmax abs difference allowed\twhat it tests\n")
    for fixture, ref, level, tolerance, what in manifest:
        f.write(f"{fixture}\t{ref}\t{level}\t{tolerance}\t{what}\n")

total = sum(os.path.getsize(os.path.join(d, n)) for d in (OUT, REF, BAD) for n in os.listdir(d)
            if os.path.isfile(os.path.join(d, n)))
print(f"{len(manifest)} fixtures, {len(refs)} references, {total} bytes in all")
