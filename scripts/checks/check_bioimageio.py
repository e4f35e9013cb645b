#!/usr/bin/env python3
"""Checks the export formats written by `trainer export` with the consumers' own tools:

1. bioimage.io: `bioimageio.core.test_model` (format validation, the test tensors reproduced, inference at
   several sizes) passes on each package; the package declares every output of its ONNX graph, in graph
   order, and its test tensors have the declared shapes.
2. bioimage.io tiling: `bioimageio.core.predict(..., blocksize_parameter=n)` (bioimageio.core's own tiler,
   from the package's halo and size step) equals bioimageio.core's whole-sample prediction exactly, and one
   plain whole-image ONNX Runtime pass exactly beyond the halo from the border, on a held-out image
   (synthetic, never seen in training, not a multiple of any block size).
3. Triton: config.pbtxt parses as Triton's own `ModelConfig` (protobuf text format, from tritonclient) and
   names the ONNX graph's input and outputs with its dtypes and dims; the version directory holds the graph.
4. Python consumers: python/predict_onnx.py gives the same mask as `runner predict` (compared by the
   caller, see scripts/checks/check_bioimageio.sh).

Usage: check_bioimageio.py package PKG.zip [PKG.zip ...]
       check_bioimageio.py triton DIR NAME MODEL.onnx
       check_bioimageio.py readme-iou PKG.zip METRICS.json
       check_bioimageio.py same-mask A.png B.png
Exits 1 on the first failed check.
"""

import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np


