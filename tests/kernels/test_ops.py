"""Pool, elementwise, normalisation and data-movement kernels (through the dispatchers the op
registry names, as the executor calls them) vs the reference."""

import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.kernels import pool_output_size
from flight.model.ops import kernel

RTOL, ATOL = 1e-4, 1e-5


def _r(seed, *shape):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


@settings(max_examples=30, deadline=None)
@given(
    k=st.integers(1, 4),
    s=st.integers(1, 3),
    p=st.integers(0, 1),
    h=st.integers(4, 11),
    ceil=st.booleans(),
    cip=st.booleans(),
    mx=st.booleans(),
    seed=st.integers(0, 9),
)
def test_pools(k, s, p, h, ceil, cip, mx, seed):
    if p >= k or p > k // 2:
        return
    x = _r(seed, 2, 3, h, h + 1)
    pads = (p, p, p, p)
    oh = pool_output_size(h, k, s, p, p, 1, ceil)
    ow = pool_output_size(h + 1, k, s, p, p, 1, ceil)
    out = np.empty((2, 3, oh, ow), np.float32)
    attrs = {
        "kernel_shape": [k, k],
        "strides": [s, s],
        "pads": list(pads),
        "ceil_mode": int(ceil),
        "count_include_pad": int(cip),
    }
    if mx:
        kernel("MaxPool")([x], [out], attrs, None)
        _close(out, ref.maxpool2d(x, (k, k), (s, s), pads, ceil_mode=ceil))
    else:
        kernel("AveragePool")([x], [out], attrs, None)
        _close(out, ref.avgpool2d(x, (k, k), (s, s), pads, cip, ceil))


_SPECIAL = np.array(
    [0x7FC00001, 0x7FC00002, 0xFFC00003, 0x80000000, 0x00000000, 0x7F800000, 0xFF800000],
    np.uint32,
).view(np.float32)  # three NaNs with distinct payloads, -0.0, 0.0, inf, -inf


def _maxpool_scalar(x, k, s, p, d, oh, ow):
    """The scalar rule, tap by tap in row-major order: v wins if v > m or v is NaN."""
    out = np.empty((x.shape[0], x.shape[1], oh, ow), np.float32)
    for n, c, i, j in np.ndindex(out.shape):
        m = np.float32(-np.inf)
        for ki in range(k):
            for kj in range(k):
                ih, iw = i * s - p + ki * d, j * s - p + kj * d
                if 0 <= ih < x.shape[2] and 0 <= iw < x.shape[3]:
                    v = x[n, c, ih, iw]
                    if v > m or v != v:
                        m = v
        out[n, c, i, j] = m
    return out


