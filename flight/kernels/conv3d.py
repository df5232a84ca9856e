"""3-D convolution and pooling kernels (N, C, D, H, W float32), one thread, fixed order.

Volumetric models (medical or hyperspectral cubes, short video clips) are rare on board, so these
kernels favour reuse over speed: a 3-D Conv is im2col + the tuned GEMM micro-kernel
(:func:`.gemm.gemm_nn`, the same deterministic product every Conv and Gemm uses) per image and
group, then one bias / activation pass; the pools are direct loops. Every output element is
reduced in the same order on every run, replica and process, so replicas stay bit-identical.

The output shape (and so ``ceil_mode``) is fixed by the caller's preallocated ``out``, as in
:mod:`.pool`; shapes and attributes are checked once at load (:mod:`flight.model.shapes`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .gemm import gemm_nn, gemm_workspace_size

__all__ = ["avgpool3d", "conv3d", "conv3d_workspace_size", "maxpool3d"]


def conv3d_workspace_size(
    x_shape: tuple[int, ...], w_shape: tuple[int, ...], o_shape: tuple[int, ...], group: int
) -> int:
    """Float32 elements :func:`conv3d` needs: one group's column matrix plus the GEMM's own."""
    m, cg, kd, kh, kw = w_shape
    k = cg * kd * kh * kw
    p = o_shape[2] * o_shape[3] * o_shape[4]
    return k * p + gemm_workspace_size(m // group, p, k)


@njit(cache=True)
def _im2col(x, n, c0, cg, kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw, od, oh, ow, col):
    """col[(c, i, j, l), (z, y, x)] = the padded input tap (0 outside), row-major."""
    depth, height, width = x.shape[2], x.shape[3], x.shape[4]
    p = od * oh * ow
    row = 0
    for c in range(cg):
        xc = x[n, c0 + c]
        for i in range(kd):
            for j in range(kh):
                for q in range(kw):
                    base = row * p
                    at = 0
                    for z in range(od):
                        iz = z * sd - pd + i * dd
                        inz = 0 <= iz < depth
                        for y in range(oh):
                            iy = y * sh - ph + j * dh
                            iny = inz and 0 <= iy < height
                            for t in range(ow):
                                ix = t * sw - pw + q * dw
                                if iny and 0 <= ix < width:
                                    col[base + at] = xc[iz, iy, ix]
                                else:
                                    col[base + at] = np.float32(0.0)
                                at += 1
                    row += 1


@njit(cache=True)
def _bias_act(y, base, rows, cols, bias, boff, has_bias, act, a, b):
    """y[base + r*cols + j] = act(y + bias[boff + r]); codes as :mod:`._act` (0 none, 1 relu,
    2 leaky with slope ``a``, 3 clip to [a, b])."""
    a32, b32, zero = np.float32(a), np.float32(b), np.float32(0.0)
    for r in range(rows):
        bv = bias[boff + r] if has_bias else zero
        for j in range(cols):
            v = y[base + r * cols + j] + bv
            if act == 1:
                v = v if not v < 0 else zero
            elif act == 2:
                v = v if not v < 0 else v * a32
            elif act == 3:
                if v < a32:
                    v = a32
                if v > b32:
                    v = b32
            y[base + r * cols + j] = v


@njit(cache=True)
def conv3d(x, w, bias, out, sd, sh, sw, pd, ph, pw, dd, dh, dw, group, act, a, b, ws):
    """ONNX Conv on (N, C, D, H, W): ``w`` is (M, C/group, kd, kh, kw), ``bias`` (M,) or empty,
    ``pd, ph, pw`` the begin pads (the end pads are implied by ``out``'s shape). ``ws`` holds
    :func:`conv3d_workspace_size` floats. ``out`` is C-contiguous."""
    m, cg, kd, kh, kw = w.shape
    od, oh, ow = out.shape[2], out.shape[3], out.shape[4]
    p = od * oh * ow
    k = cg * kd * kh * kw
    mg = m // group
    col = ws[: k * p]
    gws = ws[k * p :]
    flat = out.reshape(-1)
    w2 = w.reshape(m, k)
    has_bias = bias.size > 0
    for n in range(x.shape[0]):
        for g in range(group):
            _im2col(
                x, n, g * cg, cg, kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw, od, oh, ow, col
            )
            base = (n * m + g * mg) * p
            gemm_nn(w2[g * mg : (g + 1) * mg], col.reshape(k, p), flat, base, p, gws)
            _bias_act(flat, base, mg, p, bias, g * mg, has_bias, act, a, b)


@njit(cache=True)
def maxpool3d(x, out, kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw):
    """out = max over the in-volume taps of each window (padding never wins; NaN wins), taps in
    row-major order."""
    depth, height, width = x.shape[2], x.shape[3], x.shape[4]
    ninf = np.float32(-np.inf)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            xc = x[n, c]
            oc = out[n, c]
            for z in range(out.shape[2]):
                for y in range(out.shape[3]):
                    for t in range(out.shape[4]):
                        best = ninf
                        for i in range(kd):
                            iz = z * sd - pd + i * dd
                            if iz < 0 or iz >= depth:
                                continue
                            for j in range(kh):
                                iy = y * sh - ph + j * dh
                                if iy < 0 or iy >= height:
                                    continue
                                for q in range(kw):
                                    ix = t * sw - pw + q * dw
                                    if ix < 0 or ix >= width:
                                        continue
                                    v = xc[iz, iy, ix]
                                    if v > best or v != v:
                                        best = v
                        oc[z, y, t] = best


@njit(cache=True)
def avgpool3d(x, out, kd, kh, kw, sd, sh, sw, pd, ph, pw, ed, eh, ew, count_include_pad):
    """Average over each window (begin pads ``pd, ph, pw``, end pads ``ed, eh, ew``). With
    ``count_include_pad`` the divisor counts pad cells up to the padded border (not the extra
    cells ceil_mode adds), otherwise only in-volume cells: as :func:`.pool.avgpool2d`."""
    depth, height, width = x.shape[2], x.shape[3], x.shape[4]
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            xc = x[n, c]
            oc = out[n, c]
            for z in range(out.shape[2]):
                z0 = z * sd - pd
                z1 = min(z0 + kd, depth + ed)
                za, zb = max(z0, 0), min(z1, depth)
                for y in range(out.shape[3]):
                    y0 = y * sh - ph
                    y1 = min(y0 + kh, height + eh)
                    ya, yb = max(y0, 0), min(y1, height)
                    for t in range(out.shape[4]):
                        t0 = t * sw - pw
                        t1 = min(t0 + kw, width + ew)
                        ta, tb = max(t0, 0), min(t1, width)
                        s = np.float32(0.0)
                        for iz in range(za, zb):
                            for iy in range(ya, yb):
                                for ix in range(ta, tb):
                                    s += xc[iz, iy, ix]
                        if count_include_pad:
                            cnt = (z1 - z0) * (y1 - y0) * (t1 - t0)
                        else:
                            cnt = (zb - za) * (yb - ya) * (tb - ta)
                        oc[z, y, t] = s / np.float32(max(cnt, 1))
