"""Pooling kernels (NCHW float32): MaxPool, AveragePool, GlobalAveragePool.

The output shape (and so ceil_mode) is fixed by the caller's preallocated ``out``; see
:func:`pool_output_size`. Windows are reduced in row-major tap order, so results are reproducible.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._vrow import max_window


def pool_output_size(
    size: int,
    k: int,
    stride: int,
    pad_begin: int,
    pad_end: int,
    dil: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Output length of one pooled axis (ONNX rule; a ceil_mode window must start in bounds)."""
    span = size + pad_begin + pad_end - dil * (k - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad_begin:
        out -= 1
    return out


@njit(cache=True)
def _max_scalar(xc, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw):
    """One output of a window cut by the image border: in-image taps, row-major."""
    m = np.float32(-np.inf)
    for ki in range(kh):
        ih = oh * sh - pt + ki * dh
        if ih < 0 or ih >= xc.shape[0]:
            continue
        for kj in range(kw):
            iw = ow * sw - pl + kj * dw
            if iw < 0 or iw >= xc.shape[1]:
                continue
            v = xc[ih, iw]
            if v > m or v != v:
                m = v
    return m


@njit(cache=True)
def maxpool2d(x, out, kh, kw, sh, sw, pt, pl, dh, dw):
    """out[n,c,oh,ow] = max of the in-image taps of the window (padding never wins).

    Every output folds its taps in row-major order from -inf, keeping the first maximum and
    propagating NaN, as a scalar loop would. Columns whose window lies inside the image run in
    vectors (:func:`._vrow.max_window`); the few cut by the border run one by one.
    """
    hh = x.shape[2]
    ww = x.shape[3]
    ow_n = out.shape[3]
    s_h = x.strides[2] // 4
    s_w = x.strides[3] // 4
    if out.strides[3] != 4:
        raise ValueError("maxpool2d: out rows must be contiguous")
    # output columns [lo, hi) have every horizontal tap inside the image
    lo = min(ow_n, max(0, (pl + sw - 1) // sw))
    hi = max(lo, min(ow_n, (ww - 1 - (kw - 1) * dw + pl) // sw + 1))
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            xc = x[n, c]
            oc = out[n, c]
            for oh in range(out.shape[2]):
                orow = oc[oh]
                # in-image rows of the window: ki in [ka, kb)
                ka = 0
                while ka < kh and oh * sh - pt + ka * dh < 0:
                    ka += 1
                kb = kh
                while kb > ka and oh * sh - pt + (kb - 1) * dh >= hh:
                    kb -= 1
                for ow in range(lo):
                    orow[ow] = _max_scalar(xc, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw)
                if kb > ka and hi > lo:
                    ih = oh * sh - pt + ka * dh
                    origin = ih * s_h + (lo * sw - pl) * s_w
                    max_window(
                        orow, lo, xc, origin, sw * s_w, hi - lo, kb - ka, dh * s_h, kw, dw * s_w
                    )
                else:
                    for ow in range(lo, hi):
                        orow[ow] = np.float32(-np.inf)
                for ow in range(hi, ow_n):
                    orow[ow] = _max_scalar(xc, oh, ow, kh, kw, sh, sw, pt, pl, dh, dw)


@njit(cache=True)
def avgpool2d(x, out, kh, kw, sh, sw, pt, pl, pb, pr, count_include_pad):
    """Average over the window. With ``count_include_pad`` the divisor counts pad cells (up to the
    padded border, not the extra cells ceil_mode adds), otherwise only in-image cells."""
    hh = x.shape[2]
    ww = x.shape[3]
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            xc = x[n, c]
            oc = out[n, c]
            for oh in range(out.shape[2]):
                h0 = oh * sh - pt
                h1 = min(h0 + kh, hh + pb)
                ha = max(h0, 0)
                hb = min(h1, hh)
                for ow in range(out.shape[3]):
                    w0 = ow * sw - pl
                    w1 = min(w0 + kw, ww + pr)
                    wa = max(w0, 0)
                    wb = min(w1, ww)
                    s = np.float32(0.0)
                    for ih in range(ha, hb):
                        for iw in range(wa, wb):
                            s += xc[ih, iw]
                    cnt = (h1 - h0) * (w1 - w0) if count_include_pad else (hb - ha) * (wb - wa)
                    oc[oh, ow] = s / np.float32(max(cnt, 1))


@njit(cache=True)
def global_avgpool(x, out):
    """out[n, c] = mean of x[n, c, ...] (``x`` viewed as (N, C, S), ``out`` as (N, C))."""
    s_n = x.shape[2]
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            row = x[n, c]
            s = np.float32(0.0)
            for i in range(s_n):
                s += row[i]
            out[n, c] = s / np.float32(s_n)
