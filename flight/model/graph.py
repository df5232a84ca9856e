"""flight's canonical graph: what the converter produces, the file stores and the executor runs.

Static shapes everywhere, float32 activations (an integer graph input, e.g. an Embedding's
indices, is declared as such in ``input_dtypes`` and carried as exact float32 inside), nodes in
execution (topological) order, weights as numpy arrays. The ops and their attributes are defined
in the op registry, :data:`flight.model.ops.OPS`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Graph", "Node"]


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
    #: dtype of each graph input that is not float32 ("int64", "int32"): Gather indices only
    input_dtypes: dict[str, str] = field(default_factory=dict)

    def ops(self) -> Counter:
        return Counter(n.op for n in self.nodes)

    def parameter_count(self) -> int:
        return int(sum(t.size for t in self.tensors.values()))
