"""Elementwise kernels: activations, numpy-broadcasting binary ops, Sum, identity copies.

All kernels write into a caller-provided ``out`` (which may be the input itself for unary ops).
Binary ops broadcast like numpy: the Python wrapper turns both operands into zero-stride views of
the output shape (no copy) padded to rank 6, and one njit kernel walks them.
Arithmetic is float32, elementwise, with no reductions: results do not depend on vectorisation.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._act import ACT_CLIP, ACT_LEAKY, ACT_NONE, ACT_RELU
from .shape import _RANK, as_rank6

OP_ADD = 0
OP_SUB = 1
OP_MUL = 2
OP_DIV = 3


@njit(cache=True)
def act_flat(x, out, act, a, b):
    """out = act(x) over flat contiguous arrays (relu / leaky relu / clip, codes from ``_act``)."""
    a32 = np.float32(a)
    b32 = np.float32(b)
    zero = np.float32(0.0)
    n = x.shape[0]
    if act == ACT_RELU:
        for i in range(n):
            v = x[i]
            out[i] = v if not v < 0 else zero
    elif act == ACT_LEAKY:
        for i in range(n):
            v = x[i]
            out[i] = v if not v < 0 else v * a32
    elif act == ACT_CLIP:
        for i in range(n):
            v = x[i]
            if v < a32:
                v = a32
            if v > b32:
                v = b32
            out[i] = v
    else:
        for i in range(n):
            out[i] = x[i]


@njit(cache=True)
def sigmoid_flat(x, out):
    """out = 1 / (1 + exp(-x)), evaluated without overflow for either sign."""
    one = np.float32(1.0)
    for i in range(x.shape[0]):
        v = x[i]
        if v >= 0:
            out[i] = one / (one + np.exp(-v))
        else:
            e = np.exp(v)
            out[i] = e / (one + e)


@njit(cache=True)
def tanh_flat(x, out):
    """out = tanh(x)."""
    for i in range(x.shape[0]):
        out[i] = np.tanh(x[i])


@njit(cache=True)
def copy_flat(x, out):
    """out = x (flat, contiguous): Reshape, whose output is its input in a new shape."""
    for i in range(x.shape[0]):
        out[i] = x[i]


@njit(cache=True, inline="always")
def _bin(op, u, v):
    if op == 0:
        return u + v
    if op == 1:
        return u - v
    if op == 2:
        return u * v
    return u / v


@njit(cache=True)
def _binary_flat(a, b, out, op):
    n = out.shape[0]
    if op == 0:
        for i in range(n):
            out[i] = a[i] + b[i]
    elif op == 1:
        for i in range(n):
            out[i] = a[i] - b[i]
    elif op == 2:
        for i in range(n):
            out[i] = a[i] * b[i]
    elif op == 3:
        for i in range(n):
            out[i] = a[i] / b[i]
    else:
        for i in range(n):
            out[i] = _bin(op, a[i], b[i])


@njit(cache=True)
def _binary_scalar(a, s, out, op, scalar_left):
    n = out.shape[0]
    if scalar_left:
        for i in range(n):
            out[i] = _bin(op, s, a[i])
    elif op == 0:
        for i in range(n):
            out[i] = a[i] + s
    elif op == 2:
        for i in range(n):
            out[i] = a[i] * s
    else:
        for i in range(n):
            out[i] = _bin(op, a[i], s)


@njit(cache=True)
def _binary_nd(a, b, out, op):
    """Rank-6 strided walk; ``a``/``b`` are broadcast views of ``out``'s shape."""
    s0, s1, s2, s3, s4, s5 = out.shape
    for i0 in range(s0):
        for i1 in range(s1):
            for i2 in range(s2):
                for i3 in range(s3):
                    for i4 in range(s4):
                        ra = a[i0, i1, i2, i3, i4]
                        rb = b[i0, i1, i2, i3, i4]
                        ro = out[i0, i1, i2, i3, i4]
                        for i5 in range(s5):
                            ro[i5] = _bin(op, ra[i5], rb[i5])


def binary(op: int, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out = a (op) b with numpy broadcasting (op: OP_ADD, OP_SUB, OP_MUL, OP_DIV).

    ``out`` must be C-contiguous with the broadcast shape (rank <= 6); it may alias ``a`` or ``b``
    when that operand already has the output shape.
    """
    shape = out.shape
    if a.shape == shape and b.shape == shape and a.flags.c_contiguous and b.flags.c_contiguous:
        _binary_flat(a.reshape(-1), b.reshape(-1), out.reshape(-1), op)
    elif b.size == 1 and a.shape == shape and a.flags.c_contiguous:
        _binary_scalar(a.reshape(-1), np.float32(b.reshape(-1)[0]), out.reshape(-1), op, False)
    elif a.size == 1 and b.shape == shape and b.flags.c_contiguous:
        _binary_scalar(b.reshape(-1), np.float32(a.reshape(-1)[0]), out.reshape(-1), op, True)
    else:
        if len(shape) > _RANK:
            raise ValueError(f"binary ops support rank <= {_RANK}, got {len(shape)}")
        a6, b6 = as_rank6(np.broadcast_to(a, shape)), as_rank6(np.broadcast_to(b, shape))
        _binary_nd(a6, b6, as_rank6(out), op)


def sum_n(inputs: list[np.ndarray], out: np.ndarray) -> None:
    """ONNX Sum: out = ((x0 + x1) + x2) + ... with broadcasting, accumulated in input order."""
    if len(inputs) == 1:
        binary(OP_ADD, inputs[0], np.zeros(1, np.float32), out)
        return
    binary(OP_ADD, inputs[0], inputs[1], out)
    for x in inputs[2:]:
        binary(OP_ADD, out, x, out)


__all__ = [
    "ACT_CLIP",
    "ACT_LEAKY",
    "ACT_NONE",
    "ACT_RELU",
    "OP_ADD",
    "OP_DIV",
    "OP_MUL",
    "OP_SUB",
    "act_flat",
    "binary",
    "copy_flat",
    "sigmoid_flat",
    "sum_n",
    "tanh_flat",
]
