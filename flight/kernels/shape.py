"""Data-movement kernels: Concat, Transpose, Pad, Gather (Reshape & co. are flat copies, see
elementwise).

The Python wrappers only build views (no data copies) and call one njit strided-copy kernel.
Ranks up to 6 are supported.
"""

from __future__ import annotations

import numpy as np
from numba import njit

PAD_CONSTANT = 0
PAD_REFLECT = 1
PAD_EDGE = 2

_RANK = 6


@njit(cache=True)
def copy_nd(src, dst):
    """dst[...] = src[...] for two rank-6 arrays of the same shape and any strides."""
    s0, s1, s2, s3, s4, s5 = dst.shape
    for i0 in range(s0):
        for i1 in range(s1):
            for i2 in range(s2):
                for i3 in range(s3):
                    for i4 in range(s4):
                        rs = src[i0, i1, i2, i3, i4]
                        rd = dst[i0, i1, i2, i3, i4]
                        for i5 in range(s5):
                            rd[i5] = rs[i5]


def as_rank6(x: np.ndarray) -> np.ndarray:
    """``x`` as a rank-6 view (leading unit axes), the one rank the strided kernels take."""
    if x.ndim > _RANK:
        raise ValueError(f"rank <= {_RANK} supported, got {x.ndim}")
    return x.reshape((1,) * (_RANK - x.ndim) + x.shape)


def transpose(x: np.ndarray, out: np.ndarray, perm: tuple[int, ...] | None = None) -> None:
    """ONNX Transpose: out = x.transpose(perm) (default: reverse the axes)."""
    copy_nd(as_rank6(x.transpose(perm)), as_rank6(out))


def concat(inputs: list[np.ndarray], out: np.ndarray, axis: int) -> None:
    """ONNX Concat along ``axis`` (negative allowed) into ``out``, inputs in order."""
    axis = axis % out.ndim
    off = 0
    for x in inputs:
        n = x.shape[axis]
        idx = tuple(slice(None) if d != axis else slice(off, off + n) for d in range(out.ndim))
        copy_nd(as_rank6(x), as_rank6(out[idx]))
        off += n


@njit(cache=True)
def _src_index(i, n, before, mode):
    j = i - before
    if j >= 0 and j < n:
        return j
    if mode == 0:
        return -1
    if mode == 2:
        return 0 if j < 0 else n - 1
    if n == 1:
        return 0
    period = 2 * (n - 1)
    j = j % period
    if j < 0:
        j += period
    return j if j < n else period - j


@njit(cache=True)
def pad_nd(x, out, before, mode, value):
    """Rank-6 Pad: out[i] = x[map(i)] with ``mode`` 0 constant (``value``), 1 reflect, 2 edge."""
    o0, o1, o2, o3, o4, o5 = out.shape
    n0, n1, n2, n3, n4, n5 = x.shape
    cv = np.float32(value)
    for i0 in range(o0):
        j0 = _src_index(i0, n0, before[0], mode)
        for i1 in range(o1):
            j1 = _src_index(i1, n1, before[1], mode)
            for i2 in range(o2):
                j2 = _src_index(i2, n2, before[2], mode)
                for i3 in range(o3):
                    j3 = _src_index(i3, n3, before[3], mode)
                    for i4 in range(o4):
                        j4 = _src_index(i4, n4, before[4], mode)
                        outer_ok = j0 >= 0 and j1 >= 0 and j2 >= 0 and j3 >= 0 and j4 >= 0
                        for i5 in range(o5):
                            j5 = _src_index(i5, n5, before[5], mode)
                            if outer_ok and j5 >= 0:
                                out[i0, i1, i2, i3, i4, i5] = x[j0, j1, j2, j3, j4, j5]
                            else:
                                out[i0, i1, i2, i3, i4, i5] = cv


def pad(
    x: np.ndarray,
    out: np.ndarray,
    pads: tuple[int, ...],
    mode: str = "constant",
    value: float = 0.0,
) -> None:
    """ONNX Pad: ``pads`` = (begin_0, ..., begin_r-1, end_0, ..., end_r-1), non-negative."""
    r = x.ndim
    before = np.zeros(_RANK, np.int64)
    before[_RANK - r :] = pads[:r]
    code = {"constant": PAD_CONSTANT, "reflect": PAD_REFLECT, "edge": PAD_EDGE}[mode]
    pad_nd(as_rank6(x), as_rank6(out), before, code, float(value))


@njit(cache=True)
def gather_rows(data, indices, out):
    """out[o, k, i] = data[o, indices[k], i] for data viewed as (outer, size, inner).

    ``indices`` are float32 holding exact integers (the executor checks a graph input's range at
    the boundary), ONNX-wrapped when negative. An index that is not a whole number in
    [-size, size) can only come from a corrupted buffer: its output slice becomes NaN (the replica
    then loses the vote), never a read outside ``data``."""
    size = data.shape[1]
    nan = np.float32(np.nan)
    for k in range(indices.shape[0]):
        v = indices[k]
        ok = v == np.floor(v) and v >= -size and v < size
        j = 0
        if ok:
            j = int(v)
            if j < 0:
                j += size
        for o in range(data.shape[0]):
            for i in range(data.shape[2]):
                out[o, k, i] = data[o, j, i] if ok else nan


def gather(data: np.ndarray, indices: np.ndarray, out: np.ndarray, axis: int) -> None:
    """ONNX Gather on non-negative ``axis`` by float32 ``indices`` (see :func:`gather_rows`)."""
    outer = int(np.prod(data.shape[:axis], dtype=np.int64))
    inner = int(np.prod(data.shape[axis + 1 :], dtype=np.int64))
    size = data.shape[axis]
    count = indices.size
    gather_rows(
        data.reshape(outer, size, inner),
        indices.reshape(-1),
        out.reshape(outer, count, inner),
    )
