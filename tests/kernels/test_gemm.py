"""Gemm / MatMul kernels against the numpy reference."""

import numpy as np
import pytest
import reference as ref
from hypothesis import given, settings
from hypothesis import strategies as st

from flight.kernels import gemm, gemm_nn, gemm_workspace_size, matmul, matmul_shape
from flight.model.ops import kernel

RTOL, ATOL = 1e-4, 1e-5


def _r(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 40), n=st.integers(1, 70), k=st.integers(0, 300), seed=st.integers(0, 9))
def test_gemm_nn_shapes(m, n, k, seed):
    rng = np.random.default_rng(seed)
    a, b = _r(rng, m, k), _r(rng, k, n)
    out = np.full((m, n), np.nan, np.float32)
    gemm_nn(a, b, out.reshape(-1), 0, n, np.zeros(gemm_workspace_size(m, n, k), np.float32))
    np.testing.assert_allclose(out, ref.matmul(a, b), rtol=RTOL, atol=ATOL * max(1, k) ** 0.5)


def test_gemm_large_blocks():
    # crosses the MC, KC and NC block edges
    rng = np.random.default_rng(1)
    a, b = _r(rng, 97, 600), _r(rng, 600, 1100)
    out = np.empty((97, 1100), np.float32)
    gemm(a, b, None, out)
    np.testing.assert_allclose(out, ref.matmul(a, b), rtol=RTOL, atol=1e-3)


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("cshape", [None, (), (13,), (1, 13), (7, 1), (7, 13)])
def test_gemm_attrs(ta, tb, cshape):
    rng = np.random.default_rng(2)
    a = _r(rng, *((9, 7) if ta else (7, 9)))
    b = _r(rng, *((13, 9) if tb else (9, 13)))
    c = None if cshape is None else _r(rng, *cshape)
    out = np.empty((7, 13), np.float32)
    inputs = [a, b] if c is None else [a, b, c]
    kernel("Gemm")(
        inputs, [out], {"alpha": 0.5, "beta": 2.0, "transA": int(ta), "transB": int(tb)}, None
    )
    np.testing.assert_allclose(out, ref.gemm(a, b, c, 0.5, 2.0, ta, tb), rtol=RTOL, atol=ATOL)


@settings(max_examples=30, deadline=None)
@given(
    m=st.integers(1, 2),
    n=st.integers(1, 40),
    k=st.sampled_from([0, 1, 15, 16, 17, 31, 33, 100, 512]),
    ta=st.booleans(),
    seed=st.integers(0, 9),
)
def test_fully_connected_rows_by_dot_products(m, n, k, ta, seed):
    # batch-1 fully connected layers (transB, at most ROWS_BY_DOT rows) take the dot-product path
    rng = np.random.default_rng(seed)
    a = _r(rng, *((k, m) if ta else (m, k)))
    w = _r(rng, n, k)
    c = _r(rng, n)
    out = np.full((m, n), np.nan, np.float32)
    gemm(a, w, c, out, 1.0, 1.0, ta, True)
    want = ref.gemm(a, w, c, 1.0, 1.0, ta, True)
    np.testing.assert_allclose(out, want, rtol=RTOL, atol=ATOL * max(1, k) ** 0.5)


def test_dot_products_follow_their_stated_order():
    # 16 lanes (p = l, l + 16, ...), a pairwise tree, plus the scalar tail: the order is part
    # of the result (the same on every FMA path), so pin it against a float64 model of it
    from flight.kernels._vrow import dot

    rng = np.random.default_rng(3)
    k = 16 * 5 + 7
    a = (rng.standard_normal(k) * 1e3).astype(np.float32)
    b = (rng.standard_normal(k) * 1e-3).astype(np.float32)

    def fma(x, y, z):  # exact product (24+24 bits fit a double), one rounding to float32
        return np.float32(np.float64(x) * np.float64(y) + np.float64(z))

    lanes = [np.float32(0.0)] * 16
    for p in range(16 * 5):
        lanes[p % 16] = fma(a[p], b[p], lanes[p % 16])
    tail = np.float32(0.0)
    for p in range(16 * 5, k):
        tail = fma(a[p], b[p], tail)
    while len(lanes) > 1:
        half = len(lanes) // 2
        lanes = [np.float32(lanes[i] + lanes[i + half]) for i in range(half)]
    want = np.float32(lanes[0] + tail)

    from numba import njit

    @njit
    def call(x, y):
        return dot(x, 0, y, 0, x.shape[0])

    assert np.float32(call(a, b)).tobytes() == want.tobytes()


@pytest.mark.parametrize(
    ("sa", "sb"),
    [
        ((5, 8), (8, 3)),
        ((8,), (8, 3)),
        ((5, 8), (8,)),
        ((2, 5, 8), (8, 3)),
        ((2, 1, 5, 8), (3, 8, 4)),
        ((4, 6, 8), (4, 8, 2)),
    ],
)
def test_matmul_broadcast(sa, sb):
    rng = np.random.default_rng(3)
    a, b = _r(rng, *sa), _r(rng, *sb)
    out = np.empty(matmul_shape(sa, sb), np.float32)
    matmul(a, b, out)
    np.testing.assert_allclose(out, ref.matmul(a, b), rtol=RTOL, atol=ATOL)
