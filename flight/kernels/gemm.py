"""Blocked, packed, single-threaded float32 GEMM (Gemm / MatMul) in numba.

The loop structure is the usual BLIS one: an ``NC``-wide column block of B and a ``KC``-deep slice
are packed into NR-column micro-panels, an ``MC``-row block of A into MR-row micro-panels, and the
register-blocked micro-kernel (``_ukernel.ukernel``) walks the tiles. No BLAS is called (numba would
route ``np.dot`` to SciPy's BLAS, which is not a flown dependency).

Determinism: every output element is ``sum over k-slices (in order) of sum over p (in order)``, with
the slice width ``KC`` a module constant; there are no threads and no data-dependent reordering. So
the same inputs give the same bits in every run, replica and process that uses the same compiled
code.

Scratch: the caller passes one float32 workspace of at least :func:`gemm_workspace_size` elements
(packed A block, packed B block and one edge tile); nothing is allocated per call.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._ukernel import MR, NR, pack_panel, strided_copy, ukernel
from ._vrow import dot

#: Depth of a packed k-slice (a B micro-panel is KC*NR*4 = 16 KiB: it stays in L1).
KC = 256
#: Rows of A packed per block (MC*KC*4 = about 80 KiB: it stays in L2). Multiple of MR.
MC = MR * max(1, 80 // MR)
#: Columns of B packed per block (KC*NC*4 = 1 MiB: L2/L3). Multiple of NR.
NC = 1024

_F32 = np.float32


@njit(cache=True, inline="always")
def _rup(x, m):
    return (x + m - 1) // m * m


def gemm_workspace_size(m: int, n: int, k: int) -> int:
    """Float32 elements of workspace that :func:`gemm_nn` needs for an (m x k) @ (k x n) product."""
    kc = max(1, min(k, KC))
    return _rup(min(max(m, 1), MC), MR) * kc + kc * _rup(min(max(n, 1), NC), NR) + MR * NR


@njit(cache=True)
def _ws_layout(m, n, k):
    kc = max(1, min(k, KC))
    boff = _rup(min(max(m, 1), MC), MR) * kc
    toff = boff + kc * _rup(min(max(n, 1), NC), NR)
    return boff, toff


@njit(cache=True)
def _pack_a(a, i0, mc, p0, kc, ws, off):
    """Pack a[i0:i0+mc, p0:p0+kc] (any non-negative strides) into MR-row micro-panels."""
    sr = a.strides[0] // 4
    sc = a.strides[1] // 4
    for q in range((mc + MR - 1) // MR):
        r0 = i0 + q * MR
        pack_panel(ws, off + q * kc * MR, a, r0 * sr + p0 * sc, sr, sc, min(MR, i0 + mc - r0), kc)


@njit(cache=True)
def _pack_b(b, p0, kc, j0, nc, ws, off):
    """Pack b[p0:p0+kc, j0:j0+nc] (any strides) into NR-column micro-panels, zero-padded."""
    sr = b.strides[0] // 4
    sc = b.strides[1] // 4
    for q in range((nc + NR - 1) // NR):
        base = off + q * kc * NR
        c0 = j0 + q * NR
        nr = min(NR, j0 + nc - c0)
        for p in range(kc):
            strided_copy(ws, base + p * NR, b, (p0 + p) * sr + c0 * sc, sc, nr, NR)


@njit(cache=True)
def _macro(asrc, aoff, ws, boff, ldb, bstep, toff, kc, mc, nc, c, cbase, ldc, accumulate):
    """Run the micro-kernel over a packed (mc x kc) A block and a (kc x nc) B block.

    A's micro-panels are consecutive from ``asrc[aoff]`` (the workspace, or prepacked weights).
    B's j-th NR-column panel starts at ``ws[boff + j*bstep]`` with rows ``ldb`` apart:
    ``(bstep, ldb) = (kc*NR, NR)`` for packed micro-panels, ``(NR, row length)`` for a row-major
    block (used by the convolution, whose gathered patch rows are already contiguous).
    Writes the (mc x nc) result at flat offset ``cbase`` of the C-contiguous array ``c`` (row stride
    ``ldc``); a tile cut by the right edge goes through the workspace tile at ``toff``.
    """
    for jr in range(0, nc, NR):
        nr = min(NR, nc - jr)
        bo = boff + (jr // NR) * bstep
        for ir in range(0, mc, MR):
            mr = min(MR, mc - ir)
            ao = aoff + (ir // MR) * kc * MR
            co = cbase + ir * ldc + jr
            if nr == NR:
                ukernel(kc, asrc, ao, ws, bo, ldb, c, co, ldc, mr, accumulate)
            else:
                ukernel(kc, asrc, ao, ws, bo, ldb, ws, toff, NR, MR, False)
                for i in range(mr):
                    ro = co + i * ldc
                    to = toff + i * NR
                    if accumulate:
                        for j in range(nr):
                            c[ro + j] += ws[to + j]
                    else:
                        for j in range(nr):
                            c[ro + j] = ws[to + j]


@njit(cache=True)
def gemm_nn(a, b, c, cbase, ldc, ws):
    """c[cbase + i*ldc + j] = sum_p a[i, p] * b[p, j]: the core product (overwrites C).

    ``a`` (M x K) and ``b`` (K x N) may have any strides (transposed views are fine); ``c`` is a
    flat C-contiguous float32 array. ``ws`` holds at least ``gemm_workspace_size(M, N, K)`` floats.
    """
    m, k = a.shape
    n = b.shape[1]
    if k == 0:
        for i in range(m):
            for j in range(n):
                c[cbase + i * ldc + j] = 0.0
        return
    boff, toff = _ws_layout(m, n, k)
    for j0 in range(0, n, NC):
        nc = min(NC, n - j0)
        for p0 in range(0, k, KC):
            kc = min(KC, k - p0)
            _pack_b(b, p0, kc, j0, nc, ws, boff)
            for i0 in range(0, m, MC):
                mc = min(MC, m - i0)
                _pack_a(a, i0, mc, p0, kc, ws, 0)
                _macro(
                    ws,
                    0,
                    ws,
                    boff,
                    NR,
                    kc * NR,
                    toff,
                    kc,
                    mc,
                    nc,
                    c,
                    cbase + i0 * ldc + j0,
                    ldc,
                    p0 > 0,
                )


#: A Gemm with at most this many rows and a transposed B (a fully connected layer at batch 1)
#: runs as dot products over B's contiguous rows: packing B's columns for the tile costs more
#: than the product itself (0.7 ms against 0.2 for onnxruntime on ResNet-18's 512x1000 layer).
ROWS_BY_DOT = 2


@njit(cache=True)
def _gemm_rows_dot(a, bt, out):
    """out[i, j] = dot(a[i, :], bt[j, :]) (``bt`` is B transposed, C-contiguous rows)."""
    k = a.shape[1]
    sa = a.strides[0] // 4
    for i in range(a.shape[0]):
        row = out[i]
        for j in range(bt.shape[0]):
            row[j] = dot(a, i * sa, bt, j * k, k)


@njit(cache=True)
def _gemm_epilogue(out, c, has_c, alpha, beta):
    """out = alpha*out + beta*c (c broadcast to out's shape, any strides); float32 arithmetic."""
    al = np.float32(alpha)
    be = np.float32(beta)
    m, n = out.shape
    for i in range(m):
        row = out[i]
        if has_c:
            crow = c[i]
            for j in range(n):
                row[j] = al * row[j] + be * crow[j]
        elif al != np.float32(1.0):
            for j in range(n):
                row[j] = al * row[j]


@njit(cache=True)
def _matmul_batched(a3, b3, out3, ws):
    """out3[i] = a3[i] @ b3[i] for every batch i (a3/b3 may be broadcast views)."""
    m = out3.shape[1]
    n = out3.shape[2]
    outf = out3.reshape(-1)
    for i in range(out3.shape[0]):
        gemm_nn(a3[i], b3[i], outf, i * m * n, n, ws)


def gemm(
    a: np.ndarray,
    b: np.ndarray,
    c: np.ndarray | None,
    out: np.ndarray,
    alpha: float = 1.0,
    beta: float = 1.0,
    trans_a: bool = False,
    trans_b: bool = False,
    ws: np.ndarray | None = None,
) -> None:
    """ONNX Gemm: out = alpha * op(a) @ op(b) + beta * c, op = transpose when asked.

    ``c`` (optional) broadcasts to (M, N) (scalar, (N,), (1, N), (M, 1) or (M, N)). ``out`` is a
    C-contiguous (M, N) float32 array; ``ws`` holds ``gemm_workspace_size(M, N, K)`` floats.
    """
    av = a.T if trans_a else a
    bv = b.T if trans_b else b
    m, k = av.shape
    n = bv.shape[1]
    if m <= ROWS_BY_DOT and trans_b and b.flags.c_contiguous and av.strides[1] == 4:
        _gemm_rows_dot(av, b, out)
    else:
        if ws is None:
            ws = np.empty(gemm_workspace_size(m, n, k), np.float32)
        gemm_nn(av, bv, out.reshape(-1), 0, n, ws)
    has_c = c is not None and beta != 0.0
    cv = np.broadcast_to(c, (m, n)) if has_c else out
    if has_c or alpha != 1.0:
        _gemm_epilogue(out, cv, has_c, float(alpha), float(beta))


def matmul_shape(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> tuple[int, ...]:
    """numpy.matmul result shape (1-D operands promoted and the promoted axis dropped)."""
    a1 = len(a_shape) == 1
    b1 = len(b_shape) == 1
    a_s = (1, *a_shape) if a1 else tuple(a_shape)
    b_s = (*b_shape, 1) if b1 else tuple(b_shape)
    batch = np.broadcast_shapes(a_s[:-2], b_s[:-2])
    shape = (*batch, a_s[-2], b_s[-1])
    if a1:
        shape = shape[:-2] + shape[-1:]
    if b1:
        shape = shape[:-1]
    return tuple(int(s) for s in shape)


def matmul_workspace_size(a_shape: tuple[int, ...], b_shape: tuple[int, ...]) -> int:
    """Float32 elements of workspace :func:`matmul` needs."""
    m = 1 if len(a_shape) == 1 else a_shape[-2]
    k = a_shape[-1]
    n = 1 if len(b_shape) == 1 else b_shape[-1]
    return gemm_workspace_size(m, n, k)


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray, ws: np.ndarray | None = None) -> None:
    """ONNX MatMul (numpy semantics: 1-D promotion, broadcast batch dimensions) into ``out``."""
    a_s = a.reshape(1, -1) if a.ndim == 1 else a
    b_s = b.reshape(-1, 1) if b.ndim == 1 else b
    batch = np.broadcast_shapes(a_s.shape[:-2], b_s.shape[:-2])
    m, k = a_s.shape[-2:]
    n = b_s.shape[-1]
    nb = int(np.prod(batch, dtype=np.int64))
    a3 = np.broadcast_to(a_s, (*batch, m, k)).reshape(nb, m, k) if batch else a_s.reshape(1, m, k)
    b3 = np.broadcast_to(b_s, (*batch, k, n))
    b3 = b3.reshape(nb, k, n) if batch else b_s.reshape(1, k, n)
    if ws is None:
        ws = np.empty(gemm_workspace_size(m, n, k), np.float32)
    _matmul_batched(a3, b3, out.reshape(nb, m, n), ws)
