"""1-D Conv / MaxPool / AveragePool through the converter (lowered to the 2-D kernels).

Checked against the onnx package's own pytorch-converted operator tests (their stored outputs
and onnxruntime), against onnxruntime on models built with onnx.helper, and under TMR. The
tolerances are the converter tests' (tests/model_exec/test_onnx_ops.py): rtol 1e-4, atol 1e-5.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper, version_converter  # noqa: E402

from flight.model.executor import Model  # noqa: E402
from flight.model.onnx_import import convert_onnx  # noqa: E402
from flight.redundancy import RedundantRunner  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from onnx_models import ort_run  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
CORPUS = Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted"
ONE_D = sorted(
    p.name
    for pattern in ("test_Conv1d*", "test_MaxPool1d*", "test_AvgPool1d*")
    for p in CORPUS.glob(pattern)
)
RNG = np.random.default_rng(7)


def _corpus_model(name: str) -> onnx.ModelProto:
    """A pytorch-converted test model, made acceptable to today's converter front end.

    These files are opset 6 / IR 3 (initializers also listed as graph inputs); both are other
    import work (issue 11), not the 1-D lowering under test, so upgrade the opset and drop the
    initializer inputs here.
    """
    model = onnx.load(str(CORPUS / name / "model.onnx"))
    if model.opset_import[0].version < 9:
        model = version_converter.convert_version(model, 13)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    model.ir_version = max(model.ir_version, 7)
    return model


def _tensor(name: str, which: str) -> np.ndarray:
    return numpy_helper.to_array(onnx.load_tensor(str(CORPUS / name / "test_data_set_0" / which)))


def _run(graph, x: np.ndarray, copies: int = 1) -> np.ndarray:
    model = Model(graph, copies=copies)
    return model.replica(0).run(x)[model.output_names[0]]


def test_the_corpus_has_the_1d_tests():
    assert len([n for n in ONE_D if "Conv1d" in n]) >= 8
    assert any("MaxPool1d" in n for n in ONE_D) and any("AvgPool1d" in n for n in ONE_D)


@pytest.mark.parametrize("name", ONE_D)
def test_pytorch_converted_1d_matches_stored_output_and_onnxruntime(name):
    model = _corpus_model(name)
    x, expected = _tensor(name, "input_0.pb"), _tensor(name, "output_0.pb")
    graph = convert_onnx(model)
    got = _run(graph, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got, ort_run(model, x), rtol=RTOL, atol=ATOL)
    # a 1-D op runs on the 2-D kernels with a unit height (the AvgPool1d files are exported
    # as Unsqueeze + 2-D AveragePool with kernel (k, 1) already: nothing to lower there)
    if x.ndim == 3 and "AvgPool" not in name:
        spatial = [n for n in graph.nodes if n.op in ("Conv", "MaxPool", "AveragePool")]
        assert len(spatial) == 1 and graph.shapes[spatial[0].outputs[0]][2] == 1
        assert spatial[0].attrs["kernel_shape"][0] == 1


def _single(op: str, x_shape, out_len: int, c_out: int, inits=(), inputs=("x",), **attrs):
    node = helper.make_node(op, list(inputs), ["y"], name="op", **attrs)
    graph = helper.make_graph(
        [node],
        "one_d",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [x_shape[0], c_out, out_len])],
        list(inits),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return onnx.shape_inference.infer_shapes(model)


def _weight(name: str, *shape: int):
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32), name)


# (attrs, length): asymmetric pads, stride + dilation, SAME padding, groups
CONV_CASES = [
    ({"pads": [2, 0]}, 11),
    ({"pads": [0, 3], "strides": [2], "dilations": [2]}, 17),
    ({"auto_pad": "SAME_UPPER", "strides": [3]}, 13),
    ({"auto_pad": "SAME_LOWER", "strides": [2]}, 12),
    ({"group": 2, "pads": [1, 1]}, 9),
]


@pytest.mark.parametrize(("attrs", "length"), CONV_CASES)
def test_conv1d_attributes_match_onnxruntime(attrs, length):
    group = attrs.get("group", 1)
    inits = [_weight("W", 6, 4 // group, 3), _weight("B", 6)]
    probe = _single("Conv", (2, 4, length), 0, 6, inits, ("x", "W", "B"), **attrs)
    out_len = probe.graph.output[0].type.tensor_type.shape.dim[2].dim_value or None
    model = _single("Conv", (2, 4, length), out_len, 6, inits, ("x", "W", "B"), **attrs)
    x = RNG.standard_normal((2, 4, length)).astype(np.float32)
    np.testing.assert_allclose(
        _run(convert_onnx(model), x), ort_run(model, x), rtol=RTOL, atol=ATOL
    )


POOL_CASES = [
    ("MaxPool", {"kernel_shape": [3], "pads": [2, 0], "strides": [2]}),
    ("MaxPool", {"kernel_shape": [2], "dilations": [3], "ceil_mode": 1, "strides": [2]}),
    ("AveragePool", {"kernel_shape": [3], "pads": [0, 2], "count_include_pad": 1}),
    ("AveragePool", {"kernel_shape": [4], "pads": [1, 1], "strides": [3], "ceil_mode": 1}),
]


@pytest.mark.parametrize(("op", "attrs"), POOL_CASES)
def test_pool1d_attributes_match_onnxruntime(op, attrs):
    length = 15
    probe = _single(op, (2, 3, length), 0, 3, **attrs)
    out_len = probe.graph.output[0].type.tensor_type.shape.dim[2].dim_value or None
    model = _single(op, (2, 3, length), out_len, 3, **attrs)
    x = RNG.standard_normal((2, 3, length)).astype(np.float32)
    np.testing.assert_allclose(
        _run(convert_onnx(model), x), ort_run(model, x), rtol=RTOL, atol=ATOL
    )


def _cnn_1d() -> onnx.ModelProto:
    """A telemetry-style 1-D CNN: Conv1d (+ BatchNorm1d) + ReLU + MaxPool1d, twice, then Flatten
    + Gemm."""
    bn = [
        numpy_helper.from_array((RNG.random(8) + 0.5).astype(np.float32), name)
        for name in ("bn_scale", "bn_bias", "bn_mean", "bn_var")
    ]
    inits = [
        *bn,
        _weight("w1", 8, 3, 5),
        _weight("b1", 8),
        _weight("w2", 16, 8, 3),
        _weight("b2", 16),
        _weight("wf", 4, 16 * 16),
        _weight("bf", 4),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], kernel_shape=[5], pads=[2, 2]),
        helper.make_node("BatchNormalization", ["c1", *(t.name for t in bn)], ["n1"]),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2], strides=[2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], kernel_shape=[3], pads=[1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2], strides=[2]),
        helper.make_node("Flatten", ["p2"], ["f"]),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn_1d",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.checker.check_model(model, full_check=True)
    return model


def test_1d_cnn_under_tmr_is_bit_identical_and_matches_onnxruntime():
    model = _cnn_1d()
    x = RNG.standard_normal((1, 3, 64)).astype(np.float32)
    flight_model = Model(convert_onnx(model), copies=3)
    outputs = [
        flight_model.replica(i).run(x)[flight_model.output_names[0]].copy() for i in range(3)
    ]
    assert outputs[1].tobytes() == outputs[0].tobytes() == outputs[2].tobytes()
    result = RedundantRunner(flight_model, "tmr").run(x)
    assert result.delivered and result.corrected == 0 and result.no_majority == 0
    assert result.output.tobytes() == outputs[0].tobytes()
    np.testing.assert_allclose(result.output, ort_run(model, x), rtol=RTOL, atol=ATOL)


def test_1d_stack_converts_to_the_2d_graph_without_reshapes_between():
    graph = convert_onnx(_cnn_1d())
    # BatchNorm folded and ReLU fused into each Conv, the pools read the Conv outputs directly:
    # only the input's Reshape to N,C,1,L and the Flatten remain besides the 2-D ops.
    assert [n.op for n in graph.nodes] == [
        "Reshape", "Conv", "MaxPool", "Conv", "MaxPool", "Reshape", "Reshape", "Gemm"
    ]  # fmt: skip
    assert [n.attrs["activation"] for n in graph.nodes if n.op == "Conv"] == ["Relu", "Relu"]


def test_a_3d_tensor_read_elsewhere_is_materialised():
    """The pre-activation Conv output is also a graph output: both it and the ReLU'd one are
    delivered in N,C,L, and match onnxruntime."""
    inits = [_weight("W", 4, 2, 3)]
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], kernel_shape=[3]),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "two_outputs",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 9])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 7]),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 4, 7]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    x = RNG.standard_normal((1, 2, 9)).astype(np.float32)
    flight_model = Model(convert_onnx(model), copies=1)
    got = flight_model.replica(0).run(x)
    import onnxruntime as ort

    expected = ort.InferenceSession(model.SerializeToString()).run(["y", "c"], {"x": x})
    for name, want in zip(["y", "c"], expected, strict=True):
        assert got[name].shape == want.shape
        np.testing.assert_allclose(got[name], want, rtol=RTOL, atol=ATOL)
