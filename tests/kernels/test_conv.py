"""Conv kernels (im2col, direct, depthwise, packed weights, fused activation) vs the reference."""

import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.kernels import (
    conv2d,
    conv2d_packed,
    conv_output_size,
    conv_workspace_size,
    fold_batchnorm,
    pack_conv_weights,
)
from flight.model.ops import kernel, workspace_size

RTOL, ATOL = 1e-4, 1e-5


def _run(x, w, b, s, p, d, g, packed=False):
    n, _c, h, wd = x.shape
    m, _, kh, kw = w.shape
    oh = conv_output_size(h, kh, s[0], p[0], p[2], d[0])
    ow = conv_output_size(wd, kw, s[1], p[1], p[3], d[1])
    out = np.full((n, m, oh, ow), np.nan, np.float32)
    size = conv_workspace_size(x.shape, w.shape, out.shape, s, p, d, g)
    ws = np.full(size, np.nan, np.float32)
    bias = np.zeros(0, np.float32) if b is None else b
    if packed:
        conv2d_packed(
            x,
            pack_conv_weights(w, g),
            kh,
            kw,
            bias,
            out,
            s[0],
            s[1],
            p[0],
            p[1],
            d[0],
            d[1],
            g,
            0,
            0.0,
            0.0,
            ws,
        )
    else:
        conv2d(x, w, bias, out, s[0], s[1], p[0], p[1], d[0], d[1], g, 0, 0.0, 0.0, ws)
    return out