def fail(message):
    print(f"FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def graph_signature(onnx_path):
    """[(name, element type, shape)] of the graph's input and outputs, by onnxruntime."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    entry = lambda t: (t.name, t.type, list(t.shape))
    return session, [entry(t) for t in session.get_inputs()], [entry(t) for t in session.get_outputs()]


def check_package_contents(package):
    """The rdf.yaml's tensors against the ONNX graph inside the package; test tensor shapes."""
    from bioimageio.spec import load_model_description

    model = load_model_description(str(package), perform_io_checks=True)
    if getattr(model, "format_version", "").split(".")[:2] != ["0", "5"]:
        fail(f"{package}: format {model.format_version}, expected 0.5.x")
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(package) as z:
        z.extractall(tmp)
        weights = Path(tmp) / model.weights.onnx.source.path
        _, inputs, outputs = graph_signature(weights)
        declared_in = [str(t.id) for t in model.inputs]
        declared_out = [str(t.id) for t in model.outputs]
        if declared_in != [n for n, _, _ in inputs] or declared_out != [n for n, _, _ in outputs]:
            fail(f"{package}: declares inputs {declared_in} and outputs {declared_out}, the graph has "
                 f"{[n for n, _, _ in inputs]} and {[n for n, _, _ in outputs]} (order matters)")
        test_input = np.load(Path(tmp) / model.inputs[0].test_tensor.source.path)
        if test_input.dtype != np.float32 or test_input.ndim != 4 or test_input.shape[:2] != (1, 3):
            fail(f"{package}: test input {test_input.dtype} {test_input.shape}, expected float32 (1, 3, y, x)")
        if test_input.min() < 0 or test_input.max() > 1:
            fail(f"{package}: test input outside [0, 1]")
        classes = outputs[0][2][1]  # the graph's output channels: one per class
        for descr in model.outputs:
            out = np.load(Path(tmp) / descr.test_tensor.source.path)
            if out.dtype != np.float32 or out.shape != (1, classes) + test_input.shape[2:]:
                fail(f"{package}: test output {descr.id} is {out.dtype} {out.shape}, the graph has {classes} classes")
            channel = [a for a in descr.axes if a.type == "channel"][0]
            if len(channel.channel_names) != classes:
                fail(f"{package}: output {descr.id} names {len(channel.channel_names)} channels for {classes} classes")
        space = [a for a in model.inputs[0].axes if a.type == "space"]
        if [a.size.step for a in space] != [2, 2]:
            fail(f"{package}: input space axes need size step 2, got {[a.size for a in space]}")
        halos = {(str(d.id), str(a.id)): a.halo for d in model.outputs for a in d.axes if a.type == "space"}
        if set(halos.values()) != {8}:
            fail(f"{package}: output halos {halos}, expected 8")
    names = [str(n) for n in [a for a in model.outputs[0].axes if a.type == "channel"][0].channel_names]
    print(f"ok   {package}: declares the graph's input {declared_in} and outputs {declared_out} in order; "
          f"test tensors (1, 3, {test_input.shape[2]}, {test_input.shape[3]}); {classes} classes {names}; "
          f"halo 8, size step 2")
    return model


def check_bioimageio_test(package):
    from bioimageio.core import test_model

    summary = test_model(str(package))
    if summary.status != "passed":
        summary.display()
        fail(f"{package}: `bioimageio test` status {summary.status}")
    warnings = [d for d in summary.details for w in d.warnings]
    print(f"ok   {package}: bioimageio test passed (bioimageio.core test_model; {len(warnings)} check(s) with warnings)")


def held_out_image(height, width, seed=0):
    """A synthetic RGB image in [0, 1] (smooth blobs plus noise): never seen in training."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((3, height, width), np.float32)
    for c in range(3):
        for _ in range(12):
            cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(8, 40)
            image[c] += np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r)).astype(np.float32)
    image += rng.normal(0, 0.15, image.shape).astype(np.float32)
    return np.clip(image / image.max(), 0, 1).astype(np.float32)[None]


def check_blocked_prediction(package, model):
    """bioimageio.core's blocked prediction (its own tiler, from the package's halo and size step) against
    its own whole-sample prediction, and against one plain whole-image ONNX Runtime pass.

    bioimageio.core pads the sample border by the halo (the description's default pad mode, symmetric)
    before predicting, blocked or not; the network's own pass pads with zeros after its normalisation. So
    both of bioimageio.core's results must be identical to each other everywhere, and identical to the
    plain pass at least a halo away from the border; within the halo of the border they differ by design.
    """
    from bioimageio.core import predict

    halo = 8
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(package) as z:
        z.extractall(tmp)
        session, _, outputs = graph_signature(Path(tmp) / model.weights.onnx.source.path)
        # 190 x 298: with bioimageio.core's 8-px border padding, 206 x 314 = 64,684 input pixels, so even
        # the whole-sample passes stay within the pixel budget.
        image = held_out_image(190, 298)
        names = [n for n, _, _ in outputs]
        plain = dict(zip(names, session.run(None, {"image": image})))
        whole = predict(model=model, inputs={"image": image})
        inner = (slice(None), slice(None), slice(halo, -halo), slice(halo, -halo))
        for n in (10, 30, 80):
            blocked = predict(model=model, inputs={"image": image}, blocksize_parameter=n)
            border = 0.0
            for name in names:
                b = blocked.members[name].data.to_numpy()
                w = whole.members[name].data.to_numpy()
                if b.shape != plain[name].shape or w.shape != plain[name].shape:
                    fail(f"{package}: {name} has shape {b.shape} blocked, {w.shape} whole, {plain[name].shape} plain")
                if (diff := float(np.abs(b - w).max())) != 0.0:
                    fail(f"{package}: blocksize_parameter {n}: {name} differs from the whole-sample prediction by {diff}")
                if (diff := float(np.abs(b[inner] - plain[name][inner]).max())) != 0.0:
                    fail(f"{package}: blocksize_parameter {n}: {name} differs from a plain ONNX Runtime pass by "
                         f"{diff} more than {halo} px inside the border")
                border = max(border, float(np.abs(b - plain[name]).max()))
            block = 18 + 2 * n
            print(f"ok   {package}: bioimageio.core predict, blocksize_parameter {n} ({block}x{block} blocks with the "
                  f"halo): identical (diff 0.0) to its whole-sample prediction on a held-out 190x298 image, and to "
                  f"a plain ONNX Runtime pass beyond {halo} px from the border (within it, border padding: max diff "
                  f"{border:.3g})")


def check_triton(repository, name, onnx_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    model_dir = Path(repository) / name
    text = (model_dir / "config.pbtxt").read_text()
    try:
        config = text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        fail(f"{model_dir}/config.pbtxt is not a valid Triton ModelConfig: {e}")
    served = model_dir / "1" / "model.onnx"
    if served.read_bytes() != Path(onnx_path).read_bytes():
        fail(f"{served} is not the exported graph {onnx_path}")
    if (config.name, config.platform, config.max_batch_size) != (name, "onnxruntime_onnx", 0):
        fail(f"config: name {config.name!r}, platform {config.platform!r}, max_batch_size {config.max_batch_size}")
    _, inputs, outputs = graph_signature(served)
    fp32 = model_config_pb2.DataType.Value("TYPE_FP32")
    for kind, declared, graph in [("input", config.input, inputs), ("output", config.output, outputs)]:
        got = [(t.name, t.data_type, list(t.dims)) for t in declared]
        # The graph's symbolic dims (batch, height, width) are Triton's -1.
        want = [(n, fp32, [d if isinstance(d, int) else -1 for d in shape]) for n, ty, shape in graph
                if ty == "tensor(float)"]
        if got != want or len(want) != len(graph):
            fail(f"config {kind}s {got} do not match the graph's {graph}")
    if "65,536" not in text and "65536" not in text:
        fail("config.pbtxt does not state the 65,536-pixel budget")
    print(f"ok   {model_dir}: config.pbtxt parses as tritonclient's ModelConfig; platform onnxruntime_onnx, "
          f"max_batch_size 0; input {[(t.name, list(t.dims)) for t in config.input]}, outputs "
          f"{[(t.name, list(t.dims)) for t in config.output]} match the graph; 1/model.onnx is the export")


def check_readme_iou(package, metrics_json):
    """The IoU the package's README reports equals the one measured now on the package's own weights."""
    import json
    import re

    with zipfile.ZipFile(package) as z:
        readme = z.read("README.md").decode()
    section = readme.split("## Validation", 1)[-1]
    match = re.search(r"foreground IoU \*\*([0-9.]+)\*\*", section)
    if not match:
        fail(f"{package}: README.md has no foreground IoU in its Validation section")
    measured = json.loads(Path(metrics_json).read_text())["foreground_iou"]
    if match.group(1) != f"{measured:.4f}":
        fail(f"{package}: README.md reports IoU {match.group(1)}, runner predict measures {measured:.4f} "
             "on the package's weights; rebuild it with `just package`")
    print(f"ok   {package}: README.md's Validation IoU {match.group(1)} = runner predict --mask on its weights")


def check_same_mask(a, b):
    from PIL import Image

    x, y = np.asarray(Image.open(a).convert("L")), np.asarray(Image.open(b).convert("L"))
    if x.shape != y.shape:
        fail(f"{a} is {x.shape}, {b} is {y.shape}")
    differing = int(((x > 127) != (y > 127)).sum())
    if differing:
        fail(f"{a} and {b} differ in {differing} of {x.size} pixels")
    print(f"ok   {a} and {b}: identical masks ({x.shape[1]}x{x.shape[0]})")


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    command, args = argv[1], argv[2:]
    if command == "package":
        for package in args:
            model = check_package_contents(package)
            check_bioimageio_test(package)
            check_blocked_prediction(package, model)
    elif command == "triton" and len(args) == 3:
        check_triton(*args)
    elif command == "readme-iou" and len(args) == 2:
        check_readme_iou(*args)
    elif command == "same-mask" and len(args) == 2:
        check_same_mask(*args)
    else:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
