"""ONNX import of 1-D convolution and pooling, by lowering to the 2-D kernels (ground side).

Signal-processing and telemetry anomaly-detection models are 1-D CNNs (inputs ``N, C, L``).
Rather than a second set of kernels, a 1-D Conv / MaxPool / AveragePool becomes the 2-D op on a
unit-height image: ``Reshape N,C,L -> N,C,1,L``, the 2-D op with kernel ``(1, k)``, strides
``(1, s)``, dilations ``(1, d)`` and pads ``(0, begin, 0, end)``, then ``Reshape`` back. A 1-D
model therefore runs on the same tuned, deterministic kernels as a 2-D one (replicas stay
bit-identical).

A lowered result stays 4-D (its *twin*) for as long as its readers allow: the next 1-D Conv or
pool, and the activations and BatchNormalization in between (:data:`PASS_THROUGH`), read the twin
directly. So a Conv1d + BatchNorm1d + ReLU + MaxPool1d stack converts to the very Conv (BN folded,
ReLU fused) + MaxPool a 2-D model gets, with no Reshape between; the 3-D tensor is materialised
(one Reshape, a flat copy) only where something else reads it, or it is a graph output.

The 2-D node is handed back to the converter's own ``op_*`` handler, so ``auto_pad``,
``ceil_mode``, groups, ``count_include_pad`` and every refusal behave exactly as in 2-D. 3-D Conv /
pool (rank 5) need no lowering: the converter emits them as they are and the executor runs them on
the 3-D kernels (:mod:`flight.kernels.conv3d`). Rank 6 and up is refused here, naming the op and
the rank. This module does not import onnx: it only copies and edits the node protobuf it is given.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from flight.model.graph import Node

__all__ = ["LOWERED_OPS", "PASS_THROUGH", "lowering"]

#: The ops whose 1-D form is lowered to 2-D (and whose 4-D and higher forms are refused).
LOWERED_OPS = frozenset({"Conv", "MaxPool", "AveragePool"})
#: Per-channel or elementwise ops that compute the same on N,C,1,L as on N,C,L.
PASS_THROUGH = frozenset({"Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "BatchNormalization"})

# converter -> {3-D ONNX tensor name: its 4-D twin}; the converter object is not ours to extend
_TWINS: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()

# attributes that carry one value per spatial axis: the unit height goes first
_PER_AXIS = frozenset({"kernel_shape", "strides", "dilations"})


def lowering(converter: Any, node: Any) -> Callable[[Any], None] | None:
    """The handler for ``node`` when it is a Conv / pool that is not 2-D, or a
    :data:`PASS_THROUGH` op reading a twin; else None. 4-D and up raise UnsupportedOpError.

    ``converter`` is :class:`flight.model.onnx_import._Converter` (duck-typed to keep the import
    graph one-way). A 2-D or 3-D node (rank-4 or 5 input) gets None: the converter handles it.
    """
    if node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type in PASS_THROUGH and node.input[0] in _TWINS.get(converter, {}):
        return lambda n: _pass_through(converter, n)
    if node.op_type not in LOWERED_OPS:
        return None
    rank = len(converter.shape(node.input[0], node))
    if rank == 3:
        return lambda n: _lower_1d(converter, n)
    if rank in (4, 5):
        return None
    spatial = rank - 2
    raise converter.unsupported(
        node, f"{spatial}-D {node.op_type} (input rank {rank}); flight runs 1-D, 2-D and 3-D only"
    )


def _lower_1d(converter: Any, node: Any) -> None:
    """The 2-D op through the converter, on the input's twin (made by a Reshape if needed)."""
    n, c, length = converter.shape(node.input[0], node)
    twins = _TWINS.setdefault(converter, {})
    in_2d = twins.get(node.input[0])
    if in_2d is None:
        in_2d = f"{node.name}.in_2d"
        converter.extra_shapes[in_2d] = (n, c, 1, length)
        converter.append(
            Node(
                f"{node.name}.to_2d",
                "Reshape",
                [converter.ref(node.input[0])],
                [in_2d],
                {"shape": [n, c, 1, length]},
            )
        )
    node_2d = _renamed(converter, node, in_2d)
    if node.op_type == "Conv":
        node_2d.input[1] = _weight_2d(converter, node)
    for attr in node_2d.attribute:
        values = list(attr.ints)
        if attr.name in _PER_AXIS:
            values = [1, *values]
        elif attr.name == "pads":  # [begin, end] -> [top, left, bottom, right]
            values = [0, values[0], 0, values[1]]
        else:
            continue
        del attr.ints[:]
        attr.ints.extend(values)
    _finish(converter, node, node_2d)


def _pass_through(converter: Any, node: Any) -> None:
    """An activation / BatchNormalization on a twin: the converter's handler, kept 4-D."""
    node_2d = _renamed(converter, node, _TWINS[converter][node.input[0]])
    _finish(converter, node, node_2d)


def _renamed(converter: Any, node: Any, in_2d: str) -> Any:
    """A copy of ``node`` that reads ``in_2d`` and writes the twin of its first output."""
    n, c, length = converter.shape(node.output[0], node)
    out_2d = f"{node.name}.out_2d"
    converter.extra_shapes[out_2d] = (n, c, 1, length)
    node_2d = type(node)()
    node_2d.CopyFrom(node)
    node_2d.input[0] = in_2d
    node_2d.output[0] = out_2d
    return node_2d


def _finish(converter: Any, node: Any, node_2d: Any) -> None:
    """Convert ``node_2d``, record its output as the twin, Reshape back where 3-D is read."""
    getattr(converter, f"op_{node.op_type}")(node_2d)
    name, out_2d = node.output[0], node_2d.output[0]
    _TWINS[converter][name] = out_2d
    if _needs_3d(converter.model.graph, name):
        converter.append(
            Node(
                f"{node.name}.to_1d",
                "Reshape",
                [out_2d],
                [name],
                {"shape": list(converter.shape(name, node))},
            )
        )


def _needs_3d(graph: Any, name: str) -> bool:
    """Whether anything reads tensor ``name`` other than as the twin-reading first input."""
    if any(v.name == name for v in graph.output):
        return True
    for reader in graph.node:
        if name not in reader.input:
            continue
        takes_twin = reader.op_type in LOWERED_OPS | PASS_THROUGH and reader.domain in (
            "",
            "ai.onnx",
        )
        if not takes_twin or list(reader.input).count(name) != 1 or reader.input[0] != name:
            return True
    return False


def _weight_2d(converter: Any, node: Any) -> str:
    """The constant weight (M, C/g, k) as (M, C/g, 1, k), shared by every node that reads it."""
    weight = converter.const(node.input[1], node, "the weight")
    if weight.ndim != 3:
        raise converter.unsupported(node, f"1-D input with weight shape {weight.shape}")
    name = f"{node.input[1]}.as_2d"
    if name not in converter.consts:
        converter.consts[name] = np.ascontiguousarray(weight[:, :, None, :])
    return name
