"""ONNX import of 1-D convolution and pooling, by lowering to the 2-D kernels (ground side).

Signal-processing and telemetry anomaly-detection models are 1-D CNNs (inputs ``N, C, L``).
Rather than a second set of kernels, a 1-D Conv / MaxPool / AveragePool becomes the 2-D op on a
unit-height image: ``Reshape N,C,L -> N,C,1,L``, the 2-D op with kernel ``(1, k)``, strides
``(1, s)``, dilations ``(1, d)`` and pads ``(0, begin, 0, end)``, then ``Reshape`` back. A 1-D
model therefore runs on the same tuned, deterministic kernels as a 2-D one (replicas stay
bit-identical), and the Reshapes are flat copies.

The 2-D node is handed back to the converter's own ``op_*`` handler, so ``auto_pad``,
``ceil_mode``, groups, ``count_include_pad`` and every refusal behave exactly as in 2-D. Inputs of
rank 5 and up (3-D Conv / pool) are refused here, naming the op and the rank. This module does not
import onnx: it only copies and edits the node protobuf it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from flight.model.graph import Node

__all__ = ["LOWERED_OPS", "lowering"]

#: The ops whose 1-D form is lowered to 2-D (and whose 3-D form is refused).
LOWERED_OPS = frozenset({"Conv", "MaxPool", "AveragePool"})

# attributes that carry one value per spatial axis: the unit height goes first
_PER_AXIS = {"kernel_shape": 1, "strides": 1, "dilations": 1}


def lowering(converter: Any, node: Any) -> Callable[[Any], None] | None:
    """The handler for ``node`` when it is a Conv / pool that is not 2-D, else None.

    ``converter`` is :class:`flight.model.onnx_import._Converter` (duck-typed to keep the import
    graph one-way). A 2-D node (rank-4 input) gets None: the converter handles it as always.
    """
    if node.op_type not in LOWERED_OPS or node.domain not in ("", "ai.onnx"):
        return None
    rank = len(converter.shape(node.input[0], node))
    if rank == 3:
        return lambda n: _lower_1d(converter, n)
    if rank == 4:
        return None
    spatial = rank - 2
    raise converter.unsupported(
        node, f"{spatial}-D {node.op_type} (input rank {rank}); flight runs 1-D and 2-D only"
    )


def _lower_1d(converter: Any, node: Any) -> None:
    """Reshape to N,C,1,L, run the 2-D op through the converter, Reshape back to N,C',L'."""
    n, c, length = converter.shape(node.input[0], node)
    n_out, c_out, l_out = converter.shape(node.output[0], node)
    in_2d, out_2d = f"{node.name}.in_2d", f"{node.name}.out_2d"
    converter.extra_shapes[in_2d] = (n, c, 1, length)
    converter.extra_shapes[out_2d] = (n_out, c_out, 1, l_out)
    converter.append(
        Node(
            f"{node.name}.to_2d",
            "Reshape",
            [converter.ref(node.input[0])],
            [in_2d],
            {"shape": [n, c, 1, length]},
        )
    )
    node_2d = type(node)()
    node_2d.CopyFrom(node)
    node_2d.input[0] = in_2d
    node_2d.output[0] = out_2d
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
    getattr(converter, f"op_{node.op_type}")(node_2d)
    converter.append(
        Node(
            f"{node.name}.to_1d",
            "Reshape",
            [out_2d],
            [node.output[0]],
            {"shape": [n_out, c_out, l_out]},
        )
    )


def _weight_2d(converter: Any, node: Any) -> str:
    """The constant weight (M, C/g, k) as (M, C/g, 1, k), shared by every node that reads it."""
    weight = converter.const(node.input[1], node, "the weight")
    if weight.ndim != 3:
        raise converter.unsupported(node, f"1-D input with weight shape {weight.shape}")
    name = f"{node.input[1]}.as_2d"
    if name not in converter.consts:
        converter.consts[name] = np.ascontiguousarray(weight[:, :, None, :])
    return name
