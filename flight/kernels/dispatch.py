"""Op dispatchers: ``op_<name>(inputs, outputs, attrs, ws)`` reads a node's attributes and calls
the njit kernels; ``workspace_<name>(inputs, outputs, attrs)`` says how much float32 scratch a
node needs (``inputs``/``outputs`` are arrays or shapes).

Which op uses which dispatcher is said once, in the op registry (:mod:`flight.model.ops`); the
executor looks dispatchers up there. This module only holds the glue between a node and the
kernels of :mod:`.gemm`, :mod:`.conv`, :mod:`.pool`, :mod:`.elementwise`, :mod:`.norm` and
:mod:`.shape` (2-D and 1-D Conv and pooling share the 2-D kernels; 3-D ones are in :mod:`.conv3d`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ._act import ACT_CLIP, ACT_LEAKY, ACT_NONE, ACT_RELU
from .conv import conv2d, conv2d_packed, conv_workspace_size
from .conv3d import avgpool3d, conv3d, conv3d_workspace_size, maxpool3d
from .elementwise import (
    OP_ADD,
    OP_DIV,
    OP_MUL,
    OP_SUB,
    act_flat,
    binary,
    copy_flat,
    sigmoid_flat,
    sum_n,
    tanh_flat,
)
from .gemm import gemm, gemm_workspace_size, matmul, matmul_workspace_size
from .norm import batchnorm, lrn, softmax
from .pool import avgpool2d, global_avgpool, maxpool2d
from .shape import concat, gather, pad, transpose

Array = np.ndarray
#: ``fn(inputs, outputs, attrs, ws)``: what the executor calls per node.
Dispatcher = Callable[
    [Sequence["Array | None"], Sequence[Array], Mapping[str, Any], "Array | None"], None
]

_EMPTY = np.zeros(0, np.float32)
_ACTS = {None: ACT_NONE, "": ACT_NONE, "Relu": ACT_RELU, "LeakyRelu": ACT_LEAKY, "Clip": ACT_CLIP}


def _as4d(x: Array) -> Array:
    """View a 3-D (N, C, L) tensor as (N, C, 1, L) so 1-D ops reuse the 2-D kernels."""
    return x.reshape(x.shape[0], x.shape[1], 1, x.shape[2]) if x.ndim == 3 else x


def _spatial(attrs: Mapping[str, Any], key: str, nd: int, default: int) -> list[int]:
    v = list(attrs.get(key) or [default] * nd)
    return [default] * (2 - nd) + v if nd == 1 else v


def _pads(attrs: Mapping[str, Any], nd: int) -> tuple[int, int, int, int]:
    """ONNX pads (begin..., end...) as (top, left, bottom, right); auto_pad must be resolved."""
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID", b"NOTSET", b"VALID"):
        raise NotImplementedError("auto_pad SAME_*: the converter must resolve it into pads")
    p = list(attrs.get("pads") or [0] * (2 * nd))
    if nd == 1:
        return 0, p[0], 0, p[1]
    return p[0], p[1], p[2], p[3]


def _act_attrs(attrs: Mapping[str, Any]) -> tuple[int, float, float]:
    """Fused activation attributes (flight extension): activation, activation_alpha/_beta."""
    act = _ACTS[attrs.get("activation")]
    alpha = float(attrs.get("activation_alpha", 0.01 if act == ACT_LEAKY else 0.0))
    beta = float(attrs.get("activation_beta", 0.0))
    return act, alpha, beta


def _conv_geometry(nd, attrs):
    s = _spatial(attrs, "strides", nd, 1)
    d = _spatial(attrs, "dilations", nd, 1)
    return s, d, _pads(attrs, nd)


def _geometry3d(attrs: Mapping[str, Any]) -> tuple[list[int], list[int], list[int]]:
    """strides, dilations, pads [d0, h0, w0, d1, h1, w1] of a 3-D node (all explicit at load)."""
    return list(attrs["strides"]), list(attrs["dilations"]), list(attrs["pads"])


def _conv3d(inputs, outputs, attrs, ws):
    b = inputs[2] if len(inputs) > 2 and inputs[2] is not None else _EMPTY
    s, d, p = _geometry3d(attrs)
    act, a, bb = _act_attrs(attrs)
    if ws is None:
        ws = np.zeros(max(1, workspace_conv(inputs, outputs, attrs)), np.float32)
    group = int(attrs.get("group", 1))
    x, w, out = inputs[0], inputs[1], outputs[0]
    conv3d(x, w, b, out, *s, p[0], p[1], p[2], *d, group, act, a, bb, ws)


def op_conv(inputs, outputs, attrs, ws):
    if inputs[0].ndim == 5:
        _conv3d(inputs, outputs, attrs, ws)
        return
    x = _as4d(inputs[0])
    out = _as4d(outputs[0])
    b = inputs[2] if len(inputs) > 2 and inputs[2] is not None else _EMPTY
    s, d, p = _conv_geometry(inputs[0].ndim - 2, attrs)
    group = int(attrs.get("group", 1))
    act, a, bb = _act_attrs(attrs)
    if ws is None:
        ws = np.zeros(max(1, workspace_conv(inputs, outputs, attrs)), np.float32)
    if attrs.get("packed"):
        ks = list(attrs["kernel_shape"])
        kh, kw = (1, ks[0]) if len(ks) == 1 else ks
        conv2d_packed(
            x, inputs[1], kh, kw, b, out, s[0], s[1], p[0], p[1], d[0], d[1], group, act, a, bb, ws
        )
    else:
        w = inputs[1]
        w = w.reshape(w.shape[0], w.shape[1], 1, w.shape[2]) if w.ndim == 3 else w
        conv2d(x, w, b, out, s[0], s[1], p[0], p[1], d[0], d[1], group, act, a, bb, ws)


def workspace_conv(inputs, outputs, attrs) -> int:
    x_shape = tuple(inputs[0].shape) if hasattr(inputs[0], "shape") else tuple(inputs[0])
    nd = len(x_shape) - 2
    if nd == 3:
        o_shape = _shape(outputs[0])
        return conv3d_workspace_size(
            x_shape, _shape(inputs[1]), o_shape, int(attrs.get("group", 1))
        )
    x_shape = x_shape if nd == 2 else (x_shape[0], x_shape[1], 1, x_shape[2])
    o_shape = outputs[0].shape if hasattr(outputs[0], "shape") else tuple(outputs[0])
    o_shape = o_shape if len(o_shape) == 4 else (o_shape[0], o_shape[1], 1, o_shape[2])
    group = int(attrs.get("group", 1))
    if attrs.get("packed"):
        ks = list(attrs["kernel_shape"])
        kh, kw = (1, ks[0]) if len(ks) == 1 else ks
        w_shape = (o_shape[1], x_shape[1] // group, kh, kw)
    else:
        ws_ = inputs[1].shape if hasattr(inputs[1], "shape") else tuple(inputs[1])
        w_shape = ws_ if len(ws_) == 4 else (ws_[0], ws_[1], 1, ws_[2])
    s, d, p = _conv_geometry(nd, attrs)
    return conv_workspace_size(x_shape, w_shape, o_shape, (s[0], s[1]), p, (d[0], d[1]), group)


def op_gemm(inputs, outputs, attrs, ws):
    c = inputs[2] if len(inputs) > 2 else None
    gemm(
        inputs[0],
        inputs[1],
        c,
        outputs[0],
        float(attrs.get("alpha", 1.0)),
        float(attrs.get("beta", 1.0)),
        bool(attrs.get("transA", 0)),
        bool(attrs.get("transB", 0)),
        ws,
    )
    act, a, b = _act_attrs(attrs)
    if act != ACT_NONE:
        flat = outputs[0].reshape(-1)
        act_flat(flat, flat, act, a, b)


def op_matmul(inputs, outputs, attrs, ws):
    matmul(inputs[0], inputs[1], outputs[0], ws)


def _pool_geometry(inputs, outputs, attrs):
    nd = inputs[0].ndim - 2
    ks = list(attrs["kernel_shape"])
    kh, kw = (1, ks[0]) if nd == 1 else ks
    s = _spatial(attrs, "strides", nd, 1)
    d = _spatial(attrs, "dilations", nd, 1)
    return kh, kw, s, d, _pads(attrs, nd)


def op_maxpool(inputs, outputs, attrs, ws):
    if len(outputs) > 1 and outputs[1] is not None:
        raise NotImplementedError("MaxPool Indices output is not supported")
    if inputs[0].ndim == 5:
        s, d, p = _geometry3d(attrs)
        k = list(attrs["kernel_shape"])
        maxpool3d(inputs[0], outputs[0], *k, *s, p[0], p[1], p[2], *d)
        return
    kh, kw, s, d, p = _pool_geometry(inputs, outputs, attrs)
    maxpool2d(_as4d(inputs[0]), _as4d(outputs[0]), kh, kw, s[0], s[1], p[0], p[1], d[0], d[1])


def op_avgpool(inputs, outputs, attrs, ws):
    if inputs[0].ndim == 5:
        k, s, p = list(attrs["kernel_shape"]), list(attrs["strides"]), list(attrs["pads"])
        include = bool(attrs.get("count_include_pad", 0))
        avgpool3d(inputs[0], outputs[0], *k, *s, *p, include)
        return
    kh, kw, s, d, p = _pool_geometry(inputs, outputs, attrs)
    if d != [1, 1]:
        raise NotImplementedError("AveragePool dilations are not supported")
    avgpool2d(
        _as4d(inputs[0]),
        _as4d(outputs[0]),
        kh,
        kw,
        s[0],
        s[1],
        p[0],
        p[1],
        p[2],
        p[3],
        bool(attrs.get("count_include_pad", 0)),
    )


def op_global_avgpool(inputs, outputs, attrs, ws):
    x = inputs[0]
    n, c = x.shape[:2]
    global_avgpool(x.reshape(n, c, -1), outputs[0].reshape(n, c))


def op_relu(inputs, outputs, attrs, ws):
    act_flat(inputs[0].reshape(-1), outputs[0].reshape(-1), ACT_RELU, 0.0, 0.0)


def op_leaky_relu(inputs, outputs, attrs, ws):
    act_flat(
        inputs[0].reshape(-1),
        outputs[0].reshape(-1),
        ACT_LEAKY,
        float(attrs.get("alpha", 0.01)),
        0.0,
    )


def op_clip(inputs, outputs, attrs, ws):
    lo = attrs.get("min", -np.inf)
    hi = attrs.get("max", np.inf)
    if len(inputs) > 1 and inputs[1] is not None and inputs[1].size:
        lo = inputs[1].reshape(-1)[0]
    if len(inputs) > 2 and inputs[2] is not None and inputs[2].size:
        hi = inputs[2].reshape(-1)[0]
    act_flat(inputs[0].reshape(-1), outputs[0].reshape(-1), ACT_CLIP, float(lo), float(hi))


def op_sigmoid(inputs, outputs, attrs, ws):
    sigmoid_flat(inputs[0].reshape(-1), outputs[0].reshape(-1))


def op_tanh(inputs, outputs, attrs, ws):
    tanh_flat(inputs[0].reshape(-1), outputs[0].reshape(-1))


def op_add(inputs, outputs, attrs, ws):
    binary(OP_ADD, inputs[0], inputs[1], outputs[0])


def op_sub(inputs, outputs, attrs, ws):
    binary(OP_SUB, inputs[0], inputs[1], outputs[0])


def op_mul(inputs, outputs, attrs, ws):
    binary(OP_MUL, inputs[0], inputs[1], outputs[0])


def op_div(inputs, outputs, attrs, ws):
    binary(OP_DIV, inputs[0], inputs[1], outputs[0])


def op_sum(inputs, outputs, attrs, ws):
    sum_n(list(inputs), outputs[0])


def op_reshape(inputs, outputs, attrs, ws):
    if inputs[0] is not outputs[0]:
        copy_flat(inputs[0].reshape(-1), outputs[0].reshape(-1))


def op_concat(inputs, outputs, attrs, ws):
    concat(list(inputs), outputs[0], int(attrs["axis"]))


def op_transpose(inputs, outputs, attrs, ws):
    perm = attrs.get("perm")
    transpose(inputs[0], outputs[0], tuple(perm) if perm is not None else None)


def op_gather(inputs, outputs, attrs, ws):
    gather(inputs[0], inputs[1], outputs[0], int(attrs["axis"]))


def op_pad(inputs, outputs, attrs, ws):
    pads = attrs.get("pads")
    if pads is None:
        pads = [int(v) for v in inputs[1].reshape(-1)]
    value = attrs.get("value", 0.0)
    if len(inputs) > 2 and inputs[2] is not None and inputs[2].size:
        value = float(inputs[2].reshape(-1)[0])
    mode = attrs.get("mode", "constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    pad(inputs[0], outputs[0], tuple(pads), mode, float(value))


def _axis3(x: Array, axis: int) -> tuple[int, int, int]:
    axis = axis % x.ndim
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    inner = int(np.prod(x.shape[axis + 1 :], dtype=np.int64))
    return outer, x.shape[axis], inner


def op_softmax(inputs, outputs, attrs, ws):
    x = inputs[0]
    o, a, i = _axis3(x, int(attrs.get("axis", -1)))
    softmax(x.reshape(o, a, i), outputs[0].reshape(o, a, i))


def op_lrn(inputs, outputs, attrs, ws):
    x = inputs[0]
    v = (x.shape[0], x.shape[1], -1)
    lrn(
        x.reshape(v),
        outputs[0].reshape(v),
        int(attrs["size"]),
        float(attrs.get("alpha", 1e-4)),
        float(attrs.get("beta", 0.75)),
        float(attrs.get("bias", 1.0)),
    )


def op_batchnorm(inputs, outputs, attrs, ws):
    x = inputs[0]
    v = (x.shape[0], x.shape[1], -1)
    batchnorm(
        x.reshape(v),
        inputs[1],
        inputs[2],
        inputs[3],
        inputs[4],
        float(attrs.get("epsilon", 1e-5)),
        outputs[0].reshape(v),
    )


def _shape(a: Any) -> tuple[int, ...]:
    return tuple(a.shape) if hasattr(a, "shape") else tuple(a)


def workspace_gemm(inputs, outputs, attrs) -> int:
    a, b = _shape(inputs[0]), _shape(inputs[1])
    m, k = (a[1], a[0]) if attrs.get("transA", 0) else a
    n = b[0] if attrs.get("transB", 0) else b[1]
    return gemm_workspace_size(m, n, k)


def workspace_matmul(inputs, outputs, attrs) -> int:
    return matmul_workspace_size(_shape(inputs[0]), _shape(inputs[1]))
