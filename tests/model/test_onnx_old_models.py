"""Old and odd ONNX models: the onnx package's light model-zoo networks (IR 3, every initializer
also a graph input), Embedding-style Gather, Pad from an upgraded opset, and the size limits.

The light models ship with every weight as ``ConstantOfShape(0.02)``, which makes every logit
equal and the softmax output uniform whatever the converter does; the tests swap in seeded
random weights (still IR 3 initializers listed as graph inputs) so a wrong conversion shows.
Each model is compared with onnxruntime (one thread) at the converter tests' rtol 1e-4 /
atol 1e-5, on the input onnx's own backend runner uses (``arange(n) / n``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from flight.errors import ConfigError  # noqa: E402
from flight.model import ModelLimitError  # noqa: E402
from flight.model import load as load_model  # noqa: E402
from flight.model import save as save_model  # noqa: E402
from flight.model.executor import Model  # noqa: E402
from flight.model.format import Limits  # noqa: E402
from flight.model.onnx_import import (  # noqa: E402
    ConversionError,
    convert_onnx,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from onnx_models import LIGHT, light_model  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5


def _ort(model, feeds: dict[str, np.ndarray]) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, feeds)[0]


def _flight(graph, feeds: dict[str, np.ndarray]) -> np.ndarray:
    model = Model(graph, copies=1)
    return model.replica(0).run(feeds)[model.output_names[0]].copy()


def _light_model(name: str, seed: int = 0):
    """The light model with seeded random weights, still in the IR 3 layout."""
    model = light_model(name, seed)
    assert model.ir_version < 4
    return model


def _data_input(model) -> tuple[str, np.ndarray]:
    inits = {t.name for t in model.graph.initializer}
    (value,) = [v for v in model.graph.input if v.name not in inits]
    shape = tuple(d.dim_value or 1 for d in value.type.tensor_type.shape.dim)
    n = int(np.prod(shape))
    return value.name, (np.arange(n).reshape(shape) / n).astype(np.float32)


def _check_light(name: str, **convert) -> None:
    model = _light_model(name)
    input_name, x = _data_input(model)
    graph = convert_onnx(model, **convert)
    assert [n for n, _ in graph.inputs] == [input_name]
    want = _ort(model, {input_name: x})
    got = _flight(graph, {input_name: x})
    assert got.shape == want.shape
    assert np.ptp(want) > 1e-4  # the random weights make the output informative
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "name", ["squeezenet", "resnet50", "shufflenet", "inception_v1", "inception_v2", "densenet121"]
)
def test_light_model_matches_onnxruntime(name: str) -> None:
    _check_light(name)


# --- IR < 4: initializers that are graph inputs ------------------------------------------------
def _ir3_matmul():
    """y = x @ w + b with w and b initializers that are also graph inputs (IR 3)."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal((3,)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"], name="mm"),
            helper.make_node("Add", ["xw", "b"], ["y"], name="add"),
        ],
        "ir3",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [4, 3]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 9)])
    model.ir_version = 3
    return model, w, b


def test_ir3_initializer_inputs_are_constants_by_default() -> None:
    model, w, b = _ir3_matmul()
    graph = convert_onnx(model)
    assert [n for n, _ in graph.inputs] == ["x"]
    x = np.random.default_rng(4).standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(_flight(graph, {"x": x}), x @ w + b, rtol=RTOL, atol=ATOL)


def test_ir3_keep_inputs_leaves_a_fed_input() -> None:
    model, w, _ = _ir3_matmul()
    graph = convert_onnx(model, keep_inputs=["b"])
    assert [n for n, _ in graph.inputs] == ["x", "b"]
    assert "b" not in graph.tensors
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4)).astype(np.float32)
    b2 = rng.standard_normal((3,)).astype(np.float32)
    # onnxruntime (like the IR 3 spec) refuses to feed an initializer: numpy is the reference
    np.testing.assert_allclose(_flight(graph, {"x": x, "b": b2}), x @ w + b2, rtol=RTOL, atol=ATOL)


def test_keep_inputs_must_name_an_initializer_input() -> None:
    model, _, _ = _ir3_matmul()
    with pytest.raises(ConversionError, match=r"keep_inputs \['x'\]"):
        convert_onnx(model, keep_inputs=["x"])


