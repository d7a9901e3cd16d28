"""trace_axes=() in the predictions: kernels with full K x K output blocks, against the
(N, N) path on separable kernels and against direct numpy formulas on coupled ones."""

import numpy as np
import pytest
import scipy.linalg

from ntkgp import predict
from tests.conftest import DTYPE, X64


def _blocks(rng, n, k):
    """A positive definite kernel over (point, output) pairs, coupled across outputs, as
    (n, n, k, k) blocks, with its (n k, n k) matrix."""
    a = rng.standard_normal((n * k, n * k + 3))
    mat = a @ a.T / (n * k)
    return mat.reshape(n, k, n, k).transpose(0, 2, 1, 3), mat


def _tol():
    return 1e-9 if X64 else 2e-3


def test_separable_blocks_equal_the_traced_kernel():
    rng = np.random.default_rng(0)
    n, m, k = 7, 3, 2
    a = rng.standard_normal((n + m, 5))
    theta = a @ a.T / 5 + 0.1 * np.eye(n + m)
    y = rng.standard_normal((n, k)).astype(DTYPE)
    f0, g0 = rng.standard_normal((n, k)), rng.standard_normal((m, k))
    eye = np.eye(k)
    full = np.einsum("ij,ab->ijab", theta, eye).astype(DTYPE)
    traced = predict.gradient_descent_mse(theta[:n, :n].astype(DTYPE), y)
    blocked = predict.gradient_descent_mse(full[:n, :n], y, trace_axes=())
    for t in (0.5, None):
        want = traced(t, f0, g0, theta[n:, :n].astype(DTYPE))
        got = blocked(t, f0, g0, full[n:, :n])
        for w, g in zip(want, got):
            np.testing.assert_allclose(g, w, rtol=_tol(), atol=_tol())
    post = predict.gp_inference(full[:n, :n], y, diag_reg=0.1, trace_axes=())
    mean, cov = post.predict(full[n:, :n], full[n:, n:])
    ref = predict.gp_inference(theta[:n, :n].astype(DTYPE), y, diag_reg=0.1)
    mean_ref, cov_ref = ref.predict(theta[n:, :n].astype(DTYPE), theta[n:, n:].astype(DTYPE))
    np.testing.assert_allclose(mean, mean_ref, rtol=_tol(), atol=_tol())
    np.testing.assert_allclose(cov, np.einsum("ij,ab->ijab", cov_ref, eye), rtol=_tol(),
                               atol=_tol())


def test_coupled_blocks_against_numpy():
    rng = np.random.default_rng(1)
    n, m, k = 6, 2, 3
    blocks, mat = _blocks(rng, n + m, k)
    nk = n * k
    y = rng.standard_normal((n, k))
    f0 = rng.standard_normal((n, k))
    g0 = rng.standard_normal((m, k))
    t = 3.0
    # gradient flow on 0.5 * mean((f - y)^2) over the n k entries
    kdd, ktd = mat[:nk, :nk], mat[nk:, :nk]
    decay = scipy.linalg.expm(-t * kdd / nk)
    f_t = y.reshape(-1) + decay @ (f0 - y).reshape(-1)
    g_t = g0.reshape(-1) + ktd @ np.linalg.solve(kdd, (np.eye(nk) - decay)
                                                 @ (y - f0).reshape(-1))
    dyn = predict.gradient_descent_mse(blocks[:n, :n].astype(DTYPE), y.astype(DTYPE),
                                       trace_axes=())
    got_tr, got_te = dyn(t, f0, g0, blocks[n:, :n].astype(DTYPE))
    np.testing.assert_allclose(got_tr, f_t.reshape(n, k), rtol=_tol(), atol=_tol())
    np.testing.assert_allclose(got_te, g_t.reshape(m, k), rtol=_tol(), atol=_tol())
    # GP posterior with relative noise (mean of the n k diagonal entries)
    noise = 0.05 * np.mean(np.diag(kdd))
    kreg = kdd + noise * np.eye(nk)
    mean = ktd @ np.linalg.solve(kreg, y.reshape(-1))
    cov = mat[nk:, nk:] - ktd @ np.linalg.solve(kreg, ktd.T)
    post = predict.gp_inference(blocks[:n, :n].astype(DTYPE), y.astype(DTYPE), diag_reg=0.05,
                                trace_axes=())
    got_mean, got_cov = post.predict(blocks[n:, :n].astype(DTYPE),
                                     blocks[n:, n:].astype(DTYPE))
    np.testing.assert_allclose(got_mean, mean.reshape(m, k), rtol=_tol(), atol=_tol())
    want_cov = cov.reshape(m, k, m, k).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(got_cov, want_cov, rtol=_tol(), atol=_tol())
    lml = (-0.5 * y.reshape(-1) @ np.linalg.solve(kreg, y.reshape(-1))
           - 0.5 * np.linalg.slogdet(kreg)[1] - 0.5 * nk * np.log(2 * np.pi))
    np.testing.assert_allclose(post.log_marginal_likelihood(), lml, rtol=_tol())


def test_bad_blocks_are_clear_errors():
    y = np.zeros((4, 2), DTYPE)
    with pytest.raises(ValueError, match=r"\(N1, N2, 2, 2\)"):
        predict.gradient_descent_mse(np.eye(4, dtype=DTYPE), y, trace_axes=())
    with pytest.raises(ValueError, match="trace_axes"):
        predict.gp_inference(np.eye(4, dtype=DTYPE), y, trace_axes=(0,))
    dyn = predict.gradient_descent_mse(np.eye(8, dtype=DTYPE).reshape(4, 2, 4, 2).transpose(
        0, 2, 1, 3), y, trace_axes=())
    with pytest.raises(ValueError, match="fx_train_0"):
        dyn(1.0, np.zeros((4, 3)))
