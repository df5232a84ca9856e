"""A few kernels against onnxruntime single-op models (skipped when onnxruntime is missing)."""

import numpy as np
import pytest

from flight.kernels import conv_output_size, pool_output_size
from flight.model.ops import kernel, workspace_size

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def _ort(op, inputs, out_shape, **attrs):
    names = [f"i{i}" for i in range(len(inputs))]
    node = helper.make_node(op, names, ["y"], **attrs)
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info(n, TensorProto.FLOAT, a.shape)
            for n, a in zip(names, inputs, strict=True)
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(None, dict(zip(names, inputs, strict=True)))[0]


def _mine(op, inputs, out_shape, attrs):
    out = np.empty(out_shape, np.float32)
    n = workspace_size(op, inputs, [out], attrs)
    kernel(op)(inputs, [out], attrs, np.empty(n, np.float32) if n else None)
    return out


@pytest.mark.parametrize(
    ("s", "p", "d", "g"), [(1, 1, 1, 1), (2, 1, 1, 1), (1, 2, 2, 2), (2, 1, 1, 6)]
)
def test_conv_vs_ort(s, p, d, g):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 15, 14)).astype(np.float32)
    w = rng.standard_normal((12, 6 // g, 3, 3)).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    attrs = {"strides": [s, s], "pads": [p] * 4, "dilations": [d, d], "group": g}
    shape = (2, 12, conv_output_size(15, 3, s, p, p, d), conv_output_size(14, 3, s, p, p, d))
    want = _ort("Conv", [x, w, b], shape, **attrs)
    np.testing.assert_allclose(_mine("Conv", [x, w, b], shape, attrs), want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ceil", [0, 1])
@pytest.mark.parametrize("cip", [0, 1])
def test_avgpool_vs_ort(ceil, cip):
    x = np.random.default_rng(1).standard_normal((1, 2, 10, 9)).astype(np.float32)
    attrs = {
        "kernel_shape": [3, 3],
        "strides": [2, 2],
        "pads": [1, 1, 1, 1],
        "ceil_mode": ceil,
        "count_include_pad": cip,
    }
    shape = (
        1,
        2,
        pool_output_size(10, 3, 2, 1, 1, 1, bool(ceil)),
        pool_output_size(9, 3, 2, 1, 1, 1, bool(ceil)),
    )
    want = _ort("AveragePool", [x], shape, **attrs)
    assert want.shape == shape
    np.testing.assert_allclose(_mine("AveragePool", [x], shape, attrs), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("ceil", [0, 1])
def test_maxpool_vs_ort(ceil):
    x = np.random.default_rng(2).standard_normal((1, 3, 11, 12)).astype(np.float32)
    attrs = {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 0, 1, 0], "ceil_mode": ceil}
    shape = (
        1,
        3,
        pool_output_size(11, 3, 2, 1, 1, 1, bool(ceil)),
        pool_output_size(12, 3, 2, 0, 0, 1, bool(ceil)),
    )
    want = _ort("MaxPool", [x], shape, **attrs)
    assert want.shape == shape
    np.testing.assert_array_equal(_mine("MaxPool", [x], shape, attrs), want)


def test_gemm_softmax_lrn_vs_ort():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((3, 40)).astype(np.float32)
    b = rng.standard_normal((20, 40)).astype(np.float32)
    c = rng.standard_normal(20).astype(np.float32)
    attrs = {"transB": 1, "alpha": 0.7, "beta": 1.3}
    np.testing.assert_allclose(
        _mine("Gemm", [a, b, c], (3, 20), attrs),
        _ort("Gemm", [a, b, c], (3, 20), **attrs),
        rtol=1e-4,
        atol=1e-5,
    )
    x = rng.standard_normal((2, 5, 7)).astype(np.float32)
    np.testing.assert_allclose(
        _mine("Softmax", [x], x.shape, {"axis": 1}),
        _ort("Softmax", [x], x.shape, axis=1),
        rtol=1e-5,
        atol=1e-6,
    )
    x4 = rng.standard_normal((1, 6, 3, 3)).astype(np.float32)
    lrn = {"size": 3, "alpha": 1e-2, "beta": 0.75, "bias": 1.0}
    np.testing.assert_allclose(
        _mine("LRN", [x4], x4.shape, lrn), _ort("LRN", [x4], x4.shape, **lrn), rtol=1e-5, atol=1e-6
    )
