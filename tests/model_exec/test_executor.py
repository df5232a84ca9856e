"""The executor: protected weights per replica, static memory, hooks, clear errors."""

from __future__ import annotations

import tracemalloc
from importlib import resources

import numpy as np
import pytest

from flight.model import io
from flight.model.executor import ModelError
from flight.model.graph import CANONICAL_OPS

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
    x = test_set[0][:1]
    replica = demo.replica(2)
    replica.run(x)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(20):
        replica.run(x)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename") if s.size_diff > 0)
    assert grown < 64 * 1024, f"{grown} bytes allocated over 20 inferences"


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


def test_warmup_model_covers_every_canonical_op():
    graph = io.load_graph(WARMUP.read_bytes())
    assert set(graph.ops()) == set(CANONICAL_OPS)
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
