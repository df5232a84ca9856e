"""Every supported op, through the converter and the executor, against onnxruntime (CPU).

Each test builds a one- or few-node ONNX model with random weights in a chosen opset, converts
it, runs it on replica 0 and compares with onnxruntime at rtol 1e-4 / atol 1e-5.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402
from onnx_models import ort_run  # noqa: E402

from flight.model.executor import Model  # noqa: E402
from flight.model.onnx_import import ConversionError, UnsupportedOpError, convert_onnx  # noqa: E402

OPSETS = [9, 11, 13, 17, 21]
RNG = np.random.default_rng(1234)


def _model(nodes, inputs, output, inits=(), opset=13):
    graph = helper.make_graph(
        nodes,
        "op",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs],
        [helper.make_tensor_value_info(output[0], TensorProto.FLOAT, list(output[1]))],
        list(inits),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7 if opset <= 15 else 8
    return model


def _init(name, array):
    return onnx.numpy_helper.from_array(np.asarray(array), name)


def _check(model, feeds, rtol=1e-4, atol=1e-5):
    graph = convert_onnx(model)
    flight_model = Model(graph, copies=1)
    outputs = flight_model.replica(0).run(feeds)
    expected = ort_run(model, feeds)
    got = outputs[flight_model.output_names[0]]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)
    return graph


def _x(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


@st.composite
def conv_cases(draw):
    group = draw(st.sampled_from([1, 2, "dw"]))
    c_in = draw(st.sampled_from([2, 4, 6]))
    c_out = c_in if group == "dw" else draw(st.sampled_from([2, 4, 8]))
    group = c_in if group == "dw" else group
    k = draw(st.sampled_from([1, 2, 3, 5]))
    stride = draw(st.integers(1, 3))
    dil = draw(st.integers(1, 2))
    pads = draw(st.lists(st.integers(0, k // 2 + 1), min_size=4, max_size=4))
    h = draw(st.integers(dil * (k - 1) + 1, 14))
    w = draw(st.integers(dil * (k - 1) + 1, 14))
    batch = draw(st.integers(1, 2))
    bias = draw(st.booleans())
    return group, c_in, c_out, k, stride, dil, pads, h, w, batch, bias


@settings(max_examples=30, deadline=None)
@given(conv_cases(), st.sampled_from(OPSETS))
def test_conv_matches_onnxruntime(case, opset):
    group, c_in, c_out, k, stride, dil, pads, h, w, batch, bias = case
    inits = [_init("W", _x(c_out, c_in // group, k, k))]
    inputs = ["x", "W"]
    if bias:
        inits.append(_init("B", _x(c_out)))
        inputs.append("B")
    node = helper.make_node(
        "Conv",
        inputs,
        ["y"],
        kernel_shape=[k, k],
        strides=[stride] * 2,
        dilations=[dil] * 2,
        pads=pads,
        group=group,
    )
    oh = (h + pads[0] + pads[2] - dil * (k - 1) - 1) // stride + 1
    ow = (w + pads[1] + pads[3] - dil * (k - 1) - 1) // stride + 1
    model = _model(
        [node], [("x", (batch, c_in, h, w))], ("y", (batch, c_out, oh, ow)), inits, opset
    )
    _check(model, {"x": _x(batch, c_in, h, w)})


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_auto_pad(auto_pad):
    node = helper.make_node(
        "Conv", ["x", "W"], ["y"], kernel_shape=[3, 3], strides=[2, 2], auto_pad=auto_pad
    )
    out = (1, 4, 4, 4) if auto_pad != "VALID" else (1, 4, 3, 3)
    model = _model([node], [("x", (1, 3, 8, 8))], ("y", out), [_init("W", _x(4, 3, 3, 3))])
    _check(model, {"x": _x(1, 3, 8, 8)})


@pytest.mark.parametrize("activation", ["Relu", "LeakyRelu", "Clip"])
@pytest.mark.parametrize("opset", [9, 13])
def test_conv_bn_activation_fused(activation, opset):
    c = 6
    inits = [
        _init("W", _x(c, 3, 3, 3)),
        _init("B", _x(c)),
        _init("s", RNG.random(c) + 0.5),
        _init("b", _x(c)),
        _init("m", _x(c)),
        _init("v", RNG.random(c) + 0.2),
    ]
    inits = [_init(t.name, onnx.numpy_helper.to_array(t).astype(np.float32)) for t in inits]
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], kernel_shape=[3, 3], pads=[1] * 4),
        helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], epsilon=1e-3),
    ]
    if activation == "Relu":
        nodes.append(helper.make_node("Relu", ["n"], ["y"]))
    elif activation == "LeakyRelu":
        nodes.append(helper.make_node("LeakyRelu", ["n"], ["y"], alpha=0.2))
    elif opset < 11:
        nodes.append(helper.make_node("Clip", ["n"], ["y"], min=0.0, max=0.5))
    else:
        inits += [_init("lo", np.float32(0.0)), _init("hi", np.float32(0.5))]
        nodes.append(helper.make_node("Clip", ["n", "lo", "hi"], ["y"]))
    model = _model(nodes, [("x", (1, 3, 7, 7))], ("y", (1, c, 7, 7)), inits, opset)
    graph = _check(model, {"x": _x(1, 3, 7, 7)})
    assert [n.op for n in graph.nodes] == ["Conv"]  # BN folded, activation fused
    assert graph.nodes[0].attrs["activation"] == activation


@pytest.mark.parametrize(
    "op,count_include_pad", [("MaxPool", 0), ("AveragePool", 0), ("AveragePool", 1)]
)
@pytest.mark.parametrize("ceil_mode", [0, 1])
def test_pools(op, ceil_mode, count_include_pad):
    attrs = {
        "kernel_shape": [3, 3],
        "strides": [2, 2],
        "pads": [1, 0, 1, 1],
        "ceil_mode": ceil_mode,
    }
    if op == "AveragePool":
        attrs["count_include_pad"] = count_include_pad
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    h = w = 10
    oh = (h + 2 - 3 + (2 - 1 if ceil_mode else 0)) // 2 + 1
    ow = (w + 1 - 3 + (2 - 1 if ceil_mode else 0)) // 2 + 1
    model = _model([node], [("x", (2, 3, h, w))], ("y", (2, 3, oh, ow)), opset=13)
    _check(model, {"x": _x(2, 3, h, w)})


def test_dilated_maxpool_and_global_average_pool():
    nodes = [
        helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[2, 2], dilations=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["y"]),
    ]
    model = _model(nodes, [("x", (1, 4, 9, 9))], ("y", (1, 4, 1, 1)), opset=13)
    _check(model, {"x": _x(1, 4, 9, 9)})


@pytest.mark.parametrize("trans_a", [0, 1])
@pytest.mark.parametrize("trans_b", [0, 1])
def test_gemm(trans_a, trans_b):
    m, k, n = 3, 17, 11
    a_shape = (k, m) if trans_a else (m, k)
    b = _x(n, k) if trans_b else _x(k, n)
    node = helper.make_node(
        "Gemm", ["a", "B", "C"], ["y"], alpha=0.7, beta=1.3, transA=trans_a, transB=trans_b
    )
    model = _model(
        [node], [("a", a_shape)], ("y", (m, n)), [_init("B", b), _init("C", _x(n))], opset=13
    )
    _check(model, {"a": _x(*a_shape)})


def test_gemm_then_batchnorm_is_folded():
    nodes = [
        helper.make_node("Gemm", ["a", "B", "C"], ["g"], alpha=0.5, beta=2.0, transB=1),
        helper.make_node("BatchNormalization", ["g", "s", "b", "m", "v"], ["y"]),
    ]
    inits = [
        _init("B", _x(5, 7)),
        _init("C", _x(5)),
        _init("s", _x(5)),
        _init("b", _x(5)),
        _init("m", _x(5)),
        _init("v", (RNG.random(5) + 0.5).astype(np.float32)),
    ]
    model = _model(nodes, [("a", (2, 7))], ("y", (2, 5)), inits, opset=13)
    graph = _check(model, {"a": _x(2, 7)})
    assert [n.op for n in graph.nodes] == ["Gemm"]


def test_matmul_batched_broadcast():
    node = helper.make_node("MatMul", ["a", "B"], ["y"])
    model = _model(
        [node], [("a", (2, 3, 5, 7))], ("y", (2, 3, 5, 4)), [_init("B", _x(3, 7, 4))], opset=13
    )
    _check(model, {"a": _x(2, 3, 5, 7)})


@pytest.mark.parametrize("op", ["Relu", "Sigmoid", "Tanh", "LeakyRelu"])
def test_unary(op):
    attrs = {"alpha": 0.3} if op == "LeakyRelu" else {}
    model = _model(
        [helper.make_node(op, ["x"], ["y"], **attrs)],
        [("x", (2, 3, 4))],
        ("y", (2, 3, 4)),
        opset=13,
    )
    _check(model, {"x": _x(2, 3, 4) * 4})


@pytest.mark.parametrize("opset", [9, 11, 13])
def test_clip_standalone(opset):
    if opset < 11:
        node = helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.25)
        inits = []
    else:
        node = helper.make_node("Clip", ["x", "lo", "hi"], ["y"])
        inits = [_init("lo", np.float32(-0.5)), _init("hi", np.float32(0.25))]
    model = _model([node], [("x", (3, 5))], ("y", (3, 5)), inits, opset)
    _check(model, {"x": _x(3, 5)})


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize(
    "shapes",
    [
        ((2, 3, 4, 5), (2, 3, 4, 5)),
        ((2, 3, 4, 5), (3, 1, 1)),
        ((1, 3, 1, 5), (2, 1, 4, 1)),
        ((2, 3, 4, 5), ()),
    ],
)
def test_broadcasting_binary(op, shapes):
    a_shape, b_shape = shapes
    out = np.broadcast_shapes(a_shape, b_shape)
    b = _x(*b_shape) if b_shape else np.float32(RNG.standard_normal())
    if op == "Div":
        b = np.where(np.abs(b) < 0.1, 0.5, b).astype(np.float32)
    node = helper.make_node(op, ["a", "b"], ["y"])
    model = _model([node], [("a", a_shape)], ("y", out), [_init("b", b)], opset=13)
    _check(model, {"a": _x(*a_shape)})


def test_binary_with_two_runtime_inputs_and_sum():
    nodes = [
        helper.make_node("Mul", ["a", "b"], ["m"]),
        helper.make_node("Sum", ["a", "m", "c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "t",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3, 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [3, 1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4])],
        [_init("c", _x(4))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    _check(model, {"a": _x(2, 3, 4), "b": _x(3, 1)})


@pytest.mark.parametrize("opset", OPSETS)
def test_shape_ops_in_every_opset(opset):
    """Transpose, Flatten, Unsqueeze/Squeeze (axes attr or input), Reshape, Concat."""
    if opset >= 13:
        unsq = helper.make_node("Unsqueeze", ["t", "ax"], ["u"])
        sq = helper.make_node("Squeeze", ["u", "ax"], ["s"])
        extra = [_init("ax", np.array([1], np.int64))]
    else:
        unsq = helper.make_node("Unsqueeze", ["t"], ["u"], axes=[1])
        sq = helper.make_node("Squeeze", ["u"], ["s"], axes=[1])
        extra = []
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
        unsq,
        sq,
        helper.make_node("Flatten", ["s"], ["f"], axis=2),
        helper.make_node("Reshape", ["f", "shape"], ["r"]),
        helper.make_node("Concat", ["r", "r"], ["y"], axis=-1),
    ]
    inits = [_init("shape", np.array([2, -1, 6], np.int64)), *extra]
    model = _model(nodes, [("x", (2, 3, 4, 5))], ("y", (2, 10, 12)), inits, opset)
    _check(model, {"x": _x(2, 3, 4, 5)})


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("opset", [9, 11, 18])
def test_pad(mode, opset):
    pads = [0, 1, 2, 0, 0, 2, 1, 3]
    if opset < 11:
        node = helper.make_node("Pad", ["x"], ["y"], mode=mode, pads=pads, value=0.5)
        inits = []
    else:
        node = helper.make_node("Pad", ["x", "p", "v"], ["y"], mode=mode)
        inits = [_init("p", np.array(pads, np.int64)), _init("v", np.float32(0.5))]
    model = _model([node], [("x", (1, 3, 4, 5))], ("y", (1, 6, 7, 8)), inits, opset)
    _check(model, {"x": _x(1, 3, 4, 5)})


@pytest.mark.parametrize("opset,axis", [(9, 1), (11, 2), (11, -1), (13, 1), (13, -1)])
def test_softmax_semantics_per_opset(opset, axis):
    node = helper.make_node("Softmax", ["x"], ["y"], axis=axis)
    model = _model([node], [("x", (2, 3, 4))], ("y", (2, 3, 4)), opset=opset)
    _check(model, {"x": _x(2, 3, 4) * 3})


def test_lrn_and_dropout_and_identity():
    nodes = [
        helper.make_node("LRN", ["x"], ["l"], size=3, alpha=1e-3, beta=0.75, bias=2.0),
        helper.make_node("Dropout", ["l"], ["d"]),
        helper.make_node("Identity", ["d"], ["y"]),
    ]
    model = _model(nodes, [("x", (1, 6, 5, 5))], ("y", (1, 6, 5, 5)), opset=13)
    graph = _check(model, {"x": _x(1, 6, 5, 5)})
    assert [n.op for n in graph.nodes] == ["LRN"]


def test_standalone_batchnorm():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("BatchNormalization", ["r", "s", "b", "m", "v"], ["y"], epsilon=1e-3),
    ]
    inits = [
        _init("s", _x(3)),
        _init("b", _x(3)),
        _init("m", _x(3)),
        _init("v", (RNG.random(3) + 0.5).astype(np.float32)),
    ]
    model = _model(nodes, [("x", (2, 3, 4, 4))], ("y", (2, 3, 4, 4)), inits, opset=9)
    graph = _check(model, {"x": _x(2, 3, 4, 4)})
    assert "BatchNormalization" in graph.ops()


def test_constant_folding_of_shape_subgraphs():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
        helper.make_node(
            "ConstantOfShape",
            ["one"],
            ["ones"],
            value=onnx.numpy_helper.from_array(np.array([-1], np.int64)),
        ),
        helper.make_node("Concat", ["n1", "ones"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = [
        _init("zero", np.array(0, np.int64)),
        _init("ax", np.array([0], np.int64)),
        _init("one", np.array([1], np.int64)),
    ]
    model = _model(nodes, [("x", (2, 3, 4))], ("y", (2, 12)), inits, opset=13)
    graph = _check(model, {"x": _x(2, 3, 4)})
    assert [n.op for n in graph.nodes] == ["Reshape"]


def test_symbolic_batch_is_fixed_to_one():
    node = helper.make_node("Relu", ["x"], ["y"])
    model = _model([node], [("x", ("N", 3))], ("y", ("N", 3)), opset=13)
    graph = convert_onnx(model)
    assert graph.inputs == [("x", (1, 3))]


@pytest.mark.parametrize("op", ["Erf", "Max"])
def test_unsupported_op_names_op_and_node(op):
    node = helper.make_node(op, ["x"], ["y"], name="the_node")
    model = _model([node], [("x", (2, 3))], ("y", (2, 3)), opset=13)
    with pytest.raises(UnsupportedOpError, match=rf"{op}.*the_node.*Supported ops: .*Conv"):
        convert_onnx(model)


def test_symbolic_non_batch_dim_is_a_clear_error():
    node = helper.make_node("Relu", ["x"], ["y"])
    model = _model([node], [("x", (1, "L"))], ("y", (1, "L")), opset=13)
    with pytest.raises(ConversionError, match="symbolic dimension 'L'"):
        convert_onnx(model)
    assert convert_onnx(model, input_shapes={"x": (1, 7)}).inputs == [("x", (1, 7))]


def test_opset_out_of_range_is_rejected():
    node = helper.make_node("Relu", ["x"], ["y"])
    model = _model([node], [("x", (2,))], ("y", (2,)), opset=8)
    with pytest.raises(ConversionError, match="opset 8"):
        convert_onnx(model)


def test_garbage_is_not_an_onnx_model(tmp_path):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"\x00\x01 this is not protobuf" * 10)
    with pytest.raises(ConversionError):
        convert_onnx(path)