@settings(max_examples=40, deadline=None)
@given(
    k=st.integers(1, 4),
    s=st.integers(1, 3),
    d=st.integers(1, 2),
    w=st.integers(1, 150),
    special=st.floats(0.0, 0.5),
    seed=st.integers(0, 99),
)
def test_maxpool_is_the_scalar_rule_bit_for_bit(k, s, d, w, special, seed):
    # rows up to 150 wide run every vector width, the 4-vector unroll and the overlapping tail;
    # ties of -0.0/0.0 keep the first, and the last NaN tap (its payload) is the result
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, (1, 2, 5, w)).astype(np.float32)  # integers: many ties
    mask = rng.random(x.shape) < special
    x[mask] = rng.choice(_SPECIAL, int(mask.sum()))
    p = min(k // 2, 1)
    oh = pool_output_size(5, k, s, p, p, d)
    ow = pool_output_size(w, k, s, p, p, d)
    if oh < 1 or ow < 1:
        return
    out = np.empty((1, 2, oh, ow), np.float32)
    attrs = {"kernel_shape": [k, k], "strides": [s, s], "pads": [p] * 4, "dilations": [d, d]}
    kernel("MaxPool")([x], [out], attrs, None)
    want = _maxpool_scalar(x, k, s, p, d, oh, ow)
    assert out.view(np.uint32).tobytes() == want.view(np.uint32).tobytes()


def test_maxpool_dilation_and_gap():
    x = _r(1, 1, 2, 9, 9)
    out = np.empty((1, 2, 3, 3), np.float32)
    kernel("MaxPool")(
        [x], [out], {"kernel_shape": [3, 3], "strides": [2, 2], "dilations": [2, 2]}, None
    )
    _close(out, ref.maxpool2d(x, (3, 3), (2, 2), (0, 0, 0, 0), (2, 2)))
    g = np.empty((1, 2, 1, 1), np.float32)
    kernel("GlobalAveragePool")([x], [g], {}, None)
    _close(g, ref.global_avgpool(x))


@pytest.mark.parametrize(
    ("op", "attrs", "fn"),
    [
        ("Relu", {}, ref.relu),
        ("LeakyRelu", {"alpha": 0.2}, lambda x: ref.leaky_relu(x, 0.2)),
        ("Clip", {"min": 0.0, "max": 6.0}, lambda x: ref.clip(x, 0, 6)),
        ("Sigmoid", {}, ref.sigmoid),
        ("Tanh", {}, ref.tanh),
    ],
)
def test_unary(op, attrs, fn):
    x = _r(2, 3, 4, 5) * 4
    out = np.empty_like(x)
    kernel(op)([x], [out], attrs, None)
    _close(out, fn(x))


def test_clip_inputs_and_inplace():
    x = _r(3, 50)
    want = ref.clip(x, -0.5, 0.5)
    kernel("Clip")([x, np.float32(-0.5).reshape(()), np.array(0.5, np.float32)], [x], {}, None)
    _close(x, want)


SHAPES = [
    ((2, 3, 4), (2, 3, 4)),
    ((2, 3, 4), (4,)),
    ((2, 3, 4), (3, 1)),
    ((1,), (2, 3)),
    ((2, 1, 4), (1, 3, 1)),
    ((5, 1, 1, 2, 1, 3), (4, 1, 1, 3)),
    ((), (3,)),
]


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize(("sa", "sb"), SHAPES)
def test_binary_broadcast(op, sa, sb):
    a = _r(4, *sa)
    b = _r(5, *sb)
    if op == "Div":
        b = np.where(np.abs(b) < 0.1, 1.0, b).astype(np.float32)
    out = np.empty(np.broadcast_shapes(sa, sb), np.float32)
    kernel(op)([a, b], [out], {}, None)
    _close(out, ref.binary(op, a, b))


def test_sum_n():
    xs = [_r(6, 2, 3), _r(7, 3), _r(8, 2, 1)]
    out = np.empty((2, 3), np.float32)
    kernel("Sum")(xs, [out], {}, None)
    _close(out, ref.binary("Add", ref.binary("Add", xs[0], xs[1]), xs[2]))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_softmax(axis):
    x = _r(9, 3, 4, 5) * 3
    out = np.empty_like(x)
    kernel("Softmax")([x], [out], {"axis": axis}, None)
    _close(out, ref.softmax(x, axis))


def test_lrn_batchnorm():
    x = _r(10, 2, 7, 3, 3)
    out = np.empty_like(x)
    kernel("LRN")([x], [out], {"size": 3, "alpha": 1e-3, "beta": 0.75, "bias": 2.0}, None)
    _close(out, ref.lrn(x, 3, 1e-3, 0.75, 2.0))
    sc, bi, mu = _r(11, 7), _r(12, 7), _r(13, 7)
    var = np.abs(_r(14, 7)) + 0.1
    kernel("BatchNormalization")([x, sc, bi, mu, var], [out], {"epsilon": 1e-3}, None)
    _close(out, ref.batchnorm(x, sc, bi, mu, var, 1e-3))


def test_shape_ops():
    x = _r(15, 2, 3, 4)
    out = np.empty((2, 12), np.float32)
    out[...] = np.nan
    kernel("Reshape")([x], [out], {"shape": [2, 12]}, None)
    _close(out, x.reshape(2, 12))
    t = np.empty((4, 2, 3), np.float32)
    kernel("Transpose")([x], [t], {"perm": [2, 0, 1]}, None)
    _close(t, ref.transpose(x, (2, 0, 1)))
    r = np.empty((4, 3, 2), np.float32)
    kernel("Transpose")([x], [r], {}, None)
    _close(r, ref.transpose(x))
    ys = [x, _r(16, 2, 1, 4), _r(17, 2, 2, 4)]
    c = np.empty((2, 6, 4), np.float32)
    kernel("Concat")(ys, [c], {"axis": 1}, None)
    _close(c, ref.concat(ys, 1))
    c2 = np.empty((2, 3, 8), np.float32)
    kernel("Concat")([x, x], [c2], {"axis": -1}, None)
    _close(c2, ref.concat([x, x], -1))


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad(mode):
    x = _r(18, 2, 3, 4)
    pads = (0, 2, 1, 1, 2, 3)
    out = np.empty((3, 7, 8), np.float32)
    kernel("Pad")(
        [x, np.array(pads, np.int64), np.array(1.5, np.float32)], [out], {"mode": mode}, None
    )
    _close(out, ref.pad(x, pads, mode, 1.5))
