"""The model file format: round trips, a pinned check value, and a loader that rejects every
truncated, corrupted or hostile file with a specific error (never a crash or a raw exception).

Hostile files are built here with msgpack directly and wrapped in an envelope written from the
format description (not with the module's own writer), so the tests also pin the layout.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import tracemalloc
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.crc import crc32c
from flight.errors import ConfigError, FlightError
from flight.model import format as fmt
from flight.model.format import (
    GraphDef,
    Limits,
    ModelChecksumError,
    ModelCycleError,
    ModelDanglingError,
    ModelDuplicateNameError,
    ModelFile,
    ModelFormatError,
    ModelLimitError,
    ModelMagicError,
    ModelSchemaError,
    ModelTruncatedError,
    ModelUnknownOpError,
    ModelVersionError,
    NodeDef,
    ValueInfo,
    dumps,
    info,
    load,
    save,
    topological_order,
    validate_graph,
)

# ---------------------------------------------------------------------------------------------
# A small model that uses every dtype, every attribute kind, an absent optional input and an
# absent optional output.


def _model() -> ModelFile:
    rng = np.random.default_rng(7)
    tensors = {
        "w": rng.standard_normal((2, 1, 3, 3)).astype(np.float32),
        "b": np.array([0.5, -0.5], np.float32),
        "hi": np.array(6.0, np.float32),  # rank 0
        "shape": np.array([1, 32], np.int64),
        "f64": np.array([np.pi, -0.0, np.inf], np.float64),
        "i32": np.array([-(2**31), 0, 2**31 - 1], np.int32),
        "i8": np.array([[-128, 127], [0, -1]], np.int8),
        "u8": np.arange(5, dtype=np.uint8),
        "mask": np.array([[True, False, True], [False, False, True]]),
        "empty": np.zeros((0, 3), np.float32),
        "nan": np.array([0x7FC00001], np.uint32).view(np.float32),  # a NaN with a payload
    }
    nodes = [
        NodeDef(
            "conv",
            "Conv",
            ["x", "w", "b"],
            ["c"],
            {
                "kernel_shape": [3, 3],
                "pads": [1, 1, 1, 1],
                "strides": [1, 1],
                "group": 1,
                "auto_pad": "NOTSET",
                "activation": "",
            },
        ),
        NodeDef("clip", "Clip", ["c", "", "hi"], ["r"]),
        NodeDef("const", "Constant", [], ["k"], {"value": np.full((1, 32), 0.5, np.float32)}),
        NodeDef("flatten", "Reshape", ["r", "shape"], ["flat"]),
        NodeDef(
            "add",
            "Add",
            ["flat", "k"],
            ["y"],
            {
                "alpha": 0.25,
                "blob": b"\x00\xff",
                "names": ["a", "b"],
                "floats": [0.5, -1.0],
                "ints": [-(2**63), 2**63 - 1],
                "empty": [],
            },
        ),
        NodeDef("drop", "Dropout", ["y"], ["z", ""]),
    ]
    graph = GraphDef(
        name="tiny",
        inputs=[ValueInfo("x", "float32", (1, 1, 4, 4))],
        outputs=[ValueInfo("z", "float32", (1, 32))],
        nodes=nodes,
        value_info={
            name: ValueInfo(name, "float32", shape)
            for name, shape in [
                ("c", (1, 2, 4, 4)),
                ("r", (1, 2, 4, 4)),
                ("k", (1, 32)),
                ("flat", (1, 32)),
                ("y", (1, 32)),
            ]
        },
    )
    metadata = {"dataset": "eurosat", "accuracy": "0.91", "ünïcode": "✓"}
    return ModelFile(graph=graph, tensors=tensors, metadata=metadata, producer="test 1.0")


MODEL_BYTES = dumps(_model())


def _canonical(value: Any) -> Any:
    """Arrays become (dtype, shape, bytes), so models compare bit-exactly with ``==``."""
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, NodeDef | GraphDef | ValueInfo | ModelFile):
        return {k: _canonical(v) for k, v in vars(value).items()}
    if isinstance(value, float) and value != value:
        return ("nan", struct.pack("<d", value))
    return value


def _assert_same(a: ModelFile, b: ModelFile) -> None:
    assert _canonical(a) == _canonical(b)
    assert list(a.tensors) == list(b.tensors)  # file order kept


# ---------------------------------------------------------------------------------------------
# Hand-made envelopes and bodies


def _wrap(body: bytes) -> bytes:
    """The version-1 envelope, written from the format description."""
    return b"".join(
        [
            b"\x84",
            msgpack.packb("magic"),
            msgpack.packb("FLIGHT-MODEL"),
            msgpack.packb("version"),
            b"\x01",
            msgpack.packb("body"),
            b"\xc6" + struct.pack(">I", len(body)),
            body,
            msgpack.packb("crc32c"),
            b"\xce" + struct.pack(">I", crc32c(body)),
        ]
    )


def _body_of(data: bytes) -> bytes:
    return msgpack.unpackb(data)["body"]


def _doc() -> dict:
    """The valid model's body as plain msgpack data, to be made evil."""
    return msgpack.unpackb(_body_of(MODEL_BYTES))


