"""Shape and attribute rules of the canonical ops, checked before anything runs.

The kernels trust their arguments (no bounds checks in the inner loops: that is what makes them
fast). A model file can be corrupted or hostile while still being well-formed, e.g. a Conv whose
declared output shape is larger than its input allows. So the executor checks every node once,
at load (:func:`flight.model.ops.check_node`): each attribute within its range and each output
shape exactly what the op computes from its input shapes. A model that passes cannot make a
kernel read or write outside its buffers.

A rule is ``rule(node, input_shapes, attrs) -> output shape`` (or a list of the allowed output
shapes); it raises :class:`ShapeError`. Which op uses which rule is said in the op registry,
:mod:`flight.model.ops`.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from flight import errors

__all__ = [
    "ACTIVATIONS",
    "MAX_GATHER_ROWS",
    "MAX_RANK",
    "ShapeError",
    "avgpool",
    "batchnorm",
    "broadcast",
    "clip",
    "concat",
    "conv",
    "fail",
    "gather",
    "gemm",
    "global_avgpool",
    "leaky_relu",
    "lrn",
    "matmul",
    "maxpool",
    "pad",
    "reshape",
    "same",
    "softmax",
    "transpose",
]

MAX_RANK = 6  # the data-movement kernels' limit
#: Gather indices travel as float32, which holds every integer below 2**24 exactly.
MAX_GATHER_ROWS = 2**24
#: Activations a Conv or Gemm can fuse ("" is none); the kernels' ``_act`` codes.
ACTIVATIONS = ("", "Relu", "LeakyRelu", "Clip")

Shape = tuple[int, ...]


class ShapeError(errors.FlightError, ValueError):
    """A node's attributes or shapes are inconsistent (corrupt or hostile model)."""


def fail(node: Any, message: str) -> ShapeError:
    """The error for ``node``, naming it and its op."""
    return ShapeError(f"node {node.name!r} ({node.op}): {message}")


def _ints(node: Any, attrs: dict, key: str, count: int, minimum: int) -> list[int]:
    value = attrs.get(key)
    if (
        not isinstance(value, list | tuple)
        or len(value) != count
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value)
    ):
        raise fail(node, f"attribute {key} must be {count} integers >= {minimum}, got {value!r}")
    return list(value)


