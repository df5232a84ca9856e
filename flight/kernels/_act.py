"""Fused epilogue shared by Conv, Gemm and the standalone activation kernels.

Activation codes (plain ints, so kernels take no Python objects):
``ACT_NONE`` 0, ``ACT_RELU`` 1, ``ACT_LEAKY`` 2 (``a`` = slope), ``ACT_CLIP`` 3 (``a`` = min,
``b`` = max; Relu6 is clip 0..6).
"""

from __future__ import annotations

import numpy as np
from numba import njit

ACT_NONE = 0
ACT_RELU = 1
ACT_LEAKY = 2
ACT_CLIP = 3


@njit(cache=True, inline="always")
def act1(v, act, a, b):
    """Apply activation ``act`` to one value (NaN propagates through relu/clip like numpy)."""
    if act == 1:
        return v if not v < 0 else np.float32(0.0)
    if act == 2:
        return v if not v < 0 else v * np.float32(a)
    if act == 3:
        if v < np.float32(a):
            return np.float32(a)
        if v > np.float32(b):
            return np.float32(b)
    return v


@njit(cache=True)
def bias_act_rows(y, base, rows, cols, ld, bias, boff, has_bias, act, a, b):
    """y[base + r*ld + j] = act(y[...] + bias[boff + r]) for r < rows, j < cols (flat C array y)."""
    a32 = np.float32(a)
    b32 = np.float32(b)
    zero = np.float32(0.0)
    for r in range(rows):
        o = base + r * ld
        bv = bias[boff + r] if has_bias else zero
        row = y[o : o + cols]
        if act == 0:
            if has_bias:
                for j in range(cols):
                    row[j] += bv
        elif act == 1:
            for j in range(cols):
                v = row[j] + bv
                row[j] = v if not v < 0 else zero
        elif act == 2:
            for j in range(cols):
                v = row[j] + bv
                row[j] = v if not v < 0 else v * a32
        else:
            for j in range(cols):
                v = row[j] + bv
                if v < a32:
                    v = a32
                if v > b32:
                    v = b32
                row[j] = v