def _load_doc(doc: Any, **kwargs: Any) -> ModelFile:
    return load(_wrap(msgpack.packb(doc, use_bin_type=True)), **kwargs)


def _set(*path_and_value: Any) -> Callable[[dict], None]:
    *path, value = path_and_value

    def mutate(doc: dict) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return mutate


def _del(*path: Any) -> Callable[[dict], None]:
    def mutate(doc: dict) -> None:
        target = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return mutate


def _raises_specific(data: bytes, expected: type | tuple[type, ...], **kwargs: Any) -> None:
    with pytest.raises(expected) as caught:
        load(data, **kwargs)
    assert type(caught.value) is not ModelFormatError  # the base is never raised directly


# ---------------------------------------------------------------------------------------------
# Round trips


DTYPE_OF = {name: array.dtype for name, array in _model().tensors.items()}


def test_round_trip_through_bytes():
    model = _model()
    loaded = load(MODEL_BYTES)
    _assert_same(loaded, model)
    for name, array in loaded.tensors.items():
        assert array.dtype == DTYPE_OF[name] and not array.flags.writeable
    assert loaded.graph.nodes[1].inputs == ("c", "", "hi")
    assert loaded.graph.nodes[5].outputs == ("z", "")
    value = loaded.graph.nodes[2].attrs["value"]
    assert isinstance(value, np.ndarray) and value.shape == (1, 32) and value[0, 0] == 0.5


def test_round_trip_through_path_and_file_objects(tmp_path):
    path = tmp_path / "model.flm"
    save(path, _model())
    assert path.read_bytes() == MODEL_BYTES
    assert os.listdir(tmp_path) == ["model.flm"]  # no temp file left behind
    _assert_same(load(path), _model())
    _assert_same(load(str(path)), _model())
    buffer = io.BytesIO()
    save(buffer, _model())
    assert buffer.getvalue() == MODEL_BYTES
    buffer.seek(0)
    _assert_same(load(buffer), _model())
    _assert_same(load(bytearray(MODEL_BYTES)), _model())
    _assert_same(load(memoryview(b"xx" + MODEL_BYTES)[2:]), _model())


def test_encoding_is_deterministic_and_stable_through_load():
    assert dumps(_model()) == MODEL_BYTES
    assert dumps(load(MODEL_BYTES)) == MODEL_BYTES


def test_writer_normalizes_byte_order_numpy_scalars_and_tuples():
    model = _model()
    model.tensors["w"] = model.tensors["w"].astype(">f4")  # big-endian in, little-endian out
    model.tensors["b"] = [0.5, -0.5]  # array-like: np.asarray gives float64
    nodes = list(model.graph.nodes)
    nodes[0] = NodeDef(
        "conv", "Conv", ("x", "w", "b"), ("c",), {"group": np.int64(1), "pads": (1, 1, 1, 1)}
    )
    model.graph = GraphDef(
        model.graph.name, model.graph.inputs, model.graph.outputs, nodes, model.graph.value_info
    )
    loaded = load(dumps(model))
    assert loaded.tensors["w"].dtype == np.dtype("<f4")
    assert loaded.tensors["w"].tobytes() == _model().tensors["w"].tobytes()
    assert loaded.tensors["b"].dtype == np.float64
    assert loaded.graph.nodes[0].attrs == {"group": 1, "pads": [1, 1, 1, 1]}
    shape = ValueInfo("x", "float32", np.array([1, 1, 4, 4])).shape
    assert shape == (1, 1, 4, 4) and all(type(d) is int for d in shape)
    with pytest.raises(TypeError):
        ValueInfo("x", "float32", ("N", 3))  # shapes are static


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.tensors.__setitem__("h", np.zeros(2, np.float16)),  # unsupported dtype
        lambda m: m.tensors.__setitem__("o", np.array([object()])),
        lambda m: m.metadata.__setitem__("n", 1),  # metadata values are str
        lambda m: m.graph.nodes[0].attrs.__setitem__("flag", True),  # bool is not an int
        lambda m: m.graph.nodes[0].attrs.__setitem__("none", None),
        lambda m: m.graph.nodes[0].attrs.__setitem__("set", {1, 2}),
        lambda m: m.graph.value_info.__setitem__("c", ValueInfo("r", "float32", (1,))),
    ],
)
def test_writer_refuses_what_the_loader_would_refuse(mutate, tmp_path):
    model = _model()
    mutate(model)
    with pytest.raises(ModelSchemaError):
        dumps(model)
    with pytest.raises(ModelSchemaError):
        save(tmp_path / "bad.flm", model)
    assert os.listdir(tmp_path) == []


