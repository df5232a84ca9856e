"""The op registry is complete and consistent: one entry per op, and everything that needs op
names or attributes (loader, shape checks, executor, docs) agrees with it."""

from __future__ import annotations

import inspect
import re
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

from flight.kernels import dispatch
from flight.model import io, shapes
from flight.model.executor import Model
from flight.model.format import ModelUnknownOpError
from flight.model.graph import Graph, Node
from flight.model.ops import OPS, Attr, Op, check_node, kernel, workspace_size
from flight.model.shapes import ShapeError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "models.md"
#: ONNX ops the converter accepts but rewrites away: never in a canonical graph.
REWRITTEN_AWAY = ("Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")


def _dispatch_functions() -> dict[str, object]:
    return {
        name: fn
        for name, fn in inspect.getmembers(dispatch, inspect.isfunction)
        if fn.__module__ == dispatch.__name__ and not name.startswith("_")
    }


@pytest.mark.parametrize("name", sorted(OPS))
def test_each_op_has_a_doc_a_shape_rule_a_kernel_and_a_schema(name):
    op = OPS[name]
    assert isinstance(op, Op)
    assert op.doc.strip() and "\n" not in op.doc
    assert callable(op.shape) and op.shape.__module__ == shapes.__name__
    assert callable(kernel(name))
    assert list(inspect.signature(kernel(name)).parameters) == ["inputs", "outputs", "attrs", "ws"]
    if op.workspace:
        assert callable(getattr(dispatch, op.workspace))
    lo, hi = op.inputs
    assert 1 <= lo <= hi
    assert all(lo <= i < hi for i in op.optional)  # only trailing inputs beyond the minimum
    assert all(isinstance(a, Attr) for a in op.attrs.values())


def test_every_dispatcher_the_executor_can_call_is_registered():
    functions = _dispatch_functions()
    assert all(name.startswith(("op_", "workspace_")) for name in functions), sorted(functions)
    dispatchers = {name for name in functions if name.startswith("op_")}
    workspaces = {name for name in functions if name.startswith("workspace_")}
    assert dispatchers == {op.kernel for op in OPS.values()}
    assert workspaces == {op.workspace for op in OPS.values() if op.workspace}


def test_the_flm_loader_accepts_exactly_the_registered_ops():
    for name in [*OPS, *REWRITTEN_AWAY, "Max", "Min", "Erf"]:
        graph = Graph(
            "one",
            [("x", (1, 4))],
            [("y", (1, 4))],
            [Node("n", name, ["x"], ["y"])],
            {"y": (1, 4)},
            {},
        )
        data = BytesIO()
        if name in OPS:
            io.save(graph, data)
            assert io.load_graph(data.getvalue()).nodes[0].op == name
        else:
            with pytest.raises(ModelUnknownOpError):
                io.save(graph, data)


def test_docs_list_every_registered_op_on_board():
    text = DOCS.read_text()
    table = text[text.index("## Supported ops") : text.index("## The file format")]
    on_board = set()
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) == 3:
            on_board.update(re.findall(r"[A-Z][A-Za-z]+", cells[0] + " " + cells[1]))
    assert set(OPS) <= on_board, sorted(set(OPS) - on_board)


def _node(op, attrs, inputs=("x",)):
    return Node("n", op, list(inputs), ["y"], attrs)


@pytest.mark.parametrize(
    ("node", "shapes_in", "message"),
    [
        (_node("Relu", {"alpha": 0.1}), [(2, 3)], "unknown attribute 'alpha'"),
        (_node("Concat", {}), [(2, 3)], "missing attribute axis"),
        (_node("LRN", {}), [(1, 4, 2, 2)], "missing attribute size"),
        (_node("Softmax", {"axis": 1.0}), [(2, 3)], "axis must be int"),
        (_node("Pad", {"pads": [0, 0, 0, 0], "mode": 1}), [(2, 3)], "mode must be str"),
        (_node("Relu", {}, ("x", "x")), [(2, 3), (2, 3)], "expected 1..1 inputs"),
        (_node("Add", {}, ("x", "")), [(2, 3), None], "required input is absent"),
    ],
)
def test_check_node_enforces_the_schema(node, shapes_in, message):
    with pytest.raises(ShapeError, match=message):
        check_node(node, shapes_in, (2, 3))


def test_optional_bias_may_be_absent():
    node = Node(
        "c",
        "Conv",
        ["x", "w", ""],
        ["y"],
        {"kernel_shape": [1, 1], "strides": [1, 1], "dilations": [1, 1], "pads": [0, 0, 0, 0]},
    )
    check_node(node, [(1, 2, 3, 3), (4, 2, 1, 1), None], (1, 4, 3, 3))


def test_a_concat_without_axis_is_refused_at_load_not_at_run():
    """The dispatcher reads attrs["axis"]: a file without it must not get that far."""
    graph = Graph(
        "cat",
        [("x", (1, 2))],
        [("y", (1, 4))],
        [Node("n", "Concat", ["x", "x"], ["y"])],
        {"y": (1, 4)},
        {},
    )
    with pytest.raises(ShapeError, match="missing attribute axis"):
        Model(graph, copies=1)
    graph.nodes[0].attrs["axis"] = 1
    x = np.arange(2, dtype=np.float32).reshape(1, 2)
    np.testing.assert_array_equal(Model(graph, copies=1).run(x), np.concatenate([x, x], 1))


def test_workspace_size_comes_from_the_registry():
    a, b = (64, 64), (64, 64)
    assert workspace_size("Gemm", [a, b], [(64, 64)], {}) > 0
    assert workspace_size("Relu", [a], [a], {}) == 0
