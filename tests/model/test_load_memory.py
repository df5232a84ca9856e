"""Loading a large model needs about the memory of what it keeps, not several times the file.

The loader reads a path once into its own buffer and decodes tensors as views of it (msgpack
parses a skeleton of the body with references in place of big bins); ``io.load`` from a path
moves each weight into protected memory and releases its pages, and reads golden tensors back
from the file for reloads. These tests pin the memory effect (peak RSS of a fresh process,
no timing), that every refusal still happens on the new paths, and the golden reload.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flight.memory import ProtectedRegion
from flight.model import format as flm
from flight.model import io
from flight.model.format import (
    GraphDef,
    ModelChecksumError,
    ModelFile,
    ModelFormatError,
    ModelMagicError,
    ModelSchemaError,
    ModelTruncatedError,
    ModelVersionError,
    NodeDef,
    ValueInfo,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import bench_load

MiB = 1 << 20


# ---------------------------------------------------------------------------------------------
# Peak memory (a fresh process per load; VmHWM, reset after warm-up)


@pytest.fixture(scope="module")
def big_model(tmp_path_factory) -> Path:
    """A 72 MiB model: a 64 MiB Gemm weight, an 8 MiB one and a Conv."""
    return bench_load.save_synthetic(tmp_path_factory.mktemp("big") / "big.flm")


def test_format_load_peaks_near_the_file_size(big_model):
    """Before: msgpack copied every tensor out of the file buffer (2.0x)."""
    result = bench_load.measure(big_model, "format")
    assert result["file_mib"] > 64
    assert result["ratio"] < 1.25, result


def test_one_copy_model_load_peaks_near_its_weights(big_model):
    """Before: file buffer, msgpack's copies, an image, the region and a golden image (3.0x)."""
    result = bench_load.measure(big_model, "copies1")
    assert result["ratio"] < 1.3, result


@pytest.mark.slow
def test_three_copy_model_load_peaks_near_three_weights(big_model):
    """Before: 5.0x; the three copies are the point, the rest is overhead."""
    result = bench_load.measure(big_model, "copies3")
    assert result["ratio"] < 3.3, result


# ---------------------------------------------------------------------------------------------
# A small model whose tensors and one attribute are big enough to go by reference


def _model() -> ModelFile:
    rng = np.random.default_rng(1)
    tensors = {
        "w": rng.standard_normal((4, 2, 3, 3)).astype(np.float32),  # 288 bytes: by reference
        "b": np.array([0.5, -0.5, 1.0, 2.0], np.float32),  # 16 bytes: by reference
        "s": np.array([1.0, 2.0], np.float32),  # 8 bytes: copied by msgpack
        "mask": np.array([True, False] * 10),  # bool, 20 bytes
    }
    nodes = [
        NodeDef("conv", "Conv", ["x", "w", "b"], ["c"], {"blob": bytes(range(40))}),
        NodeDef("mul", "Mul", ["c", "s"], ["y"], {"k": np.arange(8, dtype=np.float32)}),
    ]
    graph = GraphDef(
        name="refs",
        inputs=[ValueInfo("x", "float32", (1, 2, 4, 4))],
        outputs=[ValueInfo("y", "float32", (1, 4, 4, 4))],
        nodes=nodes,
        value_info={"c": ValueInfo("c", "float32", (1, 4, 4, 4))},
    )
    return ModelFile(graph=graph, tensors=tensors, metadata={"m": "x" * 40}, producer="t")


MODEL_BYTES = flm.dumps(_model())
BODY_START, BODY_END = 39, len(MODEL_BYTES) - 12


def _walk(value: Any) -> Any:
    """Every leaf of a loaded model (to find a reference object that leaked out)."""
    if isinstance(value, dict):
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk(item)
    elif isinstance(value, ModelFile | GraphDef | NodeDef | ValueInfo):
        yield from _walk(vars(value))
    else:
        yield value


def _leaves_are_plain(model: ModelFile) -> bool:
    allowed = (int, float, str, bytes, np.ndarray, type(None))
    return all(isinstance(leaf, allowed) for leaf in _walk(model))


@pytest.mark.parametrize("source", ["path", "bytes", "bytearray", "file"])
def test_every_source_loads_the_same_model_with_read_only_tensors(tmp_path, source):
    path = tmp_path / "m.flm"
    path.write_bytes(MODEL_BYTES)
    arg = {
        "path": path,
        "bytes": MODEL_BYTES,
        "bytearray": bytearray(MODEL_BYTES),
        "file": None,
    }[source]
    if source == "file":
        with path.open("rb") as handle:
            model = flm.load(handle)
    else:
        model = flm.load(arg)
    if source == "bytearray":
        arg[BODY_START:BODY_END] = bytes(BODY_END - BODY_START)  # the caller's buffer changes
    want = _model()
    assert flm.dumps(model) == MODEL_BYTES
    for name, tensor in want.tensors.items():
        assert (
            np.array_equal(model.tensors[name], tensor) and not model.tensors[name].flags.writeable
        )
        with pytest.raises(ValueError):
            model.tensors[name].flags.writeable = True
    assert model.graph.nodes[0].attrs["blob"] == bytes(range(40))
    assert _leaves_are_plain(model)