def test_writer_refuses_a_graph_with_a_cycle(tmp_path):
    model = _model()
    nodes = list(model.graph.nodes)
    nodes[0] = dataclasses.replace(nodes[0], inputs=("z", "w", "b"))  # conv reads the output
    model.graph = dataclasses.replace(model.graph, nodes=nodes)
    with pytest.raises(ModelCycleError):
        save(tmp_path / "m.flm", model)
    assert os.listdir(tmp_path) == []


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.flm"
    path.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fmt.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save(path, _model())
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["model.flm"]


# ---------------------------------------------------------------------------------------------
# Check value: a fixed tiny model's exact bytes


def _fixed_model() -> ModelFile:
    graph = GraphDef(
        name="mul",
        inputs=[ValueInfo("x", "float32", (2,))],
        outputs=[ValueInfo("y", "float32", (2,))],
        nodes=[NodeDef("mul", "Mul", ["x", "w"], ["y"])],
    )
    w = np.array([1.0, -2.0], np.float32)
    return ModelFile(graph, {"w": w}, {"k": "v"}, "flight-test")


FIXED_LENGTH = 312
FIXED_FILE_CRC = 0x8E57F8BD


def test_check_value_of_a_fixed_tiny_model():
    data = dumps(_fixed_model())
    assert data.startswith(b"\x84\xa5magic\xacFLIGHT-MODEL\xa7version\x01\xa4body\xc6")
    assert (len(data), crc32c(data)) == (FIXED_LENGTH, FIXED_FILE_CRC)
    envelope = msgpack.unpackb(data)  # any msgpack reader sees the documented map
    assert list(envelope) == ["magic", "version", "body", "crc32c"]
    assert envelope["magic"] == "FLIGHT-MODEL" and envelope["version"] == 1
    assert envelope["crc32c"] == crc32c(envelope["body"])
    body = msgpack.unpackb(envelope["body"])
    assert list(body) == ["producer", "graph", "tensors", "metadata"]
    assert body["tensors"] == [
        {
            "name": "w",
            "dtype": "float32",
            "shape": [2],
            "data": b"\x00\x00\x80\x3f\x00\x00\x00\xc0",
            "crc32c": crc32c(b"\x00\x00\x80\x3f\x00\x00\x00\xc0"),
        }
    ]
    assert body["graph"]["nodes"] == [
        {"name": "mul", "op": "Mul", "inputs": ["x", "w"], "outputs": ["y"], "attrs": {}}
    ]
    assert data == _wrap(envelope["body"])  # the envelope helper of these tests agrees
    _assert_same(load(data), _fixed_model())


# ---------------------------------------------------------------------------------------------
# Graph order and summary


def _chain(order: list[int], edges: list[tuple[int, int]]) -> GraphDef:
    """Nodes n0..nk listed in ``order``; node j reads node i's output for each edge (i, j)."""
    inputs: dict[int, list[str]] = {j: [] for j in order}
    for i, j in edges:
        inputs[j].append(f"v{i}")
    nodes = [NodeDef(f"n{j}", "Add", inputs[j] or ["x"], [f"v{j}"]) for j in order]
    return GraphDef("g", [ValueInfo("x", "float32", (1,))], [], nodes)


def _is_topological(graph: GraphDef, order: list[int]) -> bool:
    position = {graph.nodes[i].outputs[0]: rank for rank, i in enumerate(order)}
    return sorted(order) == list(range(len(graph.nodes))) and all(
        position[name] < position[graph.nodes[i].outputs[0]]
        for i in order
        for name in graph.nodes[i].inputs
        if name in position
    )


