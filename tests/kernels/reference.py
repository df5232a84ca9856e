"""Plain numpy references for every kernel in flight.kernels (float64 math, float32 results).

They follow the ONNX operator definitions and are written for clarity, not speed: the kernels are
tested against them, so equivalence is checked, not assumed.
"""

from __future__ import annotations

import numpy as np


def _f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def conv2d(x, w, b=None, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1):
    """ONNX Conv (NCHW); pads = (top, left, bottom, right)."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    sh, sw = strides
    dh, dw = dilations
    pt, pl, pb, pr = pads
    xp = np.zeros((n, c, h + pt + pb, wd + pl + pr))
    xp[:, :, pt : pt + h, pl : pl + wd] = x
    oh = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, m, oh, ow))
    mg = m // group
    for g in range(group):
        xs = xp[:, g * cg : (g + 1) * cg]
        ws = w[g * mg : (g + 1) * mg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[
                    :,
                    :,
                    i * dh : i * dh + sh * (oh - 1) + 1 : sh,
                    j * dw : j * dw + sw * (ow - 1) + 1 : sw,
                ]
                out[:, g * mg : (g + 1) * mg] += np.einsum("nchw,mc->nmhw", patch, ws[:, :, i, j])
    if b is not None and len(b):
        out += np.asarray(b, np.float64)[None, :, None, None]
    return _f32(out)


def gemm(a, b, c=None, alpha=1.0, beta=1.0, trans_a=False, trans_b=False):
    """ONNX Gemm."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    y = alpha * ((a.T if trans_a else a) @ (b.T if trans_b else b))
    if c is not None:
        y = y + beta * np.asarray(c, np.float64)
    return _f32(y)


def matmul(a, b):
    """ONNX MatMul (numpy semantics)."""
    return _f32(np.matmul(np.asarray(a, np.float64), np.asarray(b, np.float64)))


def relu(x):
    return _f32(np.maximum(x, 0))


def leaky_relu(x, alpha=0.01):
    x = np.asarray(x, np.float64)
    return _f32(np.where(x < 0, x * np.float32(alpha), x))


def clip(x, lo, hi):
    return _f32(np.clip(x, lo, hi))


def sigmoid(x):
    return _f32(1.0 / (1.0 + np.exp(-np.asarray(x, np.float64))))


def tanh(x):
    return _f32(np.tanh(np.asarray(x, np.float64)))


def binary(op, a, b):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    f = {
        "Add": np.add,
        "Sub": np.subtract,
        "Mul": np.multiply,
        "Div": np.divide,
    }[op]
    return _f32(f(a, b))


def pool_out(size, k, s, pb, pe, d=1, ceil_mode=False):
    span = size + pb + pe - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + pb:
        out -= 1
    return out


def maxpool2d(x, k, strides, pads, dilations=(1, 1), ceil_mode=False):
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    oh = pool_out(h, k[0], strides[0], pads[0], pads[2], dilations[0], ceil_mode)
    ow = pool_out(w, k[1], strides[1], pads[1], pads[3], dilations[1], ceil_mode)
    out = np.full((n, c, oh, ow), -np.inf)
    for i in range(oh):
        for j in range(ow):
            for a in range(k[0]):
                for b in range(k[1]):
                    ih = i * strides[0] - pads[0] + a * dilations[0]
                    iw = j * strides[1] - pads[1] + b * dilations[1]
                    if 0 <= ih < h and 0 <= iw < w:
                        out[:, :, i, j] = np.maximum(out[:, :, i, j], x[:, :, ih, iw])
    return _f32(out)


def avgpool2d(x, k, strides, pads, count_include_pad=False, ceil_mode=False):
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    oh = pool_out(h, k[0], strides[0], pads[0], pads[2], 1, ceil_mode)
    ow = pool_out(w, k[1], strides[1], pads[1], pads[3], 1, ceil_mode)
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        h0 = i * strides[0] - pads[0]
        h1 = min(h0 + k[0], h + pads[2])
        for j in range(ow):
            w0 = j * strides[1] - pads[1]
            w1 = min(w0 + k[1], w + pads[3])
            win = x[:, :, max(h0, 0) : min(h1, h), max(w0, 0) : min(w1, w)]
            cnt = (h1 - h0) * (w1 - w0) if count_include_pad else win.shape[2] * win.shape[3]
            out[:, :, i, j] = win.sum(axis=(2, 3)) / cnt
    return _f32(out)


def global_avgpool(x):
    x = np.asarray(x, np.float64)
    return _f32(
        x.reshape(x.shape[0], x.shape[1], -1)
        .mean(axis=2)
        .reshape(x.shape[:2] + (1,) * (x.ndim - 2))
    )


def softmax(x, axis=-1):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return _f32(e / e.sum(axis=axis, keepdims=True))


def lrn(x, size, alpha=1e-4, beta=0.75, bias=1.0):
    x = np.asarray(x, np.float64)
    c = x.shape[1]
    sq = np.zeros_like(x)
    for ch in range(c):
        lo = max(0, ch - (size - 1) // 2)
        hi = min(c - 1, ch + size - 1 - (size - 1) // 2)
        sq[:, ch] = (x[:, lo : hi + 1] ** 2).sum(axis=1)
    return _f32(x / (bias + alpha / size * sq) ** beta)


def batchnorm(x, scale, bias, mean, var, eps=1e-5):
    x = np.asarray(x, np.float64)
    shp = (1, -1) + (1,) * (x.ndim - 2)
    s = np.asarray(scale, np.float64).reshape(shp)
    b = np.asarray(bias, np.float64).reshape(shp)
    m = np.asarray(mean, np.float64).reshape(shp)
    v = np.asarray(var, np.float64).reshape(shp)
    return _f32((x - m) / np.sqrt(v + eps) * s + b)


def concat(xs, axis):
    return _f32(np.concatenate(xs, axis=axis))


def transpose(x, perm=None):
    return _f32(np.transpose(x, perm))


def pad(x, pads, mode="constant", value=0.0):
    r = x.ndim
    width = list(zip(pads[:r], pads[r:], strict=True))
    if mode == "constant":
        return _f32(np.pad(x, width, mode="constant", constant_values=value))
    return _f32(np.pad(x, width, mode=mode))