CASES = [
    # (N, C, H, W, M, kh, kw, strides, pads(t,l,b,r), dilations, group)
    (1, 3, 9, 9, 4, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (2, 4, 8, 7, 6, 3, 3, (2, 2), (1, 1, 1, 1), (1, 1), 1),
    (1, 5, 11, 10, 7, 1, 1, (1, 1), (0, 0, 0, 0), (1, 1), 1),
    (1, 5, 11, 10, 7, 1, 1, (2, 2), (0, 0, 0, 0), (1, 1), 1),
    (1, 3, 17, 17, 8, 7, 7, (2, 2), (3, 3, 3, 3), (1, 1), 1),
    (1, 4, 10, 12, 6, 3, 2, (1, 2), (2, 0, 1, 1), (2, 1), 2),
    (2, 8, 9, 9, 8, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 8),
    (1, 6, 9, 9, 12, 3, 3, (2, 1), (0, 1, 2, 1), (1, 2), 6),
    (1, 300, 6, 6, 11, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
    (1, 2, 40, 40, 3, 3, 3, (1, 1), (1, 1, 1, 1), (1, 1), 1),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("packed", [False, True])
def test_conv_cases(case, packed):
    n, c, h, w_, m, kh, kw, s, p, d, g = case
    if packed and c == g:
        pytest.skip("depthwise weights are not packed")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w_)).astype(np.float32)
    w = rng.standard_normal((m, c // g, kh, kw)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    out = _run(x, w, b, s, p, d, g, packed)
    np.testing.assert_allclose(out, ref.conv2d(x, w, b, s, p, d, g), rtol=RTOL, atol=1e-4)


@settings(max_examples=20, deadline=None)
@given(
    c=st.integers(1, 6),
    m=st.integers(1, 12),
    h=st.integers(3, 12),
    w=st.integers(3, 12),
    k=st.integers(1, 3),
    s=st.integers(1, 2),
    p=st.integers(0, 2),
    d=st.integers(1, 2),
    g=st.sampled_from([1, 2]),
    seed=st.integers(0, 99),
)
def test_conv_hypothesis(c, m, h, w, k, s, p, d, g, seed):
    c, m = c * g, m * g
    if h + 2 * p < d * (k - 1) + 1 or w + 2 * p < d * (k - 1) + 1:
        return
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((m, c // g, k, k)).astype(np.float32)
    out = _run(x, wt, None, (s, s), (p, p, p, p), (d, d), g)
    np.testing.assert_allclose(
        out, ref.conv2d(x, wt, None, (s, s), (p,) * 4, (d, d), g), rtol=RTOL, atol=1e-4
    )


@pytest.mark.parametrize(
    ("act", "alpha", "beta"), [("Relu", 0, 0), ("LeakyRelu", 0.1, 0), ("Clip", 0.0, 6.0)]
)
def test_conv_dispatch_fused_activation(act, alpha, beta):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    attrs = {
        "pads": [1, 1, 1, 1],
        "activation": act,
        "activation_alpha": alpha,
        "activation_beta": beta,
    }
    out = np.empty((1, 5, 8, 8), np.float32)
    ws = np.empty(workspace_size("Conv", [x, w, b], [out], attrs), np.float32)
    kernel("Conv")([x, w, b], [out], attrs, ws)
    y = ref.conv2d(x, w, b, (1, 1), (1, 1, 1, 1))
    want = {"Relu": ref.relu(y), "LeakyRelu": ref.leaky_relu(y, 0.1), "Clip": ref.clip(y, 0, 6)}[
        act
    ]
    np.testing.assert_allclose(out, want, rtol=RTOL, atol=1e-4)


def test_conv1d_dispatch():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 20)).astype(np.float32)
    w = rng.standard_normal((4, 3, 5)).astype(np.float32)
    attrs = {"pads": [2, 1], "strides": [2]}
    lo = conv_output_size(20, 5, 2, 2, 1, 1)
    out = np.empty((2, 4, lo), np.float32)
    kernel("Conv")([x, w], [out], attrs, None)
    want = ref.conv2d(x[:, :, None], w[:, :, None], None, (1, 2), (0, 2, 0, 1))[:, :, 0]
    np.testing.assert_allclose(out, want, rtol=RTOL, atol=1e-4)


def test_fold_batchnorm_matches_conv_then_bn():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    sc, bi, mu = (rng.standard_normal(4).astype(np.float32) for _ in range(3))
    var = rng.random(4).astype(np.float32) + 0.5
    w2, b2 = fold_batchnorm(w, b, sc, bi, mu, var, 1e-5)
    want = ref.batchnorm(ref.conv2d(x, w, b), sc, bi, mu, var, 1e-5)
    np.testing.assert_allclose(ref.conv2d(x, w2, b2), want, rtol=1e-4, atol=1e-4)
    assert w2.dtype == np.float32 and b2.dtype == np.float32


# -- small maps: the row kernel (pixels broadcast, channels in lanes) on paths that have it -----

ROW_CASES = [
    # (C, H, M, k, stride, pad, dilation, group): M a multiple of the row kernel's channel block
    (512, 7, 512, 3, 1, 1, 1, 1),
    (256, 14, 256, 3, 1, 1, 1, 1),
    (300, 6, 64, 3, 1, 1, 1, 1),  # several k-slices, the last one short
    (32, 5, 64, 1, 1, 0, 1, 1),
    (64, 10, 64, 3, 1, 2, 2, 1),
    (64, 12, 128, 3, 1, 1, 1, 2),
    (3, 28, 64, 5, 1, 2, 1, 1),
    # strided onto small maps: the row kernel on the gathered patches
    (256, 14, 512, 3, 2, 1, 1, 1),
    (128, 28, 256, 3, 2, 1, 1, 1),
    (300, 13, 64, 3, 2, 1, 2, 1),
    (64, 15, 64, 3, 3, 1, 1, 2),
    (64, 56, 128, 1, 2, 0, 1, 1),  # 784 pixels: past the row kernel's limit
]


def _packed_and_unpacked(c, h, m, k, s, p, d, g, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, c, h, h)).astype(np.float32)
    w = (rng.standard_normal((m, c // g, k, k)) * 0.05).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    oh = conv_output_size(h, k, s, p, p, d)
    plain = np.full((1, m, oh, oh), np.nan, np.float32)
    packed = plain.copy()
    size = conv_workspace_size(x.shape, w.shape, plain.shape, (s, s), (p,) * 4, (d, d), g)
    ws = np.full(size, np.nan, np.float32)
    conv2d(x, w, b, plain, s, s, p, p, d, d, g, 1, 0.0, 0.0, ws)
    conv2d_packed(x, pack_conv_weights(w, g), k, k, b, packed, s, s, p, p, d, d, g, 1, 0.0, 0.0, ws)
    return x, w, b, plain, packed


@pytest.mark.parametrize("case", ROW_CASES)
def test_small_maps_give_the_main_kernels_bits(case):
    # prepacked weights take the row kernel where the path has it (AVX-512); the unpacked call
    # always takes the main kernels: the two must agree bit for bit (same chains, same order)
    c, h, m, k, s, p, d, g = case
    x, w, b, plain, packed = _packed_and_unpacked(c, h, m, k, s, p, d, g)
    assert packed.tobytes() == plain.tobytes()
    want = np.maximum(ref.conv2d(x, w, b, (s, s), (p,) * 4, (d, d), g), 0)
    np.testing.assert_allclose(packed, want, rtol=RTOL, atol=1e-4)


def test_the_row_kernel_is_there_on_the_avx512_path():
    from flight.kernels import _ukernel_rows, isa

    assert (isa.PATH.vw == 2 * isa.PATH.mr) == _ukernel_rows.AVAILABLE
    if isa.PATH.name == "avx512":
        assert _ukernel_rows.AVAILABLE


@settings(max_examples=20, deadline=None)
@given(
    c=st.integers(1, 70),
    h=st.integers(3, 16),
    blocks=st.integers(1, 3),
    k=st.sampled_from([1, 2, 3]),
    stride=st.integers(1, 3),
    seed=st.integers(0, 5),
)
def test_small_maps_property(c, h, blocks, k, stride, seed):
    from flight.kernels._ukernel_rows import NT

    p = k // 2
    _x, _w, _b, plain, packed = _packed_and_unpacked(c, h, blocks * NT, k, stride, p, 1, 1, seed)
    assert packed.tobytes() == plain.tobytes()
