"""ntkgp.linalg: regularization, the blocked Cholesky, and the transposed-copy solves."""

import jax.numpy as jnp
import numpy as np
import pytest

from ntkgp import linalg
from ntkgp._src.solve import linalg as linalg_src
from ntkgp._src.solve.linalg import _blocked_cholesky
from tests.conftest import DTYPE, RTOL, rel_err


def _spd(n, rng):
    a = rng.standard_normal((n, n + 3)).astype(DTYPE)
    return jnp.asarray(a @ a.T / n + np.eye(n, dtype=DTYPE))


@pytest.mark.parametrize("n,block", [(7, 3), (9, 3), (10, 16)])
def test_blocked_cholesky_equals_lapack(rng, n, block):
    k = _spd(n, rng)
    assert rel_err(_blocked_cholesky(k, 0.0, False, block),
                   np.linalg.cholesky(np.asarray(k, np.float64))) <= 10 * RTOL


def test_blocked_cholesky_regularizes_each_panel_as_the_whole_matrix(rng):
    k = _spd(11, rng)
    k = k + 0.1 * jnp.asarray(rng.standard_normal((11, 11)).astype(DTYPE))  # not symmetric
    kr, added = linalg.regularize(k, 0.3, False)
    want = np.linalg.cholesky(np.asarray(kr, np.float64))
    assert rel_err(_blocked_cholesky(k, added, True, 4), want) <= 10 * RTOL


def test_blocked_cholesky_fails_with_nan_on_a_non_pd_matrix():
    bad = jnp.diag(jnp.array([1.0, 1.0, 1.0, -1.0, 1.0], DTYPE))
    assert np.isnan(np.asarray(_blocked_cholesky(bad, 0.0, False, 2))).any()


def test_solves_and_logdet(rng):
    k = _spd(12, rng)
    c = linalg.cholesky(k)
    b = jnp.asarray(rng.standard_normal((12, 4)).astype(DTYPE))
    kn = np.asarray(k, np.float64)
    assert rel_err(c.solve(b), np.linalg.solve(kn, np.asarray(b, np.float64))) <= 10 * RTOL
    assert rel_err(c.chol @ c.solve_lower(b), b) <= 10 * RTOL
    assert rel_err(c.chol.T @ c.solve_upper(b), b) <= 10 * RTOL
    assert float(c.logdet()) == pytest.approx(np.linalg.slogdet(kn)[1], rel=10 * RTOL)


def test_large_kernels_keep_one_factor_and_solve_the_same(rng, monkeypatch):
    # thresholds lowered so that 13 points take the large-N path (blocked, one factor copy)
    k = _spd(13, rng)
    b = jnp.asarray(rng.standard_normal((13, 3)).astype(DTYPE))
    two = linalg.cholesky(k, 1e-3)
    monkeypatch.setattr(linalg_src, "FACTOR_COPY_MAX_N", 8)
    monkeypatch.setattr(linalg_src, "LARGE_LAPACK_N", 8)
    monkeypatch.setattr(linalg_src, "CHOLESKY_BLOCK", 5)
    linalg_src._cholesky.clear_cache()
    try:
        one = linalg.cholesky(k, 1e-3)
    finally:
        linalg_src._cholesky.clear_cache()
    assert one.chol_t is None and two.chol_t is not None
    assert rel_err(one.chol, two.chol) <= 10 * RTOL
    for f in ("solve_lower", "solve_upper", "solve"):
        assert rel_err(getattr(one, f)(b), getattr(two, f)(b)) <= 10 * RTOL
        assert rel_err(getattr(one, f)(b[:, 0]), getattr(two, f)(b)[:, 0]) <= 10 * RTOL
    assert float(one.logdet()) == pytest.approx(float(two.logdet()), rel=10 * RTOL)


def test_regularization_is_relative_to_the_mean_diagonal(rng):
    k = 5.0 * _spd(6, rng)
    c = linalg.cholesky(k, 1e-2)
    assert float(c.added) == pytest.approx(1e-2 * float(jnp.mean(jnp.diagonal(k))), rel=1e-5)
    want = np.asarray(k, np.float64) + float(c.added) * np.eye(6)
    assert rel_err(c.chol @ c.chol.T, want) <= 10 * RTOL


def test_asymmetric_input_is_symmetrized():
    k = jnp.array([[2.0, 1.2], [0.8, 2.0]], DTYPE)
    c = linalg.cholesky(k)
    assert rel_err(c.chol @ c.chol.T, np.array([[2.0, 1.0], [1.0, 2.0]])) <= 10 * RTOL


def test_eigh_clips_negative_rounding(rng):
    k = jnp.ones((5, 5), DTYPE)  # rank one: four zero eigenvalues, some negative by rounding
    e = linalg.eigh(k)
    assert float(jnp.min(e.evals)) >= 0.0
    assert float(jnp.max(e.evals)) == pytest.approx(5.0, rel=1e-5)


def test_clip_covariance():
    c = linalg.clip_covariance(jnp.array([[-1e-9, 2.0], [1.0, 1.0]], DTYPE))
    np.testing.assert_allclose(np.asarray(c), [[0.0, 1.5], [1.5, 1.0]], rtol=1e-6)


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"square \(N, N\)"):
        linalg.cholesky(np.ones((2, 3), DTYPE))
    with pytest.raises(ValueError, match="contains 1 NaN"):
        linalg.cholesky(np.array([[1.0, np.nan], [0.0, 1.0]], DTYPE))
    with pytest.raises(ValueError, match="`diag_reg` must be"):
        linalg.eigh(np.eye(2, dtype=DTYPE), -1.0)
