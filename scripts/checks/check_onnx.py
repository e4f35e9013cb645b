#!/usr/bin/env python3
"""Checks an exported segmentation model: ONNX's full checker (with strict shape inference), then prints
its metadata and input/output signature. With onnxruntime installed it also runs the model once on a random
image and checks that `probabilities` is the softmax of `logits`.

Usage: check_onnx.py MODEL.onnx      (needs `pip install onnx`; onnxruntime and numpy are optional)
Exits 1 when the file is missing or invalid.
"""

import os
import sys


def dims(value_info):
    shape = value_info.type.tensor_type.shape
    return "(" + ",".join(d.dim_param or str(d.dim_value) for d in shape.dim) + ")"


def run_once(path, model):
    """Runs the model on a random 2x3x32x48 image; returns an error string or None."""
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime/numpy not installed: skipping the inference check")
        return None
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    image = np.random.default_rng(0).random((2, 3, 32, 48), dtype=np.float32)
    logits, probs = session.run(["logits", "probabilities"], {"image": image})
    if logits.shape != (2, 2, 32, 48) or probs.shape != logits.shape:
        return f"unexpected output shapes {logits.shape} and {probs.shape} for input {image.shape}"
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax_diff = float(np.abs(probs - exp / exp.sum(axis=1, keepdims=True)).max())
    if not np.isfinite(logits).all() or softmax_diff > 1e-5:
        return f"outputs are not finite or probabilities are not softmax(logits) (diff {softmax_diff})"
    print(f"onnxruntime {ort.__version__}: ran (2,3,32,48) -> logits {logits.shape}, softmax diff {softmax_diff:.2e}")
    return None


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    path = argv[1]
    if not os.path.isfile(path):
        print(f"error: {path} does not exist; export one with `trainer export`", file=sys.stderr)
        return 1
    try:
        import onnx
    except ImportError:
        print("error: the `onnx` package is missing; install it with `pip install onnx`", file=sys.stderr)
        return 1
    try:
        model = onnx.load(path)
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # the checker and loader raise several unrelated types
        print(f"error: {path} is not a valid ONNX model: {e}", file=sys.stderr)
        return 1

    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    print(f"{path}: valid (onnx {onnx.__version__} full check)")
    print(f"  ir_version {model.ir_version}; opset {opsets}; producer {model.producer_name} {model.producer_version}")
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    for value in graph.input:
        if value.name not in initializers:
            print(f"  input  {value.name}: {onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type)} {dims(value)}")
    for value in graph.output:
        print(f"  output {value.name}: {onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type)} {dims(value)}")
    params = sum(int(onnx.numpy_helper.to_array(t).size) for t in graph.initializer if t.name.endswith((".weight", ".bias")))
    print(f"  ops: {' '.join(n.op_type for n in graph.node)}; {params} parameters")
    print("  metadata:")
    for prop in model.metadata_props:
        print(f"    {prop.key} = {prop.value}")

    error = run_once(path, model)
    if error:
        print(f"error: {path}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
