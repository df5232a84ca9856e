"""flight's canonical graph: what the converter produces, the file stores and the executor runs.

Static shapes everywhere, float32 activations, nodes in execution (topological) order, weights
as numpy arrays. The ops and their attributes are listed in :data:`CANONICAL_OPS` and in
docs/models.md.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CANONICAL_OPS", "Graph", "Node"]

#: Canonical ops and their attributes (activation fusion uses the kernels' names:
#: ``activation`` in {"", "Relu", "LeakyRelu", "Clip"}, ``activation_alpha`` / ``_beta``).
CANONICAL_OPS: dict[str, str] = {
    "Conv": "kernel_shape, strides, pads[t,l,b,r], dilations, group, activation*",
    "Gemm": "alpha, beta, transA, transB, activation*",
    "MatMul": "",
    "MaxPool": "kernel_shape, strides, pads[t,l,b,r], dilations",
    "AveragePool": "kernel_shape, strides, pads[t,l,b,r], count_include_pad",
    "GlobalAveragePool": "",
    "BatchNormalization": "epsilon",
    "Relu": "",
    "LeakyRelu": "alpha",
    "Clip": "min, max",
    "Sigmoid": "",
    "Tanh": "",
    "Add": "",
    "Sub": "",
    "Mul": "",
    "Div": "",
    "Sum": "",
    "Concat": "axis (non-negative)",
    "Reshape": "shape (the static output shape)",
    "Transpose": "perm",
    "Pad": "pads[begin..., end...], mode (constant|reflect|edge), value",
    "Softmax": "axis (non-negative; opset < 13 models are rewritten to this form)",
    "LRN": "size, alpha, beta, bias",
}


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Graph:
    """A canonical graph. ``shapes`` holds the static shape of every activation."""

    name: str
    inputs: list[tuple[str, tuple[int, ...]]]
    outputs: list[tuple[str, tuple[int, ...]]]
    nodes: list[Node]
    shapes: dict[str, tuple[int, ...]]
    tensors: dict[str, np.ndarray]
    metadata: dict[str, str] = field(default_factory=dict)

    def ops(self) -> Counter:
        return Counter(n.op for n in self.nodes)

    def parameter_count(self) -> int:
        return int(sum(t.size for t in self.tensors.values()))