def test_locations_point_at_each_big_tensor_and_read_tensor_proves_it(tmp_path):
    path = tmp_path / "m.flm"
    path.write_bytes(MODEL_BYTES)
    loaded = flm.load_file(path)
    assert sorted(loaded.locations) == ["b", "mask", "w"]  # "s" is under 16 bytes
    for name, location in loaded.locations.items():
        assert np.array_equal(flm.read_tensor(path, location), _model().tensors[name])
    location = loaded.locations["w"]
    data = bytearray(MODEL_BYTES)
    data[location.offset + 7] ^= 0x04  # the file changed since it was loaded
    path.write_bytes(data)
    with pytest.raises(ModelChecksumError):
        flm.read_tensor(path, location)
    path.write_bytes(MODEL_BYTES[: location.offset + 10])
    with pytest.raises(ModelTruncatedError):
        flm.read_tensor(path, location)


def _expected(position: int) -> type | tuple[type, ...]:
    if position < 20:
        return ModelMagicError
    if position == 28:
        return ModelVersionError
    if 35 <= position < 39:
        return (ModelTruncatedError, ModelSchemaError, flm.ModelLimitError)
    if BODY_START <= position < BODY_END or position >= BODY_END + 8:
        return ModelChecksumError
    return ModelSchemaError


def test_every_truncation_and_changed_byte_of_a_file_on_disk_is_refused(tmp_path):
    """Exhaustive over the file, through the path reader (its own buffer, views into it)."""
    path = tmp_path / "m.flm"
    for length in range(len(MODEL_BYTES)):
        path.write_bytes(MODEL_BYTES[:length])
        with pytest.raises(ModelTruncatedError):
            flm.load(path)
    for position in range(len(MODEL_BYTES)):
        data = bytearray(MODEL_BYTES)
        data[position] ^= 0x5A
        path.write_bytes(data)
        with pytest.raises(_expected(position)) as caught:
            flm.load(path)
        assert type(caught.value) is not ModelFormatError


def _rewrap(body: bytes) -> bytes:
    from flight.crc import crc32c

    head = MODEL_BYTES[:35] + len(body).to_bytes(4, "big")
    return head + body + MODEL_BYTES[BODY_END : BODY_END + 8] + crc32c(body).to_bytes(4, "big")


def test_changed_body_bytes_behind_a_valid_crc_are_refused_or_load_plain_values():
    """Exhaustive over the body with a recomputed CRC: the skeleton's references never leak
    out, never point outside the body, and every refusal is specific."""
    body = MODEL_BYTES[BODY_START:BODY_END]
    for position in range(len(body)):
        for xor in (0x01, 0x10, 0xFF):
            changed = bytearray(body)
            changed[position] ^= xor
            try:
                model = flm.load(_rewrap(bytes(changed)))
            except ModelFormatError as exc:
                assert type(exc) is not ModelFormatError
            else:
                assert _leaves_are_plain(model)


def test_a_reference_forged_in_the_file_is_refused():
    """The skeleton's reference is a msgpack ext; a file holding one (pointing at its own
    bytes) is refused as any ext is, never decoded as a reference."""
    import msgpack

    forged = b"\xd8\x01" + (0).to_bytes(8, "big") + (16).to_bytes(8, "big")
    doc = msgpack.unpackb(MODEL_BYTES[BODY_START:BODY_END], raw=False)
    packed = msgpack.packb(doc, use_bin_type=True)
    marker = msgpack.packb("t")  # the producer's value
    at = packed.index(b"\xa8producer" + marker) + len(b"\xa8producer")
    body = packed[:at] + forged + packed[at + len(marker) :]
    with pytest.raises(ModelSchemaError, match="type byte 0xd8"):
        flm.load(_rewrap(body))