def test_topological_order_keeps_a_sorted_file_and_sorts_an_unsorted_one():
    edges = [(0, 1), (0, 2), (1, 3), (2, 3), (3, 4)]  # a diamond and a tail
    assert topological_order(_chain([0, 1, 2, 3, 4], edges)) == [0, 1, 2, 3, 4]
    shuffled = _chain([4, 3, 2, 1, 0], edges)
    order = topological_order(shuffled)
    assert _is_topological(shuffled, order)
    # n1 and n2 are ready together: the one earlier in the file (n2) goes first
    assert [shuffled.nodes[i].name for i in order] == ["n0", "n2", "n1", "n3", "n4"]


@given(st.permutations(range(8)), st.sets(st.tuples(st.integers(0, 7), st.integers(0, 7))))
@settings(max_examples=60)
def test_topological_order_or_cycle(order, pairs):
    edges = sorted(pairs)
    graph = _chain(list(order), edges)
    if _has_cycle(edges):
        with pytest.raises(ModelCycleError):
            topological_order(graph)
    else:
        assert _is_topological(graph, topological_order(graph))


def _has_cycle(edges: list[tuple[int, int]]) -> bool:
    reach = {i: {j for a, j in edges if a == i} for i in range(8)}
    for _ in range(8):
        reach = {i: s | {k for j in s for k in reach[j]} for i, s in reach.items()}
    return any(i in s for i, s in reach.items())


def test_validate_graph_returns_an_order_for_in_memory_models():
    model = _model()
    assert validate_graph(model.graph, model.tensors) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(ModelDanglingError):
        validate_graph(model.graph)  # without the tensors, "w" is defined nowhere


def test_info_summarizes():
    summary = info(load(MODEL_BYTES))
    model = _model()
    assert summary["producer"] == "test 1.0" and summary["graph"] == "tiny"
    assert summary["nodes"] == 6 and summary["tensors"] == len(model.tensors)
    assert summary["ops"] == {
        "Add": 1, "Clip": 1, "Constant": 1, "Conv": 1, "Dropout": 1, "Reshape": 1
    }  # fmt: skip
    assert summary["parameters"] == sum(t.size for t in model.tensors.values()) == 45
    assert summary["parameter_bytes"] == sum(t.nbytes for t in model.tensors.values())
    assert summary["inputs"] == [{"name": "x", "dtype": "float32", "shape": [1, 1, 4, 4]}]
    assert summary["outputs"] == [{"name": "z", "dtype": "float32", "shape": [1, 32]}]
    assert summary["metadata"] == model.metadata


def test_limits_are_validated_and_errors_fit_the_tree():
    with pytest.raises(ConfigError):
        Limits(max_rank=0)
    with pytest.raises(ConfigError):
        Limits(max_nodes=True)
    for error in (ModelTruncatedError, ModelChecksumError, ModelCycleError, ModelLimitError):
        assert issubclass(error, ModelFormatError)
        assert issubclass(error, FlightError) and issubclass(error, ValueError)


def test_long_chains_sort_without_recursion_and_load():
    """Kahn's algorithm is iterative: a 5000-node chain listed backwards sorts, a 5000-node
    ring is a cycle, and a 1000-node model round-trips through a file."""
    count = 5000
    edges = [(i, i + 1) for i in range(count - 1)]
    backwards = _chain(list(range(count))[::-1], edges)
    assert topological_order(backwards) == list(range(count))[::-1]
    ring = _chain(list(range(count)), [*edges, (count - 1, 0)])
    with pytest.raises(ModelCycleError):
        topological_order(ring)
    graph = _chain(list(range(1000))[::-1], edges[:999])
    graph = dataclasses.replace(graph, outputs=[ValueInfo("v999", "float32", (1,))])
    loaded = load(dumps(ModelFile(graph)))
    assert [loaded.graph.nodes[i].name for i in topological_order(loaded.graph)][:2] == [
        "n0",
        "n1",
    ]


# ---------------------------------------------------------------------------------------------
# Truncation and corruption

# ~200 examples by default, more under the "thorough" hypothesis profile (tests/conftest.py).
EXAMPLES = max(200, settings.default.max_examples)

N = len(_body_of(MODEL_BYTES))


