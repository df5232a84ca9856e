"""Integer graph inputs (ONNX Embedding: Gather by run-time indices) and 3-D Conv / pooling.

Checked against the onnx package's pytorch-converted tests (stored outputs and onnxruntime) and
against onnxruntime on models built with onnx.helper; the boundary checks of integer inputs
(dtype kind, index range, nothing runs on bad input); and TMR bit-identity. Tolerances are the
converter tests' rtol 1e-4, atol 1e-5; a Gather is a copy, so it must match exactly.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper, version_converter  # noqa: E402

from flight.kernels.shape import gather  # noqa: E402
from flight.model import format as flm  # noqa: E402
from flight.model import io, ops  # noqa: E402
from flight.model.executor import Model, ModelError, ModelInputError  # noqa: E402
from flight.model.graph import Graph, Node  # noqa: E402
from flight.model.onnx_import import UnsupportedOpError, convert_onnx  # noqa: E402
from flight.model.shapes import MAX_GATHER_ROWS, ShapeError  # noqa: E402
from flight.redundancy import RedundantRunner  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from onnx_models import ort_run  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
CORPUS = Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted"
EMBEDDING = ["test_Embedding", "test_Embedding_sparse"]
THREE_D = sorted(
    p.name
    for pattern in ("test_Conv3d*", "test_MaxPool3d*", "test_AvgPool3d*")
    for p in CORPUS.glob(pattern)
)
RNG = np.random.default_rng(11)


def _corpus(name: str) -> tuple[onnx.ModelProto, np.ndarray, np.ndarray]:
    """A pytorch-converted test (opset 6, upgraded as a user would) with its stored data."""
    model = version_converter.convert_version(onnx.load(str(CORPUS / name / "model.onnx")), 13)
    data = CORPUS / name / "test_data_set_0"
    x, y = (
        numpy_helper.to_array(onnx.load_tensor(str(data / f)))
        for f in ("input_0.pb", "output_0.pb")
    )
    return model, x, y


def _via_file(graph: Graph, tmp_path: Path, copies: int = 1) -> Model:
    """Through a .flm file, as a board gets it."""
    path = tmp_path / "m.flm"
    io.save(graph, path)
    return io.load(path, copies=copies)


def _embedding(tmp_path: Path, copies: int = 1) -> tuple[Model, onnx.ModelProto, np.ndarray]:
    model, x, _ = _corpus("test_Embedding")
    return _via_file(convert_onnx(model), tmp_path, copies), model, x


# --- Embedding: integer inputs ------------------------------------------------------------------
def test_the_corpus_has_the_embedding_and_3d_tests():
    assert all((CORPUS / n / "model.onnx").exists() for n in EMBEDDING)
    assert len(THREE_D) == 13


@pytest.mark.parametrize("name", EMBEDDING)
def test_embedding_matches_stored_output_and_onnxruntime_exactly(name, tmp_path):
    model, x, y = _corpus(name)
    assert x.dtype == np.int64
    flight_model = _via_file(convert_onnx(model), tmp_path)
    got = flight_model.run(x)
    np.testing.assert_array_equal(got, y)
    np.testing.assert_array_equal(got, ort_run(model, x))


def test_the_integer_input_keeps_its_dtype_in_the_file_and_the_model(tmp_path):
    model, _, _ = _corpus("test_Embedding")
    graph = convert_onnx(model)
    assert [n.op for n in graph.nodes] == ["Gather"] and graph.input_dtypes == {"0": "int64"}
    path = tmp_path / "m.flm"
    io.save(graph, path)
    info = flm.info(flm.load(path))
    assert info["inputs"] == [{"name": "0", "dtype": "int64", "shape": [1, 4]}]
    flight_model = io.load(path, copies=1)
    assert flight_model.input_dtypes == {"0": "int64"}
    assert flight_model.summary()["input_dtypes"] == {"0": "int64"}
    assert flight_model.index_bounds == {"0": 4}  # the table has 4 rows


def test_negative_indices_wrap_as_onnx_says(tmp_path):
    flight_model, model, _ = _embedding(tmp_path)
    x = np.array([[-4, -1, 3, 0]], np.int64)
    got = flight_model.run(x)
    np.testing.assert_array_equal(got, ort_run(model, x))
    table = flight_model.graph.tensors[flight_model.graph.nodes[0].inputs[0]]
    np.testing.assert_array_equal(got[0], table[[0, 3, 3, 0]])


@pytest.mark.parametrize("bad", [4, -5, 2**40])
def test_an_index_out_of_the_table_is_refused_before_anything_runs(tmp_path, bad):
    flight_model, _, _ = _embedding(tmp_path)
    replica = flight_model.replica(0)
    good = np.array([[0, 1, 2, 3]], np.int64)
    before = replica.run(good)[flight_model.output_names[0]].copy()
    feeds_before = replica.buffer("0").copy()
    with pytest.raises(ModelInputError, match=rf"input '0': index {bad} is outside \[-4, 4\)"):
        replica.run(np.array([[0, bad, 1, 2]], np.int64))
    # nothing was copied in or computed
    assert replica.buffer("0").tobytes() == feeds_before.tobytes()
    assert replica.run(good)[flight_model.output_names[0]].tobytes() == before.tobytes()


def test_int32_indices_are_accepted_too(tmp_path):
    flight_model, model, _ = _embedding(tmp_path)
    x = np.array([[3, 2, 1, 0]], np.int32)
    np.testing.assert_array_equal(flight_model.run(x), ort_run(model, x.astype(np.int64)))


def test_a_float_array_for_an_integer_input_is_refused(tmp_path):
    flight_model, _, _ = _embedding(tmp_path)
    with pytest.raises(ModelInputError, match=r"input '0' takes int64 indices, got a float32"):
        flight_model.run(np.zeros((1, 4), np.float32))
    with pytest.raises(ModelInputError, match="got a bool"):
        flight_model.run(np.zeros((1, 4), bool))


def test_an_integer_array_for_a_float_input_is_refused():
    graph = convert_onnx(_single("Relu", [1, 3]))
    flight_model = Model(graph, copies=1)
    with pytest.raises(ModelInputError, match=r"input 'x' takes float32, got a int64 array"):
        flight_model.run(np.zeros((1, 3), np.int64))
    flight_model.run(np.zeros((1, 3), np.float64))  # a float of another width is still fine


def _out(rank: int) -> onnx.ValueInfoProto:
    """A float graph output of ``rank`` with symbolic dims (shape inference fills them)."""
    return helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{i}" for i in range(rank)])


def _single(op: str, shape: list[int], **attrs) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node(op, ["x"], ["y"], name="n", **attrs)],
        "single",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [_out(len(shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


def _gather_model(
    data_shape: list[int], idx_shape: list[int], axis: int, data_is_input: bool = False
) -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info("idx", TensorProto.INT64, idx_shape)]
    inits = []
    if data_is_input:
        inputs.insert(0, helper.make_tensor_value_info("data", TensorProto.FLOAT, data_shape))
    else:
        table = RNG.standard_normal(data_shape).astype(np.float32)
        inits.append(numpy_helper.from_array(table, "data"))
    graph = helper.make_graph(
        [helper.make_node("Gather", ["data", "idx"], ["y"], name="g", axis=axis)],
        "gather",
        inputs,
        [_out(len(data_shape) - 1 + len(idx_shape))],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


@pytest.mark.parametrize(
    ("data_shape", "idx", "axis"),
    [
        ((6, 3), [[5, 0], [-6, 2]], 0),  # 2-D indices into a table
        ((2, 5, 3), [4, -1, 0], 1),  # a middle axis
        ((2, 3, 7), [[6], [0]], 2),  # the last axis
        ((9,), [8, -9, 3], 0),  # a 1-D table
    ],
)
def test_runtime_gather_on_any_axis_matches_onnxruntime(data_shape, idx, axis):
    model = _gather_model(list(data_shape), list(np.shape(idx)), axis)
    idx = np.asarray(idx, np.int64)
    graph = convert_onnx(model)
    assert [n.op for n in graph.nodes] == ["Gather"]
    got = Model(graph, copies=1).run(idx)
    np.testing.assert_array_equal(got, ort_run(model, idx))


def test_two_gathers_on_one_index_input_are_bounded_by_the_smaller_table():
    big, small = (RNG.standard_normal(s).astype(np.float32) for s in ((8, 2), (3, 2)))
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["big", "idx"], ["a"], name="ga"),
            helper.make_node("Gather", ["small", "idx"], ["b"], name="gb"),
            helper.make_node("Add", ["a", "b"], ["y"], name="add"),
        ],
        "two",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])],
        [numpy_helper.from_array(big, "big"), numpy_helper.from_array(small, "small")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    flight_model = Model(convert_onnx(model), copies=1)
    assert flight_model.index_bounds == {"idx": 3}
    x = np.array([2, -3], np.int64)
    np.testing.assert_array_equal(flight_model.run(x), ort_run(model, x))
    with pytest.raises(ModelInputError, match=r"index 3 is outside \[-3, 3\)"):
        flight_model.run(np.array([3, 0], np.int64))


def test_the_converter_refuses_a_table_too_big_for_exact_float32_indices():
    model = _gather_model([MAX_GATHER_ROWS + 1], [2], 0, data_is_input=True)
    with pytest.raises(UnsupportedOpError, match=r"op Gather .*at most 16777216 \(2\*\*24\)"):
        convert_onnx(model)
    convert_onnx(_gather_model([MAX_GATHER_ROWS], [2], 0, data_is_input=True))  # the limit


def test_the_shape_rule_refuses_a_table_too_big_for_exact_float32_indices():
    node = Node("g", "Gather", ["data", "idx"], ["y"], {"axis": 0})
    ops.check_node(node, [(MAX_GATHER_ROWS, 2), (3,)], (3, 2))
    with pytest.raises(ShapeError, match="2\\*\\*24"):
        ops.check_node(node, [(MAX_GATHER_ROWS + 1, 2), (3,)], (3, 2))


def test_an_integer_input_read_by_anything_but_gather_indices_is_refused():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["idx"], ["y"], name="relu")],
        "bad",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(UnsupportedOpError, match=r"op Relu .*INT64"):
        convert_onnx(model)


def _canonical(nodes: list[Node], input_dtypes: dict[str, str], out=(2, 2)) -> Graph:
    table = np.arange(6, dtype=np.float32).reshape(3, 2)
    return Graph(
        name="hand",
        inputs=[("idx", (2,))],
        outputs=[("y", out)],
        nodes=nodes,
        shapes={"y": out},
        tensors={"table": table},
        input_dtypes=input_dtypes,
    )


def test_the_executor_refuses_an_integer_input_that_is_not_gather_indices():
    """A hostile or broken file: the loader must not let an integer input reach a float op."""
    relu = Node("r", "Relu", ["idx"], ["y"], {})
    with pytest.raises(ModelError, match=r"input 'idx' \(int64\) is read by node 'r' \(Relu\)"):
        Model(_canonical([relu], {"idx": "int64"}, out=(2,)), copies=1)
    gather_node = Node("g", "Gather", ["table", "idx"], ["y"], {"axis": 0})
    with pytest.raises(ModelError, match="inputs are float32, or"):
        Model(_canonical([gather_node], {"idx": "float64"}), copies=1)
    Model(_canonical([gather_node], {"idx": "int64"}), copies=1)  # the one allowed reader


def test_a_corrupted_index_yields_nan_never_a_read_outside_the_table():
    """Past the boundary check an index can only go bad by an upset in the arena: the kernel
    makes that slice NaN (the replica loses the vote) instead of reading out of bounds."""
    data = np.arange(12, dtype=np.float32).reshape(4, 3)
    indices = np.array([1.0, 2.5, 4.0, -5.0, np.nan, -1.0], np.float32)
    out = np.zeros((6, 3), np.float32)
    gather(data, indices, out, 0)
    np.testing.assert_array_equal(out[0], data[1])
    np.testing.assert_array_equal(out[5], data[3])
    assert np.isnan(out[1:5]).all()


# --- 3-D Conv and pooling -------------------------------------------------------------------------
@pytest.mark.parametrize("name", THREE_D)
def test_pytorch_converted_3d_matches_stored_output_and_onnxruntime(name, tmp_path):
    model, x, y = _corpus(name)
    graph = convert_onnx(model)
    assert any(len(graph.shapes[n.outputs[0]]) == 5 for n in graph.nodes)
    got = _via_file(graph, tmp_path).run(x)
    np.testing.assert_allclose(got, y, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got, ort_run(model, x), rtol=RTOL, atol=ATOL)


def _weight(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(RNG.standard_normal(shape).astype(np.float32), name)


def _conv3d_model(x_shape, c_out, kernel, *, bn=False, relu=False, **attrs) -> onnx.ModelProto:
    group = attrs.get("group", 1)
    inits = [_weight("W", c_out, x_shape[1] // group, *kernel), _weight("B", c_out)]
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", **attrs)]
    last = "c"
    if bn:
        inits += [_weight(n, c_out) for n in ("s", "b", "m")]
        inits.append(numpy_helper.from_array(RNG.random(c_out).astype(np.float32) + 0.5, "v"))
        nodes.append(helper.make_node("BatchNormalization", [last, "s", "b", "m", "v"], ["bn"]))
        last = "bn"
    if relu:
        nodes.append(helper.make_node("Relu", [last], ["r"]))
        last = "r"
    nodes.append(helper.make_node("Identity", [last], ["y"]))
    graph = helper.make_graph(
        nodes,
        "conv3d",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [_out(len(x_shape))],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


@pytest.mark.parametrize(
    ("x_shape", "c_out", "kernel", "attrs"),
    [
        ((1, 3, 5, 6, 7), 4, (3, 2, 3), {"pads": [1, 0, 2, 0, 1, 1]}),  # asymmetric pads
        ((2, 4, 6, 5, 5), 6, (2, 3, 3), {"group": 2, "strides": [2, 1, 2]}),  # batch, groups
        ((1, 2, 7, 7, 7), 3, (3, 3, 3), {"dilations": [2, 1, 3], "pads": [2, 1, 3, 2, 1, 3]}),
        ((1, 3, 5, 4, 6), 3, (3, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2, 2]}),
        ((1, 4, 3, 4, 5), 4, (1, 1, 1), {"group": 4}),  # depthwise 1x1x1
    ],
)
def test_conv3d_attributes_match_onnxruntime(x_shape, c_out, kernel, attrs):
    model = _conv3d_model(x_shape, c_out, kernel, **attrs)
    x = RNG.standard_normal(x_shape).astype(np.float32)
    got = Model(convert_onnx(model), copies=1).run(x)
    np.testing.assert_allclose(got, ort_run(model, x), rtol=RTOL, atol=ATOL)


def test_conv3d_with_batchnorm_and_relu_folds_fuses_and_matches_onnxruntime():
    model = _conv3d_model((1, 3, 4, 5, 6), 5, (3, 3, 3), bn=True, relu=True, pads=[1] * 6)
    graph = convert_onnx(model)
    assert [n.op for n in graph.nodes] == ["Conv"] and graph.nodes[0].attrs["activation"] == "Relu"
    x = RNG.standard_normal((1, 3, 4, 5, 6)).astype(np.float32)
    got = Model(graph, copies=1).run(x)
    np.testing.assert_allclose(got, ort_run(model, x), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    ("op", "attrs"),
    [
        ("MaxPool", {"kernel_shape": [2, 3, 2], "strides": [2, 2, 1], "pads": [1, 1, 0, 0, 1, 1]}),
        ("MaxPool", {"kernel_shape": [3, 2, 2], "dilations": [2, 1, 2]}),
        ("MaxPool", {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2], "ceil_mode": 1}),
        ("AveragePool", {"kernel_shape": [3, 3, 2], "pads": [1, 1, 1, 1, 1, 0]}),
        (
            "AveragePool",
            {"kernel_shape": [3, 3, 2], "pads": [1, 1, 1, 1, 1, 0], "count_include_pad": 1},
        ),
        ("AveragePool", {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2], "ceil_mode": 1}),
        ("AveragePool", {"kernel_shape": [3, 2, 3], "auto_pad": "SAME_LOWER"}),
    ],
)
def test_pool3d_attributes_match_onnxruntime(op, attrs):
    model = _single(op, [1, 2, 5, 6, 7], **attrs)
    x = RNG.standard_normal((1, 2, 5, 6, 7)).astype(np.float32)
    got = Model(convert_onnx(model), copies=1).run(x)
    np.testing.assert_allclose(got, ort_run(model, x), rtol=RTOL, atol=ATOL)


def test_dilated_3d_average_pool_is_refused_naming_the_op():
    model = _single("AveragePool", [1, 2, 5, 6, 7], kernel_shape=[2, 2, 2], dilations=[2, 1, 1])
    model.opset_import[0].version = 19  # AveragePool has dilations from opset 19
    with pytest.raises(UnsupportedOpError, match=r"op AveragePool .*dilated AveragePool"):
        convert_onnx(model)


def test_4d_spatial_conv_is_refused_naming_op_and_rank():
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W"], ["y"], name="conv")],
        "conv4d",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3, 3, 3])],
        [_out(6)],
        [_weight("W", 2, 2, 1, 1, 1, 1)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(UnsupportedOpError, match=r"op Conv .*4-D Conv \(input rank 6\)"):
        convert_onnx(model)


# --- TMR --------------------------------------------------------------------------------------
def _cnn_3d() -> onnx.ModelProto:
    inits = [_weight("W1", 4, 2, 3, 3, 3), _weight("B1", 4), _weight("W2", 3, 4, 2, 2, 2)]
    nodes = [
        helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], pads=[1] * 6),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2, 2], strides=[2, 2, 2]),
        helper.make_node("Conv", ["p1", "W2"], ["c2"], pads=[1, 0, 1, 0, 1, 0]),
        helper.make_node("AveragePool", ["c2"], ["a2"], kernel_shape=[2, 2, 2]),
        helper.make_node("GlobalAveragePool", ["a2"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn3d",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 6, 8, 8])],
        [_out(5)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


def _replica_outputs(flight_model: Model, warm: list, x) -> list[bytes]:
    """Each replica first runs a different input (its workspace and arena then hold different
    leftovers), then all run ``x``: the outputs' bytes."""
    name = flight_model.output_names[0]
    for i, w in enumerate(warm):
        flight_model.replica(i).run(w)
    return [flight_model.replica(i).run(x)[name].tobytes() for i in range(3)]


