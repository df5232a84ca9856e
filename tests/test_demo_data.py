"""The shipped demo artifacts (flight/data) are what the default mission and its tests rely on.

These tests pin the contract that ``tools/train_demo.py`` promises, against the committed files
rather than a fresh training run (torch is a tools-only dependency): a valid opset-13 graph made
only of ops flight's kernels implement, static shapes with batch 1 (flight preallocates every
buffer), a normalized test set that feeds the model directly, and accuracy with margin above
the 0.95 flight must reach with its own kernels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent.parent / "flight" / "data"
MODEL = DATA / "digits_cnn.onnx"
TEST_SET = DATA / "digits_test.npz"

ALLOWED_OPS = {
    "Conv",
    "Relu",
    "MaxPool",
    "BatchNormalization",
    "Flatten",
    "Reshape",
    "Gemm",
    "Softmax",
}
MIN_ACCURACY = 0.97
MAX_TOTAL_BYTES = 1 << 20  # the package carries these; keep them small


@pytest.fixture(scope="module")
def test_set() -> dict[str, np.ndarray]:
    with np.load(TEST_SET, allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def model() -> Any:
    onnx = pytest.importorskip("onnx")
    return onnx.load(str(MODEL))


def test_artifacts_exist_and_are_small() -> None:
    assert MODEL.is_file()
    assert TEST_SET.is_file()
    assert MODEL.stat().st_size + TEST_SET.stat().st_size < MAX_TOTAL_BYTES


def test_test_set_shapes_dtypes_and_labels(test_set: dict[str, np.ndarray]) -> None:
    x, y = test_set["x"], test_set["y"]
    assert {"x", "y", "split_seed"} <= set(test_set)
    assert x.dtype == np.float32
    assert y.dtype == np.int64
    assert x.ndim == 4 and x.shape[1:] == (1, 8, 8)
    assert y.shape == (x.shape[0],)
    assert x.shape[0] >= 400  # a quarter of the 1797 digits
    assert test_set["split_seed"].shape == ()
    # Labels cover all ten digits; inputs are already normalized (pixel / 16).
    assert set(np.unique(y).tolist()) == set(range(10))
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert np.all(np.isfinite(x))


def test_model_is_valid_and_uses_only_allowed_ops(model: Any) -> None:
    onnx = pytest.importorskip("onnx")
    onnx.checker.check_model(model, full_check=True)
    opsets = {o.domain: o.version for o in model.opset_import}
    assert opsets.get("", opsets.get("ai.onnx")) == 13
    ops = {node.op_type for node in model.graph.node}
    assert ops <= ALLOWED_OPS, f"ops flight cannot run: {sorted(ops - ALLOWED_OPS)}"
    assert all(node.domain in ("", "ai.onnx") for node in model.graph.node)


def _dims(value_info: Any) -> list[int]:
    """Static dims of a tensor value; a symbolic or missing dim fails the test."""
    tensor_type = value_info.type.tensor_type
    assert tensor_type.HasField("shape"), f"{value_info.name} has no shape"
    dims = []
    for d in tensor_type.shape.dim:
        assert d.HasField("dim_value") and d.dim_value > 0, f"{value_info.name} not static"
        dims.append(d.dim_value)
    return dims


def test_model_shapes_are_static_with_batch_one(model: Any) -> None:
    onnx = pytest.importorskip("onnx")
    inits = {i.name for i in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in inits]
    assert len(inputs) == 1 and len(model.graph.output) == 1
    assert _dims(inputs[0]) == [1, 1, 8, 8]
    assert _dims(model.graph.output[0]) == [1, 10]
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    produced = {out for node in inferred.graph.node for out in node.output}
    known = {v.name: v for v in (*inferred.graph.value_info, *inferred.graph.output)}
    for name in produced:
        assert name in known, f"no inferred shape for {name}"
        assert _dims(known[name])[0] == 1


def test_onnxruntime_accuracy(test_set: dict[str, np.ndarray]) -> None:
    ort = pytest.importorskip("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(MODEL), opts, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    x, y = test_set["x"], test_set["y"]
    preds = np.array(
        [int(sess.run(None, {in_name: x[i : i + 1]})[0].argmax()) for i in range(len(x))]
    )
    accuracy = float(np.mean(preds == y))
    assert accuracy >= MIN_ACCURACY, f"accuracy {accuracy:.4f} < {MIN_ACCURACY}"
