"""Expectation propagation for orthant probabilities: each function's estimate is its own (the
same to the last bit whatever other functions share its batch), and a covariance that is no
covariance is refused instead of turning into NaN."""

import numpy as np
import pytest

from ntkgp._src.predict.orthant import ep_log_probabilities
from ntkgp._src.solve.linalg import NotPositiveDefiniteError
from ntkgp.predict import log_orthant_probability
from tests.conftest import ONLY_X64_PASS


def _rbf_cov(rng, n, d=5):
    x = rng.standard_normal((n, d))
    return np.exp(-np.sum((x[:, None] - x[None]) ** 2, axis=-1) / (2 * d)) + 0.1, x


@ONLY_X64_PASS  # NumPy float64 whatever JAX's dtype
def test_an_estimate_does_not_depend_on_its_batch(rng):
    """Functions that converge in few sweeps (signs that agree with the covariance) batched with
    slow ones (random signs), in different batches and orders: identical estimates."""
    k, x = _rbf_cov(rng, 40)
    easy = np.sign(x[:, :3]).T                                 # 3 smooth sign patterns
    hard = rng.choice([-1.0, 1.0], (5, 40))
    signs = np.concatenate([easy, hard])
    together = ep_log_probabilities(k, signs)
    alone = np.array([ep_log_probabilities(k, s[None])[0] for s in signs])
    order = rng.permutation(len(signs))
    shuffled = np.empty_like(together)
    shuffled[order] = ep_log_probabilities(k, signs[order])
    np.testing.assert_array_equal(together, alone)
    np.testing.assert_array_equal(together, shuffled)
    assert np.all(np.isfinite(together)) and np.all(together < 0)
    # and it is the probability EP is known to approximate: within 0.5 nat of the unbiased
    # tilted sampler on these 40-point orthants
    for s, ep in zip(signs[[0, 3]], together[[0, 3]]):
        ref = log_orthant_probability(k, s, method="tilted", samples=4000, seed=0)
        assert abs(ep - ref.log_p) < 0.5 + 4 * ref.stderr, (ep, ref)


@ONLY_X64_PASS
def test_an_indefinite_covariance_is_refused_not_turned_into_nan(rng):
    x = rng.standard_normal((30, 4))
    k = np.tanh(x @ x.T / 4) + 0.1                  # symmetric, unit-ish diagonal, indefinite
    assert np.linalg.eigvalsh(k)[0] < -0.1
    signs = np.sign(x[:, 0])
    with pytest.raises(NotPositiveDefiniteError, match="not positive semi-definite.*kernel"):
        log_orthant_probability(k, signs, method="ep")
    with pytest.raises(NotPositiveDefiniteError, match="not positive semi-definite"):
        ep_log_probabilities(k, signs[None])


@ONLY_X64_PASS
def test_a_singular_but_valid_covariance_still_works(rng):
    """Three points in a two-dimensional feature space: K has rank 2, so the PSD check must let
    it through. Sheppard's closed form is exact there: EP is within its usual bias (a few
    tenths of a nat at most) where the orthant has mass, and near zero where it has none."""
    seen = set()
    while seen != {True, False}:
        a = rng.standard_normal((3, 2))
        k, s = a @ a.T, rng.choice([-1.0, 1.0], 3)
        exact = log_orthant_probability(k, s, method="exact").log_p
        ep = log_orthant_probability(k, s, method="ep").log_p
        if np.isfinite(exact):
            assert abs(ep - exact) < 0.15, (ep, exact)
        else:                                       # no mass: P_EP below 1e-6
            assert -np.inf < ep < np.log(1e-6), ep
        seen.add(bool(np.isfinite(exact)))


@ONLY_X64_PASS
def test_a_diverged_ep_is_an_error_not_a_nan(rng, monkeypatch):
    """The last guard: if EP's log Z comes out non-finite for some function, the caller gets an
    error naming the sampler to use, never the NaN (forced here: no positive-definite K is
    known to make EP diverge)."""
    from ntkgp._src.predict import orthant
    real = orthant._ep_log_z
    monkeypatch.setattr(orthant, "_ep_log_z",
                        lambda *a: np.where(np.arange(3) == 1, np.nan, real(*a)))
    k, x = _rbf_cov(rng, 8)
    with pytest.raises(FloatingPointError, match="1 of 3 sign vectors.*method='tilted'"):
        ep_log_probabilities(k, np.sign(x[:, :3]).T)