def test_a_file_that_changes_size_while_read_is_read_as_it_is(tmp_path, monkeypatch):
    """fstat and the read disagree: what the reads return is what is checked, all of it."""
    path = tmp_path / "m.flm"
    path.write_bytes(MODEL_BYTES)
    real = flm.os.fstat

    class Stat:
        def __init__(self, size: int) -> None:
            self.st_size = size

    monkeypatch.setattr(flm.os, "fstat", lambda fd: Stat(real(fd).st_size - 100))
    assert flm.dumps(flm.load(path)) == MODEL_BYTES  # grew after fstat: read to the end
    monkeypatch.setattr(flm.os, "fstat", lambda fd: Stat(real(fd).st_size + 100))
    assert flm.dumps(flm.load(path)) == MODEL_BYTES  # shrank after fstat: read to the end
    monkeypatch.setattr(flm.os, "fstat", lambda fd: Stat(real(fd).st_size - 100))
    path.write_bytes(MODEL_BYTES + b"\x00")  # and a stray byte past fstat's size is still seen
    with pytest.raises(ModelSchemaError, match="stray"):
        flm.load(path)


def test_release_frees_only_whole_pages_inside_the_tensor(tmp_path):
    """A big tensor's interior pages read as zeros after release; its neighbours do not."""
    rng = np.random.default_rng(2)
    tensors = {
        "a": rng.standard_normal(5000).astype(np.float32),
        "big": rng.standard_normal(9000).astype(np.float32),
        "c": rng.standard_normal(5000).astype(np.float32),
    }
    graph = GraphDef("g", (ValueInfo("x", "float32", (1,)),), (ValueInfo("x", "float32", (1,)),))
    path = tmp_path / "r.flm"
    flm.save(path, ModelFile(graph=graph, tensors=tensors))
    loaded = flm.load_file(path)
    big = loaded.model.tensors["big"]
    loaded.release(big)
    assert np.count_nonzero(big == 0) >= 9000 - 2 * 1024  # all but the two partial pages
    head = (-big.ctypes.data) % 4096 // 4  # elements before the first whole page
    assert np.array_equal(big[:head], tensors["big"][:head])
    for name in ("a", "c"):
        assert np.array_equal(loaded.model.tensors[name], tensors[name])
    # bytes given by the caller are never the loader's to release
    from_bytes = flm.load_file(path.read_bytes())
    from_bytes.release(from_bytes.model.tensors["big"])
    assert np.array_equal(from_bytes.model.tensors["big"], tensors["big"])


# ---------------------------------------------------------------------------------------------
# The Model built from a path: weights moved into protected memory, golden read from the file

DEMO = Path(flm.__file__).resolve().parents[1] / "data" / "digits_cnn.flm"


@pytest.fixture
def demo_path(tmp_path) -> Path:
    path = tmp_path / "demo.flm"
    path.write_bytes(DEMO.read_bytes())
    return path


def test_a_model_from_a_path_keeps_a_correct_graph(demo_path):
    model = io.load(demo_path, copies=1)
    stored = io.load_graph(DEMO.read_bytes())
    for name, tensor in stored.tensors.items():
        assert np.array_equal(model.graph.tensors[name], tensor), name
        assert not model.graph.tensors[name].flags.writeable
    x = np.linspace(0, 1, int(np.prod(model.shapes[model.input_names[0]])), dtype=np.float32)
    x = x.reshape(model.shapes[model.input_names[0]])
    assert np.array_equal(model.run(x), io.load(DEMO.read_bytes(), copies=1).run(x))


def test_unrepairable_blocks_are_reloaded_from_the_file(demo_path):
    model = io.load(demo_path)
    for block in (0, model.weights.nblocks - 1):
        start, _ = model.weights.block_bytes(block)
        for i in range(3):
            model.weights.raw(i)[start + 3] ^= 0x08  # same bit, every copy: no vote fixes it
    assert model.weights.repair().unrepairable == 2
    assert model.reload_blocks(model.weights.suspect_blocks) == (2, 0)
    assert model.weights.verify().clean and model.weights.suspect_blocks == ()


def test_a_changed_or_missing_file_refuses_the_reload(demo_path):
    model = io.load(demo_path)
    blocks = model.weights.nblocks
    data = bytearray(demo_path.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the largest tensor's data
    demo_path.write_bytes(data)
    reloaded, refused = model.reload_blocks()
    assert refused >= 1 and reloaded + refused == blocks
    assert model.weights.verify().clean  # nothing unproven was written
    demo_path.unlink()
    assert model.reload_blocks() == (0, blocks)


def test_zeros_region_is_consistent_and_fills_piece_by_piece():
    for allocate in (None, lambda n: np.full(n, 0xAB, np.uint8)):
        region = ProtectedRegion.zeros("z", (3000,), np.float32, copies=3, allocate=allocate)
        assert region.verify().clean and not region.raw(1).any()
        region.write(np.arange(1000, dtype=np.float32), offset=4 * 1500)
        region.write(np.ones(7, np.float32), offset=4 * 2993)
        assert region.verify().clean
        assert region.copy(2)[1500 + 999] == 999 and region.copy(0)[2999] == 1
