#!/usr/bin/env python3
"""Checks an OME-Zarr store of the segmenter with readers that are not ours (zarr-python, ome-zarr-models,
ome-zarr-py).

Usage:
  check_ome_zarr.py STORE [REFERENCE]     an output of `runner predict` (NGFF 0.4 on Zarr v2, or 0.5 on v3)
  check_ome_zarr.py IMAGE --labels NAME   an OME-Zarr image that `runner predict --labels NAME` wrote into

An output STORE:
- ome-zarr-models validates it as an NGFF image of its version (0.4: Zarr v2, `.zattrs`; 0.5: Zarr v3,
  `zarr.json`, `attributes.ome.version` "0.5", arrays with `dimension_names` equal to the axes);
- axes y,x (gray) or c,y,x (RGB) with types space/channel, datasets "0", "1", ... each with a `scale`
  transform that doubles per level; each level ceil(w/2) x ceil(h/2) of the one above, down to the first
  level whose longer side is at most 1024; chunks 512 x 512 (channel chunk 3); dtype uint8 or float32;
  fill value 0;
- every level that zarr-python reads equals the level above reduced in numpy by the writer's rules (a
  uint8 gray image is a mask: a 2x2 block is 255 when at least half of its pixels are >= 128; uint8 RGB:
  the mean rounded half up; float32: the mean);
- `REFERENCE` (.png read with Pillow, or .npy): level 0 equals it exactly (RGB compared as c,y,x).

An IMAGE with --labels NAME:
- ome-zarr-models validates the image with its labels (the labels group, the label image's metadata,
  integer samples, as many levels as the image);
- the labels group lists NAME; the label's `image-label` has colours for 0 and 1 and source "../../";
- ome-zarr-py's Reader, started at the image, finds the label node labels/NAME;
- the label has as many levels as the image (the spec's MUST);
- each label level has the image level's shape with every axis but y and x of size 1, values 0 or 1, and
  the image level's coordinateTransformations; below the predicted level (`metadata["predicted level"]`,
  --level) each equals the label level above reduced by the mask rule and cut to its shape; above it each
  equals the predicted level upsampled by nearest neighbour: pixel i takes the predicted pixel
  floor((i + 0.5) * scale_i / scale_predicted), clamped to the predicted level (computed in numpy).

Needs zarr >= 3, numpy, ome-zarr-models, ome-zarr (and pillow for a PNG reference). Exits 1 when a check
fails, 2 on a usage error.
"""

import sys

import numpy as np
import zarr

SMALLEST_SIDE = 1024
CHUNK = 512


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def ome_attributes(group):
    """The NGFF metadata of a group and its version ("0.4" or "0.5")."""
    attrs = group.attrs.asdict()
    if group.metadata.zarr_format == 3:
        ome = attrs.get("ome")
        if not isinstance(ome, dict) or ome.get("version") != "0.5":
            fail(f"{group.store_path}: a Zarr v3 group without attributes.ome.version '0.5'")
        return ome, "0.5"
    return attrs, "0.4"


def validate(store, version):
    """ome-zarr-models' validation of the image (and, with it, its labels)."""
    from ome_zarr_models import open_ome_zarr

    try:
        model = open_ome_zarr(store, version=version)
    except Exception as e:  # noqa: BLE001 - the validator's reason is the message
        fail(f"ome-zarr-models refuses {store} as NGFF {version}: {e}")
    print(f"ome-zarr-models: {type(model).__module__}.{type(model).__name__} validates")
    return model


