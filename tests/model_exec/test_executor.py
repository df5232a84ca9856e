"""The executor: protected weights per replica, static memory, hooks, clear errors."""

from __future__ import annotations

import tracemalloc
from importlib import resources

import numpy as np
import pytest

from flight.model import io
from flight.model.executor import ModelError
from flight.model.ops import OPS

DEMO = resources.files("flight") / "data" / "digits_cnn.flm"
WARMUP = resources.files("flight") / "data" / "warmup.flm"


@pytest.fixture(scope="module")
def demo():
    return io.load(DEMO.read_bytes())


@pytest.fixture(scope="module")
def test_set():
    data = np.load(resources.files("flight") / "data" / "digits_test.npz")
    return data["x"], data["y"]


def test_demo_model_accuracy_through_flight(demo, test_set):
    x, y = test_set
    replica = demo.replica(0)
    name = demo.output_names[0]
    predictions = np.array([int(np.argmax(replica.run(x[i : i + 1])[name])) for i in range(len(y))])
    accuracy = float(np.mean(predictions == y))
    assert accuracy >= 0.95, accuracy


def test_weights_live_in_protected_memory_one_copy_per_replica(demo, test_set):
    x = test_set[0][:1]
    region = demo.weights
    assert region.copies == 3 and region.verify().clean
    clean = demo.replica(1).run(x)[demo.output_names[0]].copy()
    region.raw(1)[: region.nbytes // 2] ^= 0x40  # a burst of upsets in replica 1's weights
    hit = demo.replica(1).run(x)[demo.output_names[0]].copy()
    other = demo.replica(0).run(x)[demo.output_names[0]].copy()
    assert not np.array_equal(hit, clean)  # replica 1 computes with its (corrupted) copy
    assert np.array_equal(other, clean)  # replica 0 is untouched
    report = region.repair()
    assert report.repaired > 0 and report.unrepairable == 0
    assert np.array_equal(demo.replica(1).run(x)[demo.output_names[0]], clean)


def test_no_allocation_per_inference(demo, test_set):
    # The peak, not the net growth: a buffer allocated and freed inside run() is still an
    # allocation per inference. numpy reports its data buffers to tracemalloc (kernels' own
    # numba allocations do not show here).
    x = test_set[0][:1]
    replica = demo.replica(2)
    replica.run(x)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for _ in range(20):
            replica.run(x)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, f"inference peaked at {peak} bytes of new allocations"


def test_hooks_read_and_write_named_buffers(demo, test_set):
    x = test_set[0][:1]
    replica = demo.replica(0)
    name = demo.output_names[0]
    first_conv = demo.graph.nodes[0].outputs[0]
    seen = {}

    def zero(buffer):
        seen["before"] = buffer.copy()
        buffer[...] = 0.0

    out = replica.run(x, after={first_conv: zero})[name].copy()
    normal = replica.run(x)[name].copy()
    assert seen["before"].any() and not np.array_equal(out, normal)
    with pytest.raises(ModelError):
        replica.run(x, after={"no-such-tensor": zero})


def test_memory_plan_reuses_activation_memory(demo):
    summary = demo.summary()
    assert summary["arena_bytes_per_replica"] < summary["arena_bytes_without_reuse"]


def test_bad_inputs_are_model_errors(demo):
    with pytest.raises(ModelError, match="shape"):
        demo.run(np.zeros((1, 1, 9, 9), np.float32))
    with pytest.raises(ModelError):
        demo.replica(3)
    with pytest.raises(ModelError):
        demo.replica(0).run({"wrong": np.zeros((1, 1, 8, 8), np.float32)})


def test_warmup_model_covers_every_registered_op():
    graph = io.load_graph(WARMUP.read_bytes())
    assert set(graph.ops()) == set(OPS)
    model = io.load(WARMUP.read_bytes())
    out = model.run(np.ones(model.shapes[model.input_names[0]], np.float32))
    assert np.isfinite(out).all() and abs(float(out.sum()) - 1.0) < 1e-5  # ends in Softmax


def test_flm_round_trip_keeps_the_graph(tmp_path, demo):
    path = tmp_path / "again.flm"
    io.save(demo.graph, path)
    again = io.load_graph(path)
    assert [n.op for n in again.nodes] == [n.op for n in demo.graph.nodes]
    for name, tensor in demo.graph.tensors.items():
        assert again.tensors[name].tobytes() == tensor.tobytes()


def test_unrepairable_blocks_are_reloaded_from_the_golden_image(test_set):
    model = io.load(DEMO.read_bytes())
    x = test_set[0][:1]
    clean = model.run(x)
    for i in range(3):
        model.weights.raw(i)[100] ^= 0x10  # the same bit in every copy: no vote can fix it
    model.weights.crc_table(2)[1] ^= 1  # and a table upset elsewhere, which must not matter
    report = model.weights.repair()
    assert report.unrepairable_blocks == [0] and model.weights.suspect_blocks == (0,)
    assert model.reload_blocks(model.weights.suspect_blocks) == (1, 0)
    assert model.weights.suspect_blocks == () and model.weights.verify().clean
    assert np.array_equal(model.run(x), clean)


def test_a_corrupted_golden_image_is_refused_not_written():
    model = io.load(DEMO.read_bytes())
    source, hit = model._golden, next(s for s, group in model._recipes.values() if group is None)

    def golden(name):  # radiation reached the golden copy of one (unpacked) tensor
        tensor = np.array(source(name))
        tensor.reshape(-1).view(np.uint8)[5] ^= 1 if name == hit else 0
        return tensor

    model._golden = golden
    before = model.weights.raw(0).copy()
    reloaded, refused = model.reload_blocks()
    assert refused == 1 and reloaded == model.weights.nblocks - 1
    assert np.array_equal(model.weights.raw(0), before)  # the good copy was not overwritten
    # one copy only (a replica restart): the same check applies
    model.weights.raw(2)[:] = 0
    reloaded, refused = model.reload_blocks(copies=[2])
    assert refused == 1 and model.weights.verify().errors == 1  # only the refused block left