@pytest.mark.parametrize("name", ["squeezenet", "resnet50", "shufflenet"])
def test_shipped_light_model_matches_its_reference_output(name: str) -> None:
    """The file as shipped (weights folded from ConstantOfShape, IR 3) against the expected
    output stored next to it (computed by onnx on the same input)."""
    model = onnx.load(str(LIGHT / f"light_{name}.onnx"))
    input_name, x = _data_input(model)
    expected = numpy_helper.to_array(onnx.load_tensor(str(LIGHT / f"light_{name}_output_0.pb")))
    got = _flight(convert_onnx(model), {input_name: x})
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


# --- pytorch-converted operator models (opset 6, IR 3) -----------------------------------------
CONVERTED = Path(onnx.__file__).parent / "backend" / "test" / "data" / "pytorch-converted"


def _converted(name: str):
    """The model and its first test data set (inputs, expected output)."""
    model = onnx.load(str(CONVERTED / name / "model.onnx"))
    data = CONVERTED / name / "test_data_set_0"
    x = numpy_helper.to_array(onnx.load_tensor(str(data / "input_0.pb")))
    y = numpy_helper.to_array(onnx.load_tensor(str(data / "output_0.pb")))
    return model, x, y


@pytest.mark.parametrize("opset", [11, 13, 18])
@pytest.mark.parametrize(
    "name",
    ["test_ConstantPad2d", "test_ReflectionPad2d", "test_ReplicationPad2d", "test_ZeroPad2d"],
)
def test_pad_upgraded_from_opset_6(name: str, opset: int) -> None:
    """Upgrading moves the pads into an initializer that is not a graph input (still IR 3)."""
    from onnx import version_converter

    model, x, y = _converted(name)
    upgraded = version_converter.convert_version(model, opset)
    assert upgraded.ir_version < 4
    assert {t.name for t in upgraded.graph.initializer} - {v.name for v in upgraded.graph.input}
    got = _flight(convert_onnx(upgraded), {upgraded.graph.input[0].name: x})
    np.testing.assert_allclose(got, y, rtol=RTOL, atol=ATOL)


def test_embedding_on_an_integer_input_converts_to_a_runtime_gather() -> None:
    """Its indices are the int64 graph input: kept as such, read by the canonical Gather
    (tests/model/test_onnx_embedding_3d.py checks it runs and matches)."""
    from onnx import version_converter

    model, _, _ = _converted("test_Embedding")
    graph = convert_onnx(version_converter.convert_version(model, 13))
    assert [n.op for n in graph.nodes] == ["Gather"]
    assert graph.input_dtypes == {graph.inputs[0][0]: "int64"}


# --- Gather with constant indices --------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "axis", "indices"),
    [
        ((5, 3), 0, [4, 0, 0, 2]),  # Embedding-style: rows of a table
        ((1, 6, 4), 1, [[1, -1], [0, 3]]),  # 2-D indices, a negative one
        ((2, 3, 7), -1, [6, 2]),  # the last axis: no Transposes
        ((2, 5, 3, 4), 1, 3),  # a scalar index drops the axis
    ],
)
def test_gather_with_constant_indices_matches_onnxruntime(shape, axis, indices) -> None:
    index = np.asarray(indices, dtype=np.int64)
    out_shape = np.take(np.zeros(shape), index, axis=axis).shape
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["r"], name="relu"),
            helper.make_node("Gather", ["r", "idx"], ["y"], name="gather", axis=axis),
        ],
        "gather",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))],
        [numpy_helper.from_array(index, "idx")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    x = np.random.default_rng(6).standard_normal(shape).astype(np.float32)
    want = _ort(model, {"x": x})
    got = _flight(convert_onnx(model), {"x": x})
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)  # a one-hot selection is exact


def test_gather_index_out_of_range_is_refused() -> None:
    graph = helper.make_graph(
        [helper.make_node("Gather", ["x", "idx"], ["y"], name="gather", axis=1)],
        "gather",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 1])],
        [numpy_helper.from_array(np.array([3], dtype=np.int64), "idx")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    with pytest.raises(ConversionError, match=r"indices outside \[-3, 3\) on axis 1"):
        convert_onnx(model)


# --- limits: settable by the caller and the mission; a refusal says how to raise it ------------
def _small_graph():
    """A Gemm whose weight is 64 KiB."""
    rng = np.random.default_rng(8)
    w = rng.standard_normal((128, 128)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc")],
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 128])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 128])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


def _assert_says_how_to_raise(error: ModelLimitError, limit: str) -> None:
    assert error.limit == limit
    message = str(error)
    assert f"{limit}=" in message and "limits=" in message and f"Limits({limit}=" in message
    assert "max_model_bytes" in message  # the mission key