def blocks(a, h, w):
    """The 2x2 blocks of the last two axes of `a` padded to even sizes, and how many pixels each has."""
    ph, pw = h + h % 2, w + w % 2
    pad = [(0, 0)] * (a.ndim - 2) + [(0, ph - h), (0, pw - w)]
    valid = np.pad(np.ones((h, w), dtype=np.int64), [(0, ph - h), (0, pw - w)])
    n = valid.reshape(ph // 2, 2, pw // 2, 2).sum(axis=(1, 3))
    shape = a.shape[:-2] + (ph // 2, 2, pw // 2, 2)
    return np.pad(a, pad), shape, n


def reduce_mask(above):
    """The mask rule on the last two axes (values >= 128, or >= 1 for 0/1 labels, are foreground)."""
    h, w = above.shape[-2:]
    on = (above >= (1 if above.max(initial=0) <= 1 else 128)).astype(np.int64)
    padded, shape, n = blocks(on, h, w)
    count = padded.reshape(shape).sum(axis=(-3, -1))
    return 2 * count >= n


def reduce_mean_u8(above):
    h, w = above.shape[-2:]
    padded, shape, n = blocks(above.astype(np.int64), h, w)
    total = padded.reshape(shape).sum(axis=(-3, -1))
    return ((total + n // 2) // n).astype(np.uint8)


def reduce_mean_f32(above):
    h, w = above.shape[-2:]
    padded, shape, n = blocks(above.astype(np.float64), h, w)
    return (padded.reshape(shape).sum(axis=(-3, -1)) / n).astype(np.float32)


def check_output(store, reference):
    group = zarr.open_group(store, mode="r")
    ome, version = ome_attributes(group)
    validate(store, version)
    multiscales = ome.get("multiscales")
    if not multiscales:
        fail("no multiscales")
    m = multiscales[0]
    if version == "0.4" and m.get("version") != "0.4":
        fail(f"multiscales version {m.get('version')!r}, expected '0.4'")
    axes = [a["name"] for a in m["axes"]]
    if axes not in (["y", "x"], ["c", "y", "x"]):
        fail(f"axes {axes}")
    for a in m["axes"]:
        want = "channel" if a["name"] == "c" else "space"
        if a.get("type") != want:
            fail(f"axis {a['name']} has type {a.get('type')!r}")
    first_scale = None
    levels = []
    for level, d in enumerate(m["datasets"]):
        if d["path"] != str(level):
            fail(f"dataset {level} has path {d['path']!r}")
        scale = [t for t in d["coordinateTransformations"] if t["type"] == "scale"][0]["scale"]
        if first_scale is None:
            first_scale = scale
        want = [s * (2**level) for s in first_scale[-2:]]
        if not np.allclose(scale[-2:], want):
            fail(f"level {level} scale {scale}, expected {want} in y,x")
        array = group[d["path"]]
        if len(array.shape) != len(axes):
            fail(f"level {level} shape {array.shape} for axes {axes}")
        if version == "0.5" and list(array.metadata.dimension_names) != axes:
            fail(f"level {level} dimension_names {array.metadata.dimension_names}, axes {axes}")
        want_chunks = (3, CHUNK, CHUNK) if len(axes) == 3 else (CHUNK, CHUNK)
        if tuple(array.chunks) != want_chunks:
            fail(f"level {level} chunks {array.chunks}")
        if array.dtype not in (np.uint8, np.float32):
            fail(f"level {level} dtype {array.dtype}")
        if array.fill_value != 0:
            fail(f"level {level} fill value {array.fill_value}")
        levels.append(array[...])
        print(f"level {level}: shape {array.shape}, chunks {array.chunks}, dtype {array.dtype}, scale {scale}")
    h, w = levels[0].shape[-2:]
    want_sizes = [(h, w)]
    while max(h, w) > SMALLEST_SIDE:
        h, w = (h + 1) // 2, (w + 1) // 2
        want_sizes.append((h, w))
    sizes = [tuple(a.shape[-2:]) for a in levels]
    if sizes != want_sizes:
        fail(f"level sizes {sizes}, expected {want_sizes}")
    for level in range(1, len(levels)):
        above, got = levels[level - 1], levels[level]
        if got.dtype == np.float32:
            ok = np.allclose(got, reduce_mean_f32(above), rtol=1e-6, atol=1e-6)
        elif len(axes) == 2:
            ok = np.array_equal(got, np.where(reduce_mask(above), 255, 0).astype(np.uint8))
        else:
            ok = np.array_equal(got, reduce_mean_u8(above))
        if not ok:
            fail(f"level {level} is not level {level - 1} reduced by the writer's rule")
    print(f"levels 1..{len(levels) - 1} equal the level above reduced in numpy")
    if reference is not None:
        if reference.lower().endswith(".npy"):
            ref = np.load(reference)
        else:
            from PIL import Image

            ref = np.asarray(Image.open(reference))
        if ref.ndim == 3:
            ref = np.moveaxis(ref, 2, 0)
        if ref.shape != levels[0].shape or ref.dtype != levels[0].dtype:
            fail(f"reference {ref.shape} {ref.dtype} vs level 0 {levels[0].shape} {levels[0].dtype}")
        if not np.array_equal(ref, levels[0]):
            fail(f"level 0 differs from the reference in {(ref != levels[0]).sum()} samples")
        print(f"level 0 equals {reference}")
    print(f"OK: {store}: NGFF {version}, {len(levels)} levels, axes {','.join(axes)} (zarr {zarr.__version__})")


def check_labels(store, name):
    image = zarr.open_group(store, mode="r")
    ome, version = ome_attributes(image)
    validate(store, version)
    labels_group = zarr.open_group(store, path="labels", mode="r")
    labels_ome, _ = ome_attributes(labels_group)
    listed = labels_ome.get("labels", [])
    if name not in listed:
        fail(f"labels lists {listed}, not {name!r}")
    label = zarr.open_group(store, path=f"labels/{name}", mode="r")
    label_ome, _ = ome_attributes(label)
    meta = label_ome.get("image-label") or fail("the label has no image-label metadata")
    values = sorted(c["label-value"] for c in meta.get("colors", []))
    if values != [0, 1] or meta.get("source", {}).get("image") != "../../":
        fail(f"image-label colours for {values}, source {meta.get('source')}")

    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    nodes = list(Reader(parse_url(store))())
    found = [n for n in nodes if any(isinstance(s, Label) for s in n.specs)]
    if not any(str(n.zarr.path).rstrip("/").endswith(f"labels/{name}") for n in found):
        fail(f"ome-zarr-py's Reader finds no label node labels/{name} (nodes: {[str(n.zarr) for n in nodes]})")
    print(f"ome-zarr-py: Reader finds the label node labels/{name}")

    image_ms, label_ms = ome["multiscales"][0], label_ome["multiscales"][0]
    axes = [a["name"] if isinstance(a, dict) else a for a in image_ms["axes"]]
    if label_ms["axes"] != image_ms["axes"]:
        fail(f"label axes {label_ms['axes']}, image axes {image_ms['axes']}")
    if len(label_ms["datasets"]) != len(image_ms["datasets"]):
        fail(
            f"labels/{name} has {len(label_ms['datasets'])} levels, the image {len(image_ms['datasets'])}: the "
            "NGFF spec asks for as many (predicted at --level > 0, or image levels that are not 2x reductions)"
        )
    first = label_ms.get("metadata", {}).get("predicted level", 0)
    y, x = axes.index("y"), axes.index("x")
    planes = []
    for j, d in enumerate(label_ms["datasets"]):
        image_d = image_ms["datasets"][j]
        if d.get("coordinateTransformations") != image_d.get("coordinateTransformations"):
            fail(f"label level {j} transforms differ from image level {j}'s")
        want = tuple(s if a in ("y", "x") else 1 for a, s in zip(axes, image[image_d["path"]].shape))
        array = label[d["path"]]
        if array.shape != want or array.dtype != np.uint8:
            fail(f"label level {j}: {array.shape} {array.dtype}, expected {want} uint8")
        data = array[...]
        if not np.isin(data, [0, 1]).all():
            fail(f"label level {j} holds values other than 0 and 1")
        planes.append(data.reshape(data.shape[y], data.shape[x]))

    def scale(j, axis):
        for t in label_ms["datasets"][j].get("coordinateTransformations", []):
            if t.get("type") == "scale":
                return t["scale"][axis]
        return None

    predicted = planes[first]
    for j, plane in enumerate(planes):
        h, w = plane.shape
        if j < first:
            ph, pw = predicted.shape
            ry = scale(j, y) / scale(first, y) if scale(j, y) and scale(first, y) else ph / h
            rx = scale(j, x) / scale(first, x) if scale(j, x) and scale(first, x) else pw / w
            rows = np.clip(np.floor((np.arange(h) + 0.5) * ry).astype(int), 0, ph - 1)
            cols = np.clip(np.floor((np.arange(w) + 0.5) * rx).astype(int), 0, pw - 1)
            if not np.array_equal(predicted[rows][:, cols], plane):
                fail(f"label level {j} is not the predicted level {first} upsampled by nearest neighbour")
            how = f"level {first} upsampled"
        elif j > first:
            reduced = reduce_mask(planes[j - 1])[:h, :w].astype(np.uint8)
            if reduced.shape != plane.shape or not np.array_equal(reduced, plane):
                fail(f"label level {j} is not level {j - 1} reduced by the mask rule and cut to its shape")
            how = f"level {j - 1} reduced"
        else:
            how = "predicted"
        print(f"label level {j}: shape {plane.shape} ({how}), {int(plane.sum())} foreground")
    print(f"OK: {store}: labels/{name}, NGFF {version}, {len(label_ms['datasets'])} levels")


def main():
    args = sys.argv[1:]
    name = None
    if "--labels" in args:
        i = args.index("--labels")
        if i + 1 >= len(args):
            print(__doc__)
            sys.exit(2)
        name = args[i + 1]
        del args[i : i + 2]
    if len(args) not in (1, 2) or (name is not None and len(args) != 1):
        print(__doc__)
        sys.exit(2)
    if name is None:
        check_output(args[0], args[1] if len(args) == 2 else None)
    else:
        check_labels(args[0], name)


if __name__ == "__main__":
    main()