def _flip_error(position: int) -> type | tuple[type, ...]:
    """Which error a changed byte at ``position`` must give, by envelope region."""
    if position < 20:
        return ModelMagicError
    if position == 28:
        return ModelVersionError
    if 35 <= position < 39:  # body length: too long, too short or absurd
        return (ModelTruncatedError, ModelSchemaError, ModelLimitError)
    if 39 <= position < 39 + N or position >= 47 + N:  # body, or the stored CRC
        return ModelChecksumError
    return ModelSchemaError  # key bytes and type bytes of the envelope map


@given(st.integers(0, len(MODEL_BYTES) - 1))
@settings(max_examples=EXAMPLES)
def test_every_truncation_is_reported_as_truncation(length):
    _raises_specific(MODEL_BYTES[:length], ModelTruncatedError)


@given(st.integers(0, len(MODEL_BYTES) - 1), st.integers(1, 255))
@settings(max_examples=EXAMPLES)
def test_any_changed_byte_is_rejected_with_the_right_error(position, xor):
    data = bytearray(MODEL_BYTES)
    data[position] ^= xor
    _raises_specific(bytes(data), _flip_error(position))


def test_every_changed_byte_of_the_envelope_is_rejected():
    """Exhaustive over the 51 envelope bytes and all 255 other values: no upset in the
    envelope can make a file load (the canonical layout is what makes this true)."""
    envelope = [*range(39), *range(39 + N, len(MODEL_BYTES))]
    for position in envelope:
        expected = _flip_error(position)
        data = bytearray(MODEL_BYTES)
        for value in range(256):
            if value == MODEL_BYTES[position]:
                continue
            data[position] = value
            with pytest.raises(expected):
                load(data)


def test_corrupted_tensor_behind_a_valid_envelope_fails_its_own_crc():
    doc = _doc()
    data = bytearray(doc["tensors"][0]["data"])
    data[5] ^= 0x10
    doc["tensors"][0]["data"] = bytes(data)
    with pytest.raises(ModelChecksumError, match="'w'"):
        _load_doc(doc)


@given(st.integers(0, N - 1), st.integers(1, 255))
@settings(max_examples=EXAMPLES)
def test_changed_body_byte_behind_a_valid_crc_never_escapes_the_error_tree(position, xor):
    """Evil edits past the envelope CRC: rejected specifically, or a self-consistent model."""
    body = bytearray(_body_of(MODEL_BYTES))
    body[position] ^= xor
    try:
        model = load(_wrap(bytes(body)))
    except ModelFormatError as exc:
        assert type(exc) is not ModelFormatError
    else:
        assert load(dumps(model)) is not None  # whatever loaded is a valid model