def test_converter_refuses_tensors_over_its_limits_and_says_how_to_raise() -> None:
    model = _small_graph()
    with pytest.raises(ModelLimitError) as caught:
        convert_onnx(model, limits=Limits(max_tensor_bytes=32 * 1024))
    _assert_says_how_to_raise(caught.value, "max_tensor_bytes")
    with pytest.raises(ModelLimitError) as caught:
        convert_onnx(model, limits=Limits(max_total_bytes=32 * 1024))
    _assert_says_how_to_raise(caught.value, "max_total_bytes")
    convert_onnx(model, limits=Limits(max_tensor_bytes=64 * 1024, max_total_bytes=64 * 1024))


def test_save_and_load_take_limits(tmp_path: Path) -> None:
    graph = convert_onnx(_small_graph())
    small = Limits.for_model_bytes(32 * 1024)
    path = tmp_path / "small.flm"
    with pytest.raises(ModelLimitError):
        save_model(graph, path, limits=small)
    assert not path.exists()
    save_model(graph, path)
    with pytest.raises(ModelLimitError) as caught:
        load_model(path, copies=1, limits=small)
    _assert_says_how_to_raise(caught.value, "max_file_bytes")
    size = path.stat().st_size
    model = load_model(path, copies=1, limits=Limits.for_model_bytes(size))
    assert model.output_names == ["y"]


def test_limits_for_model_bytes() -> None:
    limits = Limits.for_model_bytes(1 << 30)
    assert (limits.max_file_bytes, limits.max_tensor_bytes, limits.max_total_bytes) == (
        1 << 30,
        1 << 30,
        1 << 30,
    )
    assert limits.max_elements == 1 << 28 and limits.max_nodes == Limits().max_nodes
    assert Limits.for_model_bytes(8 << 30).max_elements == 2 << 30
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ConfigError, match="model_bytes"):
            Limits.for_model_bytes(bad)


def _mission(extra: str) -> str:
    return f"""
[mission]
name = "limits"
[schedule]
minor_frame_ms = 50
minor_frames_per_major = 4
[[partition]]
name = "classifier"
job = "model"
model = "digits_cnn.flm"
redundancy = "none"
{extra}
"""


def test_mission_max_model_bytes_reaches_the_job_loader() -> None:
    from flight.jobs import ModelJob
    from flight.mission import parse_mission

    default = parse_mission(_mission("")).partition("classifier")
    assert default.max_model_bytes is None
    ModelJob(default, 4096)  # the shipped demo model loads under the defaults
    tight = parse_mission(_mission("max_model_bytes = 4096")).partition("classifier")
    assert tight.max_model_bytes == 4096
    with pytest.raises(ModelLimitError) as caught:
        ModelJob(tight, 4096)
    _assert_says_how_to_raise(caught.value, "max_file_bytes")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("0", "out of range 1 .. 4294967296"),
        (str((1 << 32) + 1), "out of range"),
        ('"1GiB"', "must be an integer"),
        ("true", "must be an integer"),
    ],
)
def test_mission_max_model_bytes_is_validated(value: str, why: str) -> None:
    from flight.mission import parse_mission

    with pytest.raises(ConfigError, match=f"partition 'classifier': max_model_bytes .*{why}"):
        parse_mission(_mission(f"max_model_bytes = {value}"))


# --- the large light models: convert, save, load and run with a raised limit -------------------
@pytest.mark.slow
@pytest.mark.parametrize("name", ["bvlc_alexnet", "vgg19", "zfnet512"])
def test_large_light_model_runs_with_a_raised_limit(name: str, tmp_path: Path) -> None:
    """Refused under the default limits, naming the limit; converted, saved, loaded and run
    with ``Limits.for_model_bytes``, matching onnxruntime (random weights, as above)."""
    model = _light_model(name)
    with pytest.raises(ModelLimitError) as caught:
        convert_onnx(model)
    _assert_says_how_to_raise(caught.value, "max_tensor_bytes")
    limits = Limits.for_model_bytes(1 << 30)
    graph = convert_onnx(model, limits=limits)
    path = tmp_path / f"{name}.flm"
    save_model(graph, path, limits=limits)
    del graph
    assert path.stat().st_size > 128 << 20
    with pytest.raises(ModelLimitError):
        load_model(path, copies=1)
    flight_model = load_model(path, copies=1, limits=limits)
    input_name, x = _data_input(model)
    want = _ort(model, {input_name: x})
    got = flight_model.replica(0).run({input_name: x})[flight_model.output_names[0]]
    assert np.ptp(want) > 1e-4
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)
