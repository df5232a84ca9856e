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