def test_3d_cnn_under_tmr_is_bit_identical_and_matches_onnxruntime():
    model = _cnn_3d()
    graph = convert_onnx(model)
    assert [n.op for n in graph.nodes] == [
        "Conv",
        "MaxPool",
        "Conv",
        "AveragePool",
        "GlobalAveragePool",
    ]
    flight_model = Model(graph, copies=3)
    warm = [RNG.standard_normal((1, 2, 6, 8, 8)).astype(np.float32) * (i + 1) for i in range(3)]
    x = RNG.standard_normal((1, 2, 6, 8, 8)).astype(np.float32)
    outputs = _replica_outputs(flight_model, warm, x)
    assert outputs[0] == outputs[1] == outputs[2]
    result = RedundantRunner(flight_model, "tmr").run(x)
    assert result.delivered and result.corrected == 0 and result.no_majority == 0
    assert result.output.tobytes() == outputs[0]
    np.testing.assert_allclose(result.output, ort_run(model, x), rtol=RTOL, atol=ATOL)


def test_embedding_under_tmr_is_bit_identical_and_exact(tmp_path):
    flight_model, model, x = _embedding(tmp_path, copies=3)
    warm = [np.array([[i, 3 - i, -1, 0]], np.int64) for i in range(3)]
    outputs = _replica_outputs(flight_model, warm, x)
    assert outputs[0] == outputs[1] == outputs[2]
    result = RedundantRunner(flight_model, "tmr").run(x)
    assert result.delivered and result.corrected == 0
    np.testing.assert_array_equal(result.output, ort_run(model, x))
    with pytest.raises(ModelInputError, match="index 9"):
        RedundantRunner(flight_model, "tmr").run(np.array([[0, 9, 0, 0]], np.int64))