_msgpack_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8)
)
_msgpack_values = st.recursive(
    _msgpack_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(_msgpack_values)
@settings(max_examples=EXAMPLES // 2)
def test_random_documents_as_body_are_rejected(doc):
    with pytest.raises(ModelSchemaError):
        _load_doc(doc)


@given(st.binary(max_size=64))
@settings(max_examples=EXAMPLES // 2)
def test_random_bytes_as_body_are_rejected(body):
    with pytest.raises(ModelFormatError) as caught:
        load(_wrap(body))
    assert type(caught.value) is not ModelFormatError


# ---------------------------------------------------------------------------------------------
# Hostile content behind a valid CRC


def _data(index: int, data: bytes) -> Callable[[dict], None]:
    """Replace a tensor's data and its CRC, so what is tested is past the CRC."""

    def mutate(doc: dict) -> None:
        doc["tensors"][index].update(data=data, crc32c=crc32c(data))

    return mutate


_NODE = ("graph", "nodes")
_TENSOR = ("tensors",)

HOSTILE = {
    # wrong types and unknown or missing fields
    "producer not str": (_set("producer", 5), ModelSchemaError),
    "graph name nil": (_set("graph", "name", None), ModelSchemaError),
    "nodes a map": (_set(*_NODE, {}), ModelSchemaError),
    "tensors a map": (_set("tensors", {}), ModelSchemaError),
    "node input not str": (_set(*_NODE, 0, "inputs", 0, 1), ModelSchemaError),
    "node inputs a str": (_set(*_NODE, 0, "inputs", "x"), ModelSchemaError),
    "empty node name": (_set(*_NODE, 0, "name", ""), ModelSchemaError),
    "empty op": (_set(*_NODE, 0, "op", ""), ModelSchemaError),
    "int map key": (_set(*_NODE, 0, "attrs", {1: 2}), ModelSchemaError),
    "crc negative": (_set(*_TENSOR, 0, "crc32c", -1), ModelSchemaError),
    "crc too big": (_set(*_TENSOR, 0, "crc32c", 2**32), ModelSchemaError),
    "crc a str": (_set(*_TENSOR, 0, "crc32c", "0"), ModelSchemaError),
    "data a str": (_set(*_TENSOR, 0, "data", "abc"), ModelSchemaError),
    "dtype an int": (_set(*_TENSOR, 0, "dtype", 3), ModelSchemaError),
    "unknown dtype": (_set(*_TENSOR, 0, "dtype", "float16"), ModelSchemaError),
    "unknown input dtype": (_set("graph", "inputs", 0, "dtype", "complex64"), ModelSchemaError),
    "float dim": (_set("graph", "inputs", 0, "shape", [1.0]), ModelSchemaError),
    "bool dim": (_set("graph", "inputs", 0, "shape", [True]), ModelSchemaError),
    "symbolic dim": (_set("graph", "inputs", 0, "shape", ["N", 3]), ModelSchemaError),
    "metadata value int": (_set("metadata", "k", 1), ModelSchemaError),
    "metadata a list": (_set("metadata", []), ModelSchemaError),
    "value_info spec a list": (_set("graph", "value_info", "c", [1]), ModelSchemaError),
    "unknown body field": (_set("signature", b"x"), ModelSchemaError),
    "unknown graph field": (_set("graph", "opset", 13), ModelSchemaError),
    "unknown node field": (_set(*_NODE, 0, "domain", ""), ModelSchemaError),
    "unknown tensor field": (_set(*_TENSOR, 0, "offset", 0), ModelSchemaError),
    "missing attrs": (_del(*_NODE, 0, "attrs"), ModelSchemaError),
    "missing metadata": (_del("metadata"), ModelSchemaError),
    "missing tensor crc": (_del(*_TENSOR, 0, "crc32c"), ModelSchemaError),
    # attribute values
    "attr bool": (_set(*_NODE, 0, "attrs", "group", True), ModelSchemaError),
    "attr nil": (_set(*_NODE, 0, "attrs", "group", None), ModelSchemaError),
    "attr int beyond int64": (_set(*_NODE, 0, "attrs", "group", 2**64 - 1), ModelSchemaError),
    "attr list beyond int64": (_set(*_NODE, 0, "attrs", "pads", [2**63]), ModelSchemaError),
    "attr mixed list": (_set(*_NODE, 0, "attrs", "pads", [1, "a"]), ModelSchemaError),
    "attr int and float list": (_set(*_NODE, 0, "attrs", "pads", [1, 1.0]), ModelSchemaError),
    "attr nested list": (_set(*_NODE, 0, "attrs", "pads", [[1]]), ModelSchemaError),
    "attr bytes list": (_set(*_NODE, 0, "attrs", "pads", [b"a"]), ModelSchemaError),
    "attr tensor extra field": (
        _set(*_NODE, 2, "attrs", "value", "crc32c", 0),
        ModelSchemaError,
    ),
    "attr tensor short data": (_set(*_NODE, 2, "attrs", "value", "data", b"\0"), ModelSchemaError),
    "attr tensor huge": (
        _set(*_NODE, 2, "attrs", "value", "shape", [1 << 24, 1 << 4]),
        ModelLimitError,
    ),
    # sizes and shapes
    "negative tensor dim": (_set(*_TENSOR, 1, "shape", [-2]), ModelSchemaError),
    "negative input dim": (_set("graph", "inputs", 0, "shape", [1, -1]), ModelSchemaError),
    "shape and data disagree": (_set(*_TENSOR, 1, "shape", [3]), ModelSchemaError),
    "data too long": (_data(1, b"\0" * 12), ModelSchemaError),
    "data too short": (_data(0, b"\0" * 71), ModelSchemaError),
    "huge dim": (_set("graph", "inputs", 0, "shape", [2**40]), ModelLimitError),
    "dim beyond int64": (_set("graph", "inputs", 0, "shape", [2**64 - 1]), ModelSchemaError),
    "huge element count": (_set("graph", "inputs", 0, "shape", [1 << 20] * 8), ModelLimitError),
    "rank 9": (_set("graph", "inputs", 0, "shape", [1] * 9), ModelLimitError),
    "huge tensor, tiny data": (_set(*_TENSOR, 1, "shape", [1 << 24, 1 << 4]), ModelLimitError),
    "bool byte 2": (_data(8, b"\x01\x02\x00\x00\x00\x01"), ModelSchemaError),
    # graph structure
    "cycle": (_set(*_NODE, 0, "inputs", 0, "y"), ModelCycleError),
    "self loop": (_set(*_NODE, 1, "inputs", 0, "r"), ModelCycleError),
    "dangling input": (_set(*_NODE, 3, "inputs", 0, "nope"), ModelDanglingError),
    "unproduced output": (_set("graph", "outputs", 0, "name", "nope"), ModelDanglingError),
    "stale value_info": (
        _set("graph", "value_info", "nope", {"dtype": "float32", "shape": [1]}),
        ModelDanglingError,
    ),
    "duplicate tensor": (_set(*_TENSOR, 1, "name", "w"), ModelDuplicateNameError),
    "tensor named like input": (_set(*_TENSOR, 0, "name", "x"), ModelDuplicateNameError),
    "output produced twice": (_set(*_NODE, 1, "outputs", ["c"]), ModelDuplicateNameError),
    "output overwrites tensor": (_set(*_NODE, 1, "outputs", ["w"]), ModelDuplicateNameError),
    "duplicate node name": (_set(*_NODE, 1, "name", "conv"), ModelDuplicateNameError),
    "graph output twice": (
        _set("graph", "outputs", [{"name": "z", "dtype": "float32", "shape": [1, 32]}] * 2),
        ModelDuplicateNameError,
    ),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_content_is_rejected_specifically(case):
    mutate, expected = HOSTILE[case]
    doc = _doc()
    mutate(doc)
    with pytest.raises(expected) as caught:
        _load_doc(doc)
    assert type(caught.value) is expected


def test_unknown_op_is_rejected_only_when_ops_are_restricted():
    ops = {"Conv", "Clip", "Constant", "Reshape", "Add", "Dropout"}
    assert load(MODEL_BYTES, allowed_ops=ops) is not None
    assert load(MODEL_BYTES) is not None
    with pytest.raises(ModelUnknownOpError, match="Dropout"):
        load(MODEL_BYTES, allowed_ops=ops - {"Dropout"})


def test_non_map_top_levels_and_foreign_files_are_not_models():
    for data in (msgpack.packb([1, 2, 3]), msgpack.packb("FLIGHT-MODEL"), b"\x89PNG\r\n\x1a\n"):
        _raises_specific(data, ModelMagicError)
    _raises_specific(b"", ModelTruncatedError)
    _raises_specific(_wrap(msgpack.packb([1])), ModelSchemaError)  # body is not a map
    _raises_specific(_wrap(msgpack.packb(None)), ModelSchemaError)


def test_envelope_variants_are_rejected():
    body = _body_of(MODEL_BYTES)
    good = {"magic": "FLIGHT-MODEL", "version": 1, "body": body, "crc32c": crc32c(body)}
    wrong_magic = MODEL_BYTES.replace(b"FLIGHT-MODEL", b"FLIGHT-MODEX", 1)
    _raises_specific(wrong_magic, ModelMagicError)
    _raises_specific(msgpack.packb({**good, "version": 2}), ModelVersionError)
    version_as_uint8 = MODEL_BYTES[:28] + b"\xcc\x01" + MODEL_BYTES[29:]
    _raises_specific(version_as_uint8, ModelVersionError)
    reordered = {k: good[k] for k in ("magic", "version", "crc32c", "body")}
    _raises_specific(msgpack.packb(reordered), ModelSchemaError)
    _raises_specific(msgpack.packb({**good, "extra": 1}), ModelMagicError)  # map of 5
    _raises_specific(MODEL_BYTES + b"\x00", ModelSchemaError)  # stray bytes after the map
    body_as_str = MODEL_BYTES[:34] + b"\xdb" + MODEL_BYTES[35:]
    _raises_specific(body_as_str, ModelSchemaError)


def _map(*pairs: tuple[bytes, bytes]) -> bytes:
    return bytes([0x80 | len(pairs)]) + b"".join(k + v for k, v in pairs)


PRODUCER = msgpack.packb("producer")

RAW_BODIES = {
    "deep nesting": (_map((PRODUCER, b"\x91" * 100_000 + b"\x00")), ModelLimitError),
    "2 GB bin": (_map((PRODUCER, b"\xc6\x80\x00\x00\x00" + b"\0" * 16)), ModelLimitError),
    "4 G-entry array": (_map((PRODUCER, b"\xdd\xff\xff\xff\xff\x00")), ModelLimitError),
    "4 G-entry map": (_map((PRODUCER, b"\xdf\xff\xff\xff\xff\x00")), ModelLimitError),
    "1 GB str": (_map((PRODUCER, b"\xdb\x40\x00\x00\x00abc")), ModelLimitError),
    "ext type": (_map((PRODUCER, b"\xd4\x01\x00")), ModelSchemaError),
    "reserved byte c1": (_map((PRODUCER, b"\xc1")), ModelSchemaError),
    "invalid utf-8": (_map((PRODUCER, b"\xa2\xff\xfe")), ModelSchemaError),
    "int key": (_map((b"\x01", b"\x02")), ModelSchemaError),
    "bin key": (_map((b"\xc4\x01a", b"\x02")), ModelSchemaError),
    "body ends early": (_map((PRODUCER, b"\xa5abc")), ModelTruncatedError),
    "array ends early": (_map((PRODUCER, b"\x93\x01")), ModelTruncatedError),
    "stray bytes": (_map((PRODUCER, b"\xa1a")) + b"\x00", ModelSchemaError),
}


@pytest.mark.parametrize("case", RAW_BODIES)
def test_hostile_msgpack_is_rejected_before_allocating(case):
    body, expected = RAW_BODIES[case]
    data = _wrap(body)
    tracemalloc.start()
    try:
        with pytest.raises(expected) as caught:
            load(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert type(caught.value) is expected
    assert peak < 2 * len(data) + (1 << 20)


def test_declared_sizes_beyond_the_data_are_truncation_even_with_raised_limits():
    big = Limits(max_tensor_bytes=2**32, max_str_len=2**32, max_container_len=2**32)
    for value in (b"\xc6\x80\x00\x00\x00", b"\xdd\xff\xff\xff\xff", b"\xdb\x40\x00\x00\x00"):
        tracemalloc.start()
        try:
            with pytest.raises(ModelTruncatedError):
                load(_wrap(_map((PRODUCER, value + b"\0" * 8))), limits=big)
            assert tracemalloc.get_traced_memory()[1] < 1 << 20
        finally:
            tracemalloc.stop()


def test_deep_nesting_beyond_msgpack_own_stack_is_still_a_model_error():
    body = _map((PRODUCER, b"\x91" * 5000 + b"\x00"))
    with pytest.raises((ModelSchemaError, ModelLimitError)):
        load(_wrap(body), limits=Limits(max_depth=10_000))


def test_declared_2gb_body_is_rejected_before_allocating():
    header = MODEL_BYTES[:35] + struct.pack(">I", 2**31)  # up to the bin 32 type byte
    data = header + b"\0" * 64
    tracemalloc.start()
    try:
        _raises_specific(data, ModelLimitError)
        _raises_specific(data, ModelTruncatedError, limits=Limits(max_file_bytes=2**32))
        assert tracemalloc.get_traced_memory()[1] < 1 << 20
    finally:
        tracemalloc.stop()


def test_duplicate_map_keys_cannot_hide_a_second_value():
    """A map of 5 pairs whose 5th repeats "producer" would decode as a valid 4-key map."""
    doc = _doc()
    pairs = [*doc.items(), ("producer", "evil")]
    body = bytes([0x80 | 5]) + b"".join(
        msgpack.packb(k) + msgpack.packb(v, use_bin_type=True) for k, v in pairs
    )
    _raises_specific(_wrap(body), ModelSchemaError)


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        (Limits(max_nodes=5), ModelLimitError),
        (Limits(max_tensors=3), ModelLimitError),
        (Limits(max_objects=100), ModelLimitError),
        (Limits(max_file_bytes=1000), ModelLimitError),
        (Limits(max_total_bytes=200), ModelLimitError),
        (Limits(max_tensor_bytes=64), ModelLimitError),
        (Limits(max_str_len=4), ModelLimitError),
        (Limits(max_container_len=5), ModelLimitError),
        (Limits(max_depth=6), ModelLimitError),
        (Limits(max_rank=3), ModelLimitError),
        (Limits(max_dim=16), ModelLimitError),
        (Limits(max_elements=31), ModelLimitError),
        (Limits(max_depth=7), None),  # what version 1 needs
    ],
)
def test_limits_are_enforced(limits, expected, tmp_path):
    path = tmp_path / "m.flm"
    path.write_bytes(MODEL_BYTES)
    for source in (MODEL_BYTES, path, io.BytesIO(MODEL_BYTES)):
        if expected is None:
            assert load(source, limits=limits) is not None
        else:
            with pytest.raises(expected):
                load(source, limits=limits)