def _int(node: Any, attrs: dict, key: str, default: int, lo: int, hi: int) -> int:
    value = attrs.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise fail(node, f"attribute {key} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def _float(node: Any, attrs: dict, key: str, default: float) -> float:
    value = attrs.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or np.isnan(value):
        raise fail(node, f"attribute {key} must be a number, got {value!r}")
    return float(value)


def _rank(node: Any, shape: Shape, allowed: Sequence[int], what: str = "input") -> None:
    if len(shape) not in allowed:
        raise fail(node, f"{what} of rank {len(shape)} (shape {shape}), expected {allowed}")


def _window_out(size: int, k: int, stride: int, dil: int, begin: int, end: int) -> int:
    return (size + begin + end - dil * (k - 1) - 1) // stride + 1


def _activation(node: Any, attrs: dict) -> None:
    if attrs.get("activation", "") not in ACTIVATIONS:
        raise fail(node, f"unknown fused activation {attrs.get('activation')!r}")
    _float(node, attrs, "activation_alpha", 0.0)
    _float(node, attrs, "activation_beta", 0.0)


def conv(node, ins, attrs) -> Shape:
    """2-D (NCHW) or 3-D (NCDHW) convolution; pads are [begin..., end...] per spatial axis."""
    x, w = ins[0], ins[1]
    _rank(node, x, (4, 5))
    _rank(node, w, (len(x),), "weight")
    nd = len(x) - 2
    n, c, m, cg = x[0], x[1], w[0], w[1]
    kernel = list(w[2:])
    if _ints(node, attrs, "kernel_shape", nd, 1) != kernel:
        raise fail(node, f"kernel_shape {attrs.get('kernel_shape')} != weight {w[2:]}")
    strides = _ints(node, attrs, "strides", nd, 1)
    dilations = _ints(node, attrs, "dilations", nd, 1)
    pads = _ints(node, attrs, "pads", 2 * nd, 0)
    group = _int(node, attrs, "group", 1, 1, max(c, 1))
    if c % group or m % group or cg * group != c:
        raise fail(node, f"group {group} does not fit {c} input / {m} output channels ({w})")
    if len(ins) > 2 and ins[2] is not None and ins[2] != (m,):
        raise fail(node, f"bias shape {ins[2]} != ({m},)")
    _activation(node, attrs)
    out = [
        _window_out(x[2 + a], kernel[a], strides[a], dilations[a], pads[a], pads[nd + a])
        for a in range(nd)
    ]
    if min(out) < 1:
        raise fail(node, f"the kernel does not fit the padded input {x}")
    return (n, m, *out)


def _pool(node, ins, attrs, dilated: bool) -> list[Shape]:
    """2-D or 3-D pooling: the floor-mode shape, or with ceil_mode one more window per axis that
    starts inside the input (the converter resolved which; both are safe for the kernels)."""
    x = ins[0]
    _rank(node, x, (4, 5))
    nd = len(x) - 2
    kernel = _ints(node, attrs, "kernel_shape", nd, 1)
    strides = _ints(node, attrs, "strides", nd, 1)
    dilations = _ints(node, attrs, "dilations", nd, 1) if dilated else [1] * nd
    pads = _ints(node, attrs, "pads", 2 * nd, 0)
    if any(max(pads[a], pads[nd + a]) >= dilations[a] * (kernel[a] - 1) + 1 for a in range(nd)):
        raise fail(node, "pads must be smaller than the (dilated) kernel")
    if not dilated:
        _int(node, attrs, "count_include_pad", 0, 0, 1)
    floor = [
        _window_out(x[2 + a], kernel[a], strides[a], dilations[a], pads[a], pads[nd + a])
        for a in range(nd)
    ]
    if min(floor) < 1:
        raise fail(node, f"the window does not fit the padded input {x}")
    options = []
    for extra in itertools.product((0, 1), repeat=nd):
        out = [f + e for f, e in zip(floor, extra, strict=True)]
        if all((out[a] - 1) * strides[a] < x[2 + a] + pads[a] for a in range(nd)):
            options.append((*x[:2], *out))
    return options


def gather(node, ins, attrs) -> Shape:
    """ONNX Gather on a non-negative axis; indices (float32, exact integers) of any shape."""
    data, indices = ins
    if not data:
        raise fail(node, "Gather from a scalar")
    axis = _int(node, attrs, "axis", 0, 0, len(data) - 1)
    if not 1 <= data[axis] <= MAX_GATHER_ROWS:
        raise fail(
            node,
            f"{data[axis]} entries along axis {axis}; indices are exact float32, so 1 to "
            f"{MAX_GATHER_ROWS} (2**24)",
        )
    out = (*data[:axis], *indices, *data[axis + 1 :])
    if len(out) > MAX_RANK:
        raise fail(node, f"output rank {len(out)} is above {MAX_RANK}")
    return out


def same(node, ins, attrs) -> Shape:
    return ins[0]


def gemm(node, ins, attrs) -> Shape:
    a, b = ins[0], ins[1]
    _rank(node, a, (2,))
    _rank(node, b, (2,), "B")
    ta = _int(node, attrs, "transA", 0, 0, 1)
    tb = _int(node, attrs, "transB", 0, 0, 1)
    _float(node, attrs, "alpha", 1.0)
    _float(node, attrs, "beta", 1.0)
    _activation(node, attrs)
    m, k = (a[1], a[0]) if ta else a
    k2, n = (b[1], b[0]) if tb else b
    if k != k2:
        raise fail(node, f"inner dimensions differ: {a} and {b}")
    if len(ins) > 2 and ins[2] is not None:
        try:
            if np.broadcast_shapes(ins[2], (m, n)) != (m, n):
                raise ValueError
        except ValueError:
            raise fail(node, f"C of shape {ins[2]} does not broadcast to {(m, n)}") from None
    return (m, n)


def matmul(node, ins, attrs) -> Shape:
    a, b = ins
    if not a or not b:
        raise fail(node, "MatMul of a scalar")
    a2 = (1, *a) if len(a) == 1 else a
    b2 = (*b, 1) if len(b) == 1 else b
    if a2[-1] != b2[-2]:
        raise fail(node, f"inner dimensions differ: {a} and {b}")
    try:
        batch = np.broadcast_shapes(a2[:-2], b2[:-2])
    except ValueError:
        raise fail(node, f"batch dimensions do not broadcast: {a} and {b}") from None
    out = (*batch, a2[-2], b2[-1])
    if len(a) == 1:
        out = out[:-2] + out[-1:]
    if len(b) == 1:
        out = out[:-1]
    return out


def broadcast(node, ins, attrs) -> Shape:
    try:
        return tuple(np.broadcast_shapes(*ins))
    except ValueError:
        raise fail(node, f"shapes {ins} do not broadcast") from None


def batchnorm(node, ins, attrs) -> Shape:
    x = ins[0]
    if len(x) < 2:
        raise fail(node, f"input {x} has no channel dimension")
    for p in ins[1:5]:
        if p != (x[1],):
            raise fail(node, f"parameter of shape {p}, expected ({x[1]},)")
    if _float(node, attrs, "epsilon", 1e-5) < 0:
        raise fail(node, "negative epsilon")
    return x


def concat(node, ins, attrs) -> Shape:
    rank = len(ins[0])
    axis = _int(node, attrs, "axis", 0, 0, max(rank - 1, 0))
    for s in ins[1:]:
        if len(s) != rank or any(s[i] != ins[0][i] for i in range(rank) if i != axis):
            raise fail(node, f"inputs {ins} differ outside axis {axis}")
    out = list(ins[0])
    out[axis] = sum(s[axis] for s in ins)
    return tuple(out)


def reshape(node, ins, attrs) -> Shape:
    shape = attrs.get("shape")
    if not isinstance(shape, list | tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise fail(node, f"attribute shape must be non-negative integers, got {shape!r}")
    if int(np.prod(shape, dtype=np.int64)) != int(np.prod(ins[0], dtype=np.int64)):
        raise fail(node, f"cannot reshape {ins[0]} to {tuple(shape)}")
    return tuple(shape)


def transpose(node, ins, attrs) -> Shape:
    perm = attrs.get("perm")
    rank = len(ins[0])
    if not isinstance(perm, list | tuple) or sorted(perm) != list(range(rank)):
        raise fail(node, f"perm {perm!r} is not a permutation of {rank} axes")
    return tuple(ins[0][p] for p in perm)


def pad(node, ins, attrs) -> Shape:
    x = ins[0]
    rank = len(x)
    pads = _ints(node, attrs, "pads", 2 * rank, 0)
    mode = attrs.get("mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        raise fail(node, f"unknown pad mode {mode!r}")
    _float(node, attrs, "value", 0.0)
    for axis in range(rank):
        begin, end = pads[axis], pads[rank + axis]
        if mode == "reflect" and max(begin, end) > x[axis] - 1 and (begin or end):
            raise fail(node, f"reflect pad {begin},{end} too large for dimension {x[axis]}")
        if mode == "edge" and x[axis] == 0 and (begin or end):
            raise fail(node, "edge pad of an empty dimension")
    return tuple(x[i] + pads[i] + pads[rank + i] for i in range(rank))


def softmax(node, ins, attrs) -> Shape:
    _int(node, attrs, "axis", len(ins[0]) - 1, 0, max(len(ins[0]) - 1, 0))
    return ins[0]


def lrn(node, ins, attrs) -> Shape:
    if len(ins[0]) < 3:
        raise fail(node, f"LRN needs at least 3 dimensions, got {ins[0]}")
    _int(node, attrs, "size", 1, 1, 1 << 16)
    for key, default in (("alpha", 1e-4), ("beta", 0.75), ("bias", 1.0)):
        _float(node, attrs, key, default)
    return ins[0]


def global_avgpool(node, ins, attrs) -> Shape:
    _rank(node, ins[0], (4, 5))
    return (*ins[0][:2], *[1] * (len(ins[0]) - 2))


def leaky_relu(node, ins, attrs) -> Shape:
    _float(node, attrs, "alpha", 0.01)
    return ins[0]


def clip(node, ins, attrs) -> Shape:
    lo, hi = _float(node, attrs, "min", -np.inf), _float(node, attrs, "max", np.inf)
    if lo > hi:
        raise fail(node, f"min {lo} > max {hi}")
    return ins[0]


def maxpool(node, ins, attrs) -> list[Shape]:
    return _pool(node, ins, attrs, True)


def avgpool(node, ins, attrs) -> list[Shape]:
    return _pool(node, ins, attrs, False)
