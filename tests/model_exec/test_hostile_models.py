"""Well-formed but hostile model files: wrong shapes and out-of-range attributes.

The kernels check no bounds, so every inconsistency must be caught at load. Mutations of the
all-ops warm-up model either load (and then run cleanly) or are rejected with a flight error;
nothing crashes, hangs, or writes outside its buffers.
"""

from __future__ import annotations

import copy
from importlib import resources

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flight import errors
from flight.model import io
from flight.model.executor import Model
from flight.model.shapes import ShapeError

WARMUP = io.load_graph((resources.files("flight") / "data" / "warmup.flm").read_bytes())


def _mutate(graph, data):
    graph = copy.deepcopy(graph)
    node = data.draw(st.sampled_from(graph.nodes))
    kind = data.draw(st.sampled_from(["shape", "attr", "attr", "input"]))
    if kind == "shape":
        name = node.outputs[0]
        shape = list(graph.shapes[name])
        if shape:
            axis = data.draw(st.integers(0, len(shape) - 1))
            shape[axis] = max(0, shape[axis] + data.draw(st.sampled_from([-2, -1, 1, 3])))
        else:
            shape = [2]
        graph.shapes[name] = tuple(shape)
        for i, (out_name, _) in enumerate(graph.outputs):
            if out_name == name:
                graph.outputs[i] = (name, tuple(shape))
    elif kind == "attr":
        candidates = [
            k
            for k, v in node.attrs.items()
            if isinstance(v, int | list) and not isinstance(v, bool)
        ]
        if not candidates:
            return graph
        key = data.draw(st.sampled_from(sorted(candidates)))
        value = data.draw(st.integers(-3, 40))
        if isinstance(node.attrs[key], list) and node.attrs[key]:
            values = list(node.attrs[key])
            values[data.draw(st.integers(0, len(values) - 1))] = value
            node.attrs[key] = values
        else:
            node.attrs[key] = value
    else:
        weights = [n for n in node.inputs if n in graph.tensors]
        if weights:
            name = weights[0]
            tensor = graph.tensors[name]
            graph.tensors[name] = np.zeros(
                (*tensor.shape[:-1], tensor.shape[-1] + 1) if tensor.ndim else (2,), np.float32
            )
    return graph


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_models_are_rejected_or_run_cleanly(data):
    graph = _mutate(WARMUP, data)
    try:
        model = Model(graph, copies=1)
    except errors.FlightError:
        return  # rejected with a specific flight error: good
    out = model.run(np.ones(model.shapes[model.input_names[0]], np.float32))
    assert out.shape == tuple(model.shapes[model.output_names[0]])


def test_a_conv_declaring_a_bigger_output_is_rejected():
    graph = copy.deepcopy(WARMUP)
    conv = next(n for n in graph.nodes if n.op == "Conv")
    n, c, h, w = graph.shapes[conv.outputs[0]]
    graph.shapes[conv.outputs[0]] = (n, c, h + 5, w)
    with pytest.raises(ShapeError, match="declared output shape"):
        Model(graph, copies=1)


def test_hostile_file_through_the_loader(tmp_path):
    graph = copy.deepcopy(WARMUP)
    pad = next(n for n in graph.nodes if n.op == "Pad" and n.attrs["mode"] == "reflect")
    pad.attrs["pads"] = [0, 0, 100, 0, 0, 0, 100, 0]  # reflect far beyond the input
    name = pad.outputs[0]
    shape = list(graph.shapes[name])
    shape[2] += 200
    graph.shapes[name] = tuple(shape)
    path = tmp_path / "hostile.flm"
    io.save(graph, path)  # structurally valid: the file format cannot know
    with pytest.raises(ShapeError, match="reflect"):
        io.load(path)
