"""Normalisation kernels: Softmax, LRN, BatchNormalization (+ the numpy BatchNorm folding helper).

Reductions run in index order with float32 accumulators, so results are reproducible.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def softmax(x, out):
    """Softmax along axis 1 of (outer, axis, inner) views: exp(x - max) / sum."""
    for o in range(x.shape[0]):
        for i in range(x.shape[2]):
            m = x[o, 0, i]
            for a in range(1, x.shape[1]):
                v = x[o, a, i]
                if v > m:
                    m = v
            s = np.float32(0.0)
            for a in range(x.shape[1]):
                e = np.exp(x[o, a, i] - m)
                out[o, a, i] = e
                s += e
            for a in range(x.shape[1]):
                out[o, a, i] = out[o, a, i] / s


@njit(cache=True)
def lrn(x, out, size, alpha, beta, bias):
    """ONNX LRN across channels of a (N, C, S) view: x / (bias + alpha/size * sum sq)^beta."""
    c_n = x.shape[1]
    lo_off = (size - 1) // 2
    hi_off = size - 1 - lo_off
    scale = np.float32(alpha / size)
    b32 = np.float32(bias)
    be = np.float32(beta)
    for n in range(x.shape[0]):
        for c in range(c_n):
            c0 = max(0, c - lo_off)
            c1 = min(c_n - 1, c + hi_off)
            for i in range(x.shape[2]):
                s = np.float32(0.0)
                for cc in range(c0, c1 + 1):
                    v = x[n, cc, i]
                    s += v * v
                out[n, c, i] = x[n, c, i] / (b32 + scale * s) ** be


@njit(cache=True)
def batchnorm(x, scale, bias, mean, var, eps, out):
    """Inference BatchNormalization on a (N, C, S) view: (x - mean)/sqrt(var + eps)*scale + bias.

    For the unfused case; the converter folds BatchNorm into the preceding Conv/Gemm instead.
    """
    for c in range(x.shape[1]):
        a = np.float32(scale[c] / np.sqrt(np.float64(var[c]) + eps))
        b = np.float32(bias[c] - mean[c] * np.float64(a))
        for n in range(x.shape[0]):
            xr = x[n, c]
            orow = out[n, c]
            for i in range(x.shape[2]):
                orow[i] = xr[i] * a + b


def fold_batchnorm(
    w: np.ndarray,
    b: np.ndarray | None,
    scale: np.ndarray,
    bias: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    eps: float = 1e-5,
) -> tuple[np.ndarray, np.ndarray]:
    """Fold an inference BatchNorm that follows a Conv/Gemm into its weights and bias.

    ``w`` has the output channel first (Conv (M, ...), Gemm with transB=1 (N, K)); returns float32
    (w', b') with w' = w * s[:, None...], b' = (b - mean) * s + bias, s = scale / sqrt(var + eps).
    Computed in float64, rounded once.
    """
    s = np.asarray(scale, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    w64 = np.asarray(w, np.float64)
    w2 = w64 * s.reshape((-1,) + (1,) * (w64.ndim - 1))
    b0 = np.zeros_like(s) if b is None else np.asarray(b, np.float64)
    b2 = (b0 - np.asarray(mean, np.float64)) * s + np.asarray(bias, np.float64)
    return w2.astype(np.float32), b2.astype(np.float32)
