"""The minimax-tilted orthant sampler against closed forms: Sheppard's formulas for up to three
points, and the one-dimensional integral of equicorrelated Gaussians in hundreds of
dimensions, where EP is measurably biased."""

import math

import numpy as np
import pytest
from scipy import special

from ntkgp.predict import log_orthant_probability
from tests.conftest import ONLY_X64_PASS


def equicorrelated_log_p(n, rho):
    r"""log P(g > 0) for n unit-variance Gaussians with pairwise correlation rho: with
    g_i = sqrt(rho) w + sqrt(1 - rho) e_i, it is E_w[Phi(sqrt(rho / (1 - rho)) w)^n]."""
    t = np.linspace(-12, 12, 40001)
    log_f = (-0.5 * t * t - 0.5 * math.log(2 * math.pi)
             + n * special.log_ndtr(math.sqrt(rho / (1 - rho)) * t))
    top = log_f.max()
    return top + math.log(np.trapezoid(np.exp(log_f - top), t))


@ONLY_X64_PASS  # NumPy float64 whatever JAX's dtype
@pytest.mark.parametrize("n, rho", [(60, 0.9), (250, 0.5), (250, 0.2)])
def test_tilted_equals_the_equicorrelated_closed_form(n, rho):
    k = np.full((n, n), rho) + (1 - rho) * np.eye(n)
    signs = np.ones(n)
    want = equicorrelated_log_p(n, rho)
    got = log_orthant_probability(k, signs, method="tilted", samples=3000, seed=1)
    assert 0 < got.stderr < 0.05, got
    assert abs(got.log_p - want) < 4 * got.stderr, (got, want)
    # a flipped sign pattern of the same covariance: rescaling by the signs leaves it the same
    flip = np.where(np.arange(n) % 3 == 0, -1.0, 1.0)
    got2 = log_orthant_probability(k * flip[:, None] * flip[None, :], flip, method="tilted",
                                   samples=3000, seed=2)
    assert abs(got2.log_p - want) < 4 * got2.stderr
    if rho >= 0.8:  # strong correlations: EP is off by more than the sampler's error
        ep = log_orthant_probability(k, signs).log_p
        assert abs(ep - want) > 3 * got.stderr, (ep, want, got)


@ONLY_X64_PASS  # NumPy float64 whatever JAX's dtype
def test_tilted_equals_the_exact_forms_for_up_to_three_points(rng):
    for n in (1, 2, 3):
        for _ in range(5):
            a = rng.standard_normal((n, n + 1))
            k = a @ a.T + 0.1 * np.eye(n)
            s = rng.choice([-1.0, 1.0], n)
            exact = log_orthant_probability(k, s, method="exact").log_p
            got = log_orthant_probability(k, s, method="tilted", samples=4000)
            assert abs(got.log_p - exact) < 4 * got.stderr + 1e-12, (n, got, exact)


@ONLY_X64_PASS  # NumPy float64 whatever JAX's dtype
def test_weighted_draws_are_the_truncated_gaussian(rng):
    """The tilted draws lie in the orthant, and reweighted they have the moments of N(0, K)
    conditioned on it (against 2,000,000 brute-force prior draws)."""
    from ntkgp._src.predict.orthant import tilted_draws
    a = rng.standard_normal((4, 6))
    k = a @ a.T / 6 + 0.2 * np.eye(4)
    s = np.array([1.0, -1.0, 1.0, 1.0])
    g, log_w = tilted_draws(k, s, 40000, np.random.default_rng(3))
    assert np.all(g * s > 0)
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    prior = np.random.default_rng(4).multivariate_normal(np.zeros(4), k, 2_000_000)
    inside = prior[np.all(prior * s > 0, axis=1)]
    np.testing.assert_allclose(w @ g, inside.mean(0), atol=0.02)
    np.testing.assert_allclose(w @ (g * g), np.mean(inside ** 2, 0), rtol=0.03)
