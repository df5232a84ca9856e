"""flight's graph rewrites on canonical graphs built directly (no onnx): the rewritten graph
computes what the original did, and a rewrite that would change that is not applied."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest

from flight.model import rewrite
from flight.model.executor import Model
from flight.model.graph import Graph, Node

RNG = np.random.default_rng(0)
CONV = {"kernel_shape": [3, 3], "strides": [1, 1], "dilations": [1, 1], "pads": [1, 1, 1, 1]}
X_CONV = RNG.standard_normal((1, 3, 6, 6)).astype(np.float32)
X_GEMM = RNG.standard_normal((2, 5)).astype(np.float32)


def _r(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def _bn_tensors(prefix: str, channels: int) -> dict[str, np.ndarray]:
    return {
        f"{prefix}.scale": _r(channels),
        f"{prefix}.bias": _r(channels),
        f"{prefix}.mean": _r(channels),
        f"{prefix}.var": (np.abs(_r(channels)) + 0.5).astype(np.float32),
    }


def _bn(name: str, source: str, output: str) -> Node:
    inputs = [source, *(f"{name}.{p}" for p in ("scale", "bias", "mean", "var"))]
    return Node(name, "BatchNormalization", inputs, [output], {"epsilon": 1e-3})


def conv_graph(*tail: Node, outputs=("y",), bias: bool = True) -> Graph:
    """x -> Conv(3->4) -> c, then ``tail`` nodes (all activations have shape (1, 4, 6, 6))."""
    shape = (1, 4, 6, 6)
    conv = Node("conv", "Conv", ["x", "w", "b" if bias else ""], ["c"], {**CONV, "activation": ""})
    nodes = [conv, *copy.deepcopy(tail)]
    tensors = {"w": _r(4, 3, 3, 3), "b": _r(4), **_bn_tensors("bn", 4)}
    return Graph(
        "conv",
        [("x", X_CONV.shape)],
        [(name, shape) for name in outputs],
        nodes,
        {out: shape for n in nodes for out in n.outputs},
        tensors,
    )


def gemm_graph(trans_b: int, alpha: float, beta: float, *tail: Node) -> Graph:
    """x (2, 5) -> Gemm -> c (2, 3), then ``tail``."""
    weight = _r(3, 5) if trans_b else _r(5, 3)
    attrs = {"alpha": alpha, "beta": beta, "transA": 0, "transB": trans_b, "activation": ""}
    nodes = [Node("fc", "Gemm", ["x", "w", "b"], ["c"], attrs), *copy.deepcopy(tail)]
    return Graph(
        "gemm",
        [("x", X_GEMM.shape)],
        [("y", (2, 3))],
        nodes,
        {out: (2, 3) for n in nodes for out in n.outputs},
        {"w": weight, "b": _r(3), **_bn_tensors("bn", 3)},
    )


def _run(graph: Graph, x: np.ndarray) -> dict[str, np.ndarray]:
    replica = Model(graph, copies=1).replica(0)
    return {name: out.copy() for name, out in replica.run(x).items()}


def _same_results(before: Graph, after: Graph, x: np.ndarray) -> None:
    want, got = _run(before, x), _run(after, x)
    assert want.keys() == got.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-5)


def _rewritten(graph: Graph, *steps) -> Graph:
    out = copy.deepcopy(graph)
    for step in steps:
        step(out)
    return out


@pytest.mark.parametrize("bias", [True, False])
def test_batchnorm_folds_into_conv(bias):
    graph = conv_graph(_bn("bn", "c", "y"), bias=bias)
    folded = _rewritten(graph, rewrite.fold_batchnorm, rewrite.prune)
    assert [n.op for n in folded.nodes] == ["Conv"]
    assert folded.nodes[0].outputs == ["y"]
    assert not any(name.startswith("bn.") for name in folded.tensors)  # pruned
    _same_results(graph, folded, X_CONV)


@pytest.mark.parametrize("trans_b", [0, 1])
def test_batchnorm_folds_into_gemm_with_alpha_and_beta(trans_b):
    graph = gemm_graph(trans_b, 0.5, 2.0, _bn("bn", "c", "y"))
    folded = _rewritten(graph, rewrite.fold_batchnorm)
    assert [n.op for n in folded.nodes] == ["Gemm"]
    assert folded.nodes[0].attrs["alpha"] == 1.0 and folded.nodes[0].attrs["beta"] == 1.0
    _same_results(graph, folded, X_GEMM)


def test_batchnorm_is_not_folded_when_the_conv_output_is_read_elsewhere():
    graph = conv_graph(_bn("bn", "c", "y"), Node("r", "Relu", ["c"], ["z"]), outputs=("y", "z"))
    assert _rewritten(graph, rewrite.fold_batchnorm).nodes == graph.nodes
    graph = conv_graph(_bn("bn", "c", "y"), outputs=("c", "y"))
    assert _rewritten(graph, rewrite.fold_batchnorm).nodes == graph.nodes


@pytest.mark.parametrize(
    ("act", "attrs", "fused"),
    [
        ("Relu", {}, {}),
        ("LeakyRelu", {"alpha": 0.2}, {"activation_alpha": 0.2}),
        ("Clip", {"min": -0.5, "max": 0.5}, {"activation_alpha": -0.5, "activation_beta": 0.5}),
    ],
)
def test_activation_fuses_into_conv(act, attrs, fused):
    graph = conv_graph(Node("act", act, ["c"], ["y"], attrs))
    out = _rewritten(graph, rewrite.fuse_activations)
    assert [n.op for n in out.nodes] == ["Conv"]
    assert out.nodes[0].attrs == {**CONV, "activation": act, **fused}
    _same_results(graph, out, X_CONV)


def test_activation_fuses_into_gemm():
    graph = gemm_graph(1, 1.0, 1.0, Node("act", "Relu", ["c"], ["y"]))
    out = _rewritten(graph, rewrite.fuse_activations)
    assert [(n.op, n.attrs["activation"]) for n in out.nodes] == [("Gemm", "Relu")]
    _same_results(graph, out, X_GEMM)


def test_activation_is_not_fused_when_the_pre_activation_is_needed():
    two_readers = conv_graph(
        Node("act", "Relu", ["c"], ["y"]), Node("t", "Tanh", ["c"], ["z"]), outputs=("y", "z")
    )
    assert _rewritten(two_readers, rewrite.fuse_activations).nodes == two_readers.nodes
    is_output = conv_graph(Node("act", "Relu", ["c"], ["y"]), outputs=("c", "y"))
    assert _rewritten(is_output, rewrite.fuse_activations).nodes == is_output.nodes
    twice = conv_graph(Node("a1", "Relu", ["c"], ["d"]), Node("a2", "Relu", ["d"], ["y"]))
    out = _rewritten(twice, rewrite.fuse_activations)
    assert [n.op for n in out.nodes] == ["Conv", "Relu"]  # one fused activation per Conv
    _same_results(twice, out, X_CONV)


def test_fold_then_fuse_as_the_converter_does():
    graph = conv_graph(_bn("bn", "c", "d"), Node("act", "Relu", ["d"], ["y"]))
    out = _rewritten(graph, rewrite.fold_batchnorm, rewrite.fuse_activations, rewrite.prune)
    assert [(n.op, n.attrs["activation"]) for n in out.nodes] == [("Conv", "Relu")]
    _same_results(graph, out, X_CONV)


def test_prune_drops_what_no_output_needs():
    graph = conv_graph(Node("act", "Relu", ["c"], ["y"]), Node("dead", "Tanh", ["c"], ["z"]))
    graph.tensors["unused"] = _r(2)
    out = _rewritten(graph, rewrite.prune)
    assert [n.name for n in out.nodes] == ["conv", "act"]
    assert set(out.tensors) == {"w", "b"}
    _same_results(graph, out, X_CONV)


def test_rewrites_do_not_import_onnx():
    code = "import sys, flight.model.rewrite; assert 'onnx' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_onnx_import_without_onnx_says_what_to_install(monkeypatch):
    from flight.model import onnx_import

    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    with pytest.raises(onnx_import.ConversionError, match=r"pip install 'flight\[onnx\]'"):
        onnx_import.convert_onnx("model.onnx")
