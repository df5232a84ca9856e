"""2-D convolution (NCHW, float32): direct GEMM for unit stride, implicit im2col otherwise.

* Unit stride (any padding / dilation): the image is copied once into a zero-padded buffer of row
  length ``Wp``; output pixel ``(oh, ow)`` becomes virtual pixel ``oh*Wp + ow``, so the NR output
  pixels of a tile read NR *consecutive* floats for every (channel, ki, kj) tap. The micro-kernel
  (``ukernel_conv``) reads them in place: no im2col at all. Pixels with ``ow >= OW`` are computed
  and dropped (a ``(Wp - OW)/Wp`` overhead). 1x1 convolutions take this path too.
* Other strides: patch rows are gathered straight into a row-major GEMM block (implicit im2col,
  ``KC`` rows at a time) and multiplied with the same micro-kernel as :mod:`.gemm`.
* Depthwise (one input channel per group, any multiplier): a direct kernel, no workspace.

Output channels are the GEMM rows, tiled by MR; the k dimension is sliced by whole input channels
(``_conv_kc``), so weights can be prepacked once with :func:`pack_conv_weights` and read in place.
Bias and a fused activation (see :mod:`._act`) are applied in one pass after the product.
Determinism: fixed blocking, one thread, fixed summation order (see :mod:`._ukernel`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._act import bias_act_rows
from ._ukernel import MR, NR, pack_panel, strided_copy, ukernel_conv
from ._ukernel_rows import AVAILABLE, MT, NT, ukernel_conv_rows
from .gemm import KC, MC, NC, _macro


def conv_output_size(size: int, k: int, stride: int, pad_begin: int, pad_end: int, dil: int) -> int:
    """Output length of one spatial axis (ONNX floor rule)."""
    return (size + pad_begin + pad_end - dil * (k - 1) - 1) // stride + 1


#: Output width up to which a unit-stride conv with prepacked weights uses the row kernel
#: (``_ukernel_rows``) on paths that have it: wider rows waste little on virtual pixels.
ROWS_MAX_WIDTH = 28


#: Output pixels up to which a strided conv with prepacked weights uses the row kernel on the
#: gathered patches (all of K at once: K x pixels floats of workspace).
ROWS_MAX_PIXELS = 14 * 14


@njit(cache=True)
def _rows_im2col(mg, hw):
    """A strided conv onto a small map (``hw`` pixels, ``mg`` channels a group) on a path with
    the row kernel: no 32-wide pixel tiles over 49 or 196 columns."""
    return AVAILABLE and mg % NT == 0 and hw <= ROWS_MAX_PIXELS


@njit(cache=True)
def _conv_kc(cg, kh, kw):
    """Input channels per k-slice: whole channels, about KC taps."""
    return max(1, min(cg, KC // (kh * kw)))


@njit(cache=True)
def _rup(x, m):
    return (x + m - 1) // m * m


@njit(cache=True)
def _ldb(nc):
    """Row stride of a gathered patch block: nc rounded up to NR, kept off 1 KiB multiples."""
    ld = _rup(nc, NR)
    return ld + NR if ld % 256 == 0 else ld


@njit(cache=True)
def _direct_layout(cg, kh, kw, dh, dw, mg, oh_n, ow_n, h_p, w_p):
    """(padded-image offset, output-tile offset, end, tile row length) of the direct workspace."""
    kcmax = _conv_kc(cg, kh, kw) * kh * kw
    a_len = _rup(min(max(mg, 1), MC), MR) * kcmax
    xp_len = cg * h_p * w_p + 2 * NR
    ncv = min(_rup(oh_n * w_p, NR), NC)
    return a_len, a_len + xp_len, a_len + xp_len + mg * ncv, ncv


def conv_workspace_size(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    out_shape: tuple[int, ...],
    strides: tuple[int, int] = (1, 1),
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    dilations: tuple[int, int] = (1, 1),
    group: int = 1,
) -> int:
    """Float32 elements of workspace :func:`conv2d` needs (0 for depthwise convolutions).

    Shapes are NCHW input, (M, C/group, kh, kw) weights, NCHW output; ``pads`` is ONNX order
    (top, left, bottom, right).
    """
    m, cg, kh, kw = w_shape
    if cg == 1 and group > 1:
        return 0
    mg = m // group
    if strides == (1, 1) or tuple(strides) == (1, 1):
        h_p = out_shape[2] + dilations[0] * (kh - 1)
        w_p = out_shape[3] + dilations[1] * (kw - 1)
        return int(
            _direct_layout(
                cg, kh, kw, dilations[0], dilations[1], mg, out_shape[2], out_shape[3], h_p, w_p
            )[2]
        )
    kcmax = int(_conv_kc(cg, kh, kw)) * kh * kw
    a_len = -(-min(max(mg, 1), MC) // MR) * MR * kcmax
    hw = out_shape[2] * out_shape[3]
    size = a_len + kcmax * int(_ldb(min(max(hw, 1), NC))) + MR * NR
    if _rows_im2col(mg, hw):  # all of K gathered at once for the row kernel
        size = max(size, cg * kh * kw * int(_ldb(hw)) + MT)
    return size


@njit(cache=True)
def _pack_weights_into(w2, group, kh, kw, dst):
    m, k = w2.shape
    mg = m // group
    mgp = _rup(mg, MR)
    cg = k // (kh * kw)
    khw = kh * kw
    cb = _conv_kc(cg, kh, kw)
    sr = w2.strides[0] // 4
    for g in range(group):
        for c0 in range(0, cg, cb):
            kc = min(cb, cg - c0) * khw
            base = g * mgp * k + c0 * khw * mgp
            for q in range(mgp // MR):
                r0 = g * mg + q * MR
                mr = min(MR, (g + 1) * mg - r0)
                pack_panel(dst, base + q * kc * MR, w2, r0 * sr + c0 * khw, sr, 1, mr, kc)


def packed_weights_size(w_shape: tuple[int, ...], group: int) -> int:
    """Float32 elements of :func:`pack_conv_weights` output (rows padded to a multiple of MR)."""
    m, cg, kh, kw = w_shape
    return group * (-(-(m // group) // MR) * MR) * cg * kh * kw


def pack_conv_weights(w: np.ndarray, group: int = 1) -> np.ndarray:
    """Prepack (M, C/group, kh, kw) weights into micro-panels, once, at model load.

    :func:`conv2d_packed` then reads them in place and skips per-call weight packing (which costs a
    full pass over the weights: ~1 ms for a 512x512x3x3 layer). Depthwise weights need no packing.
    """
    w = np.ascontiguousarray(w, dtype=np.float32)
    m, cg, kh, kw = w.shape
    out = np.zeros(packed_weights_size(w.shape, group), np.float32)
    _pack_weights_into(w.reshape(m, cg * kh * kw), group, kh, kw, out)
    return out


@njit(cache=True)
def _im2col_rows(x, cbase, kh, kw, sh, sw, pt, pl, dh, dw, ow_n, p0, kc, j0, nc, ws, off, ldb):
    """Gather rows p0..p0+kc-1, pixel columns j0..j0+nc-1 of the virtual im2col matrix.

    Row p is (channel, ki, kj) = divmod chain of p; column j is output pixel (j // ow_n, j % ow_n).
    ``x`` is one (C, H, W) image; taps outside the image are zeros. Row p lands at
    ``ws[off + p*ldb:]``, zero-padded to a multiple of NR; each run of pixels on one output row is
    a single (strided) copy.
    """
    hh = x.shape[1]
    ww = x.shape[2]
    s_c = x.strides[0] // 4
    s_h = x.strides[1] // 4
    s_w = x.strides[2] // 4
    khw = kh * kw
    ncp = _rup(nc, NR)
    oh0 = j0 // ow_n
    ow0 = j0 - oh0 * ow_n
    c = cbase + p0 // khw
    r = p0 - (p0 // khw) * khw
    ki = r // kw
    kj = r - ki * kw
    for p in range(kc):
        o = off + p * ldb
        jj = 0
        oh = oh0
        ow = ow0
        while jj < nc:
            seg = min(nc - jj, ow_n - ow)
            ih = oh * sh - pt + ki * dh
            if ih < 0 or ih >= hh:
                strided_copy(ws, o + jj, x, 0, 0, 0, seg)
            else:
                iw0 = ow * sw - pl + kj * dw
                t_lo = 0
                if iw0 < 0:
                    t_lo = min(seg, (-iw0 + sw - 1) // sw)
                t_hi = 0
                if iw0 < ww:
                    t_hi = min(seg, (ww - iw0 + sw - 1) // sw)
                t_hi = max(t_hi, t_lo)
                if t_lo > 0:
                    strided_copy(ws, o + jj, x, 0, 0, 0, t_lo)
                strided_copy(
                    ws,
                    o + jj + t_lo,
                    x,
                    c * s_c + ih * s_h + (iw0 + t_lo * sw) * s_w,
                    sw * s_w,
                    t_hi - t_lo,
                    t_hi - t_lo,
                )
                if t_hi < seg:
                    strided_copy(ws, o + jj + t_hi, x, 0, 0, 0, seg - t_hi)
            jj += seg
            oh += 1
            ow = 0
        if nc < ncp:
            strided_copy(ws, o + nc, x, 0, 0, 0, ncp - nc)
        kj += 1
        if kj == kw:
            kj = 0
            ki += 1
            if ki == kh:
                ki = 0
                c += 1


@njit(cache=True)
def _a_block(w2, wp, packed, g, mg, k, c0, kc, i0, mc, ws):
    """Return (array, offset) of the packed A block: prepacked weights, or packed now into ws."""
    if packed:
        mgp = _rup(mg, MR)
        return wp, g * mgp * k + c0 * mgp + (i0 // MR) * kc * MR
    sr = w2.strides[0] // 4
    for q in range((mc + MR - 1) // MR):
        r0 = g * mg + i0 + q * MR
        pack_panel(ws, q * kc * MR, w2, r0 * sr + c0, sr, 1, min(MR, g * mg + i0 + mc - r0), kc)
    return ws, 0


@njit(cache=True)
def _conv_direct(x, w2, wp, packed, out, ws, kh, kw, pt, pl, dh, dw, group):
    """Unit-stride convolution via the padded-image micro-kernel (see module docstring)."""
    c_in = x.shape[1]
    hh = x.shape[2]
    ww = x.shape[3]
    m = out.shape[1]
    oh_n = out.shape[2]
    ow_n = out.shape[3]
    cg = c_in // group
    mg = m // group
    khw = kh * kw
    k = cg * khw
    h_p = oh_n + dh * (kh - 1)
    w_p = ow_n + dw * (kw - 1)
    xoff, toff, _, ncv = _direct_layout(cg, kh, kw, dh, dw, mg, oh_n, ow_n, h_p, w_p)
    cb = _conv_kc(cg, kh, kw)
    vtot = oh_n * w_p
    chan = h_p * w_p
    zero = np.float32(0.0)
    outf = out.reshape(-1)
    for n in range(x.shape[0]):
        for g in range(group):
            # zero-padded copy of this group's channels
            for i in range(cg * chan + 2 * NR):
                ws[xoff + i] = zero
            for c in range(cg):
                for ih in range(hh):
                    r = ih + pt
                    if r < 0 or r >= h_p:
                        continue
                    lo = max(0, -pl)
                    hi = min(ww, w_p - pl)
                    if hi > lo:
                        strided_copy(
                            ws,
                            xoff + c * chan + r * w_p + lo + pl,
                            x[n, g * cg + c],
                            ih * ww + lo,
                            1,
                            hi - lo,
                            hi - lo,
                        )
            if packed and AVAILABLE and ow_n <= ROWS_MAX_WIDTH and mg % NT == 0:
                # small map: real pixels broadcast, channels in lanes (no virtual pixels)
                mgp = _rup(mg, MR)
                for q0 in range(0, mg, NT):
                    for oh in range(oh_n):
                        obase = ((n * m + g * mg + q0) * oh_n + oh) * ow_n
                        for ow0 in range(0, ow_n, MT):
                            ukernel_conv_rows(
                                wp,
                                g * mgp * k,
                                q0 // MR,
                                mgp,
                                cg,
                                cb,
                                kh,
                                kw,
                                ws,
                                xoff + oh * w_p + ow0,
                                chan,
                                dh * w_p,
                                dw,
                                outf,
                                obase + ow0,
                                oh_n * ow_n,
                                min(MT, ow_n - ow0),
                            )
                continue
            for j0 in range(0, vtot, ncv):
                nc = min(ncv, vtot - j0)
                for c0 in range(0, cg, cb):
                    nch = min(cb, cg - c0)
                    kc = nch * khw
                    for i0 in range(0, mg, MC):
                        mc = min(MC, mg - i0)
                        asrc, aoff = _a_block(w2, wp, packed, g, mg, k, c0 * khw, kc, i0, mc, ws)
                        for jr in range(0, nc, NR):
                            xo = xoff + c0 * chan + j0 + jr
                            for ir in range(0, mc, MR):
                                ukernel_conv(
                                    nch,
                                    kh,
                                    kw,
                                    chan,
                                    dh * w_p,
                                    dw,
                                    asrc,
                                    aoff + (ir // MR) * kc * MR,
                                    ws,
                                    xo,
                                    ws,
                                    toff + (i0 + ir) * ncv + jr,
                                    ncv,
                                    min(MR, mc - ir),
                                    c0 > 0,
                                )
                # drop the virtual pixels ow >= ow_n
                for mm in range(mg):
                    obase = ((n * m + g * mg + mm) * oh_n) * ow_n
                    tb = toff + mm * ncv - j0
                    v = j0
                    while v < j0 + nc:
                        oh = v // w_p
                        ow = v - oh * w_p
                        seg = min(j0 + nc, (oh + 1) * w_p) - v
                        if ow < ow_n:
                            cnt = min(seg, ow_n - ow)
                            strided_copy(outf, obase + oh * ow_n + ow, ws, tb + v, 1, cnt, cnt)
                        v += seg


@njit(cache=True)
def _conv_im2col(x, w2, wp, packed, out, ws, kh, kw, sh, sw, pt, pl, dh, dw, group):
    """General-stride convolution: gathered patch block x weights (see module docstring)."""
    m = out.shape[1]
    oh_n = out.shape[2]
    ow_n = out.shape[3]
    cg = x.shape[1] // group
    mg = m // group
    khw = kh * kw
    k = cg * khw
    hw = oh_n * ow_n
    cb = _conv_kc(cg, kh, kw)
    kcmax = cb * khw
    boff = _rup(min(max(mg, 1), MC), MR) * kcmax
    toff = boff + kcmax * _ldb(min(max(hw, 1), NC))
    outf = out.reshape(-1)
    rows = packed and _rows_im2col(mg, hw)
    for n in range(x.shape[0]):
        xn = x[n]
        for g in range(group):
            obase = (n * m + g * mg) * hw
            if rows:
                # every patch row (all of K) for every pixel, then the row kernel on it: 7 real
                # pixels broadcast, 32 channels in lanes; row p = (channel, ki, kj) is ldb apart
                ldb = _ldb(hw)
                _im2col_rows(
                    xn, g * cg, kh, kw, sh, sw, pt, pl, dh, dw, ow_n, 0, k, 0, hw, ws, 0, ldb
                )
                mgp = _rup(mg, MR)
                for q0 in range(0, mg, NT):
                    for j0 in range(0, hw, MT):
                        ukernel_conv_rows(
                            wp,
                            g * mgp * k,
                            q0 // MR,
                            mgp,
                            cg,
                            cb,
                            kh,
                            kw,
                            ws,
                            j0,
                            khw * ldb,
                            kw * ldb,
                            ldb,
                            outf,
                            obase + q0 * hw + j0,
                            hw,
                            min(MT, hw - j0),
                        )
                continue
            for j0 in range(0, hw, NC):
                nc = min(NC, hw - j0)
                ldb = _ldb(nc)
                for c0 in range(0, cg, cb):
                    kc = min(cb, cg - c0) * khw
                    _im2col_rows(
                        xn,
                        g * cg,
                        kh,
                        kw,
                        sh,
                        sw,
                        pt,
                        pl,
                        dh,
                        dw,
                        ow_n,
                        c0 * khw,
                        kc,
                        j0,
                        nc,
                        ws,
                        boff,
                        ldb,
                    )
                    for i0 in range(0, mg, MC):
                        mc = min(MC, mg - i0)
                        asrc, aoff = _a_block(w2, wp, packed, g, mg, k, c0 * khw, kc, i0, mc, ws)
                        _macro(
                            asrc,
                            aoff,
                            ws,
                            boff,
                            ldb,
                            NR,
                            toff,
                            kc,
                            mc,
                            nc,
                            outf,
                            obase + i0 * hw + j0,
                            hw,
                            c0 > 0,
                        )


@njit(cache=True)
def _conv_depthwise(x, w, out, sh, sw, pt, pl, dh, dw, group):
    """Direct convolution for one input channel per group (depthwise, any channel multiplier).

    Accumulates tap by tap (ki, kj in order) into the output row, so the summation order is fixed.
    """
    hh = x.shape[2]
    ww = x.shape[3]
    m = out.shape[1]
    oh_n = out.shape[2]
    ow_n = out.shape[3]
    kh = w.shape[2]
    kw = w.shape[3]
    mg = m // group
    zero = np.float32(0.0)
    for n in range(x.shape[0]):
        for co in range(m):
            ci = co // mg
            o = out[n, co]
            for oh in range(oh_n):
                orow = o[oh]
                for ow in range(ow_n):
                    orow[ow] = zero
            xc = x[n, ci]
            for ki in range(kh):
                for kj in range(kw):
                    wv = w[co, 0, ki, kj]
                    iw0 = kj * dw - pl
                    lo = 0
                    if iw0 < 0:
                        lo = min(ow_n, (-iw0 + sw - 1) // sw)
                    hi = 0
                    if iw0 < ww:
                        hi = min(ow_n, (ww - iw0 + sw - 1) // sw)
                    if hi <= lo:
                        continue
                    for oh in range(oh_n):
                        ih = oh * sh - pt + ki * dh
                        if ih < 0 or ih >= hh:
                            continue
                        orow = o[oh, lo:hi]
                        xrow = xc[ih, lo * sw + iw0 :]
                        if sw == 1:
                            for t in range(hi - lo):
                                orow[t] += wv * xrow[t]
                        else:
                            for t in range(hi - lo):
                                orow[t] += wv * xrow[t * sw]


@njit(cache=True)
def _conv_any(
    x, w4, wp, packed, kh, kw, bias, out, sh, sw, pt, pl, dh, dw, group, act, act_a, act_b, ws
):
    m = out.shape[1]
    hw = out.shape[2] * out.shape[3]
    cg = x.shape[1] // group
    if cg == 1 and group > 1 and not packed:
        _conv_depthwise(x, w4, out, sh, sw, pt, pl, dh, dw, group)
    else:
        w2 = w4.reshape((w4.shape[0], w4.size // max(w4.shape[0], 1)))
        if sh == 1 and sw == 1:
            _conv_direct(x, w2, wp, packed, out, ws, kh, kw, pt, pl, dh, dw, group)
        else:
            _conv_im2col(x, w2, wp, packed, out, ws, kh, kw, sh, sw, pt, pl, dh, dw, group)
    has_bias = bias.shape[0] > 0
    if has_bias or act != 0:
        outf = out.reshape(-1)
        for n in range(out.shape[0]):
            bias_act_rows(outf, n * m * hw, m, hw, hw, bias, 0, has_bias, act, act_a, act_b)


@njit(cache=True)
def conv2d(x, w, bias, out, sh, sw, pt, pl, dh, dw, group, act, act_a, act_b, ws):
    """out = act(conv(x, w) + bias) for NCHW float32 ``x`` (N, C, H, W), ``w`` (M, C/group, kh, kw).

    ``out`` (N, M, OH, OW) is preallocated; its shape fixes OH/OW, so bottom/right padding is
    implied. ``bias`` has M elements or none (empty array). ``pt``/``pl`` are the top/left pads,
    ``sh``/``sw`` strides, ``dh``/``dw`` dilations. ``act``/``act_a``/``act_b`` select the fused
    activation (see ``_act``). ``ws`` holds at least :func:`conv_workspace_size` floats.
    All arrays must be C-contiguous.
    """
    _conv_any(
        x,
        w,
        ws,
        False,
        w.shape[2],
        w.shape[3],
        bias,
        out,
        sh,
        sw,
        pt,
        pl,
        dh,
        dw,
        group,
        act,
        act_a,
        act_b,
        ws,
    )


@njit(cache=True)
def conv2d_packed(x, wp, kh, kw, bias, out, sh, sw, pt, pl, dh, dw, group, act, act_a, act_b, ws):
    """:func:`conv2d` with weights prepacked by :func:`pack_conv_weights` (not for depthwise)."""
    dummy = wp[:0].reshape((0, 1, 1, 1))
    _conv_any(
        x, dummy, wp, True, kh, kw, bias, out, sh, sw, pt, pl, dh, dw, group, act, act_a, act_b, ws
    )
