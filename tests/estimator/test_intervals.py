"""Predictive intervals of the regressors: the fitted GP's posterior plus the fitted noise,
calibrated on held-out data of offline regression sets."""

import numpy as np
import pytest
import scipy.stats
from sklearn.datasets import load_diabetes, make_friedman1, make_friedman2
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from ntkgp.estimator import NNGPRegressor, NTKRegressor
from tests.conftest import DTYPE, X64


def _split(x, y):
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.4, random_state=0)
    sc = StandardScaler().fit(xtr)
    return sc.transform(xtr).astype(DTYPE), sc.transform(xte).astype(DTYPE), ytr, yte


def _sets():
    rng = np.random.default_rng(0)
    xs = rng.uniform(-3, 3, (500, 2))
    return {
        "diabetes": load_diabetes(return_X_y=True),
        "friedman1": make_friedman1(n_samples=500, noise=1.0, random_state=0),
        "friedman2": make_friedman2(n_samples=500, noise=100.0, random_state=0),
        "sincos": (xs, np.sin(xs[:, 0]) * np.cos(xs[:, 1]) + 0.2 * rng.standard_normal(500)),
    }


@pytest.mark.skipif(not X64, reason="calibration of fitted models: float64 pass")
@pytest.mark.usefixtures("optimized_programs")  # bound by running the fits
def test_nngp_95_percent_intervals_cover_90_to_98_percent_of_held_out_targets():
    # 200 held-out points per set: a calibrated 95% interval covers 95% +- 1.5% (binomial
    # std) of each, so each set must reach 90% and the 800 points together 90-98%
    hits = []
    for name, (x, y) in _sets().items():
        xtr, xte, ytr, yte = _split(x, y)
        reg = NNGPRegressor(depth=2).fit(xtr, ytr)
        lo, hi = reg.predict_interval(xte, 0.95)
        inside = (yte >= lo) & (yte <= hi)
        assert np.mean(inside) >= 0.90, (name, np.mean(inside))
        # the noise-free std alone is far too narrow for new targets (49% on diabetes)
        mean, std = reg.predict(xte, return_std=True)
        assert np.mean(np.abs(yte - mean) <= 1.96 * std) < np.mean(inside), name
        hits.append(inside)
    assert 0.90 <= np.mean(np.concatenate(hits)) <= 0.98


@pytest.mark.parametrize("cls", [NNGPRegressor, NTKRegressor])
def test_predictive_variance_is_the_gp_posterior_plus_the_fitted_noise(cls):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 3)).astype(DTYPE)
    y = np.stack([np.sin(x[:, 0]), 3.0 * np.cos(x[:, 1]) + 5.0], axis=1)
    reg = cls(depth=1).fit(x, y)
    xt = rng.standard_normal((7, 3)).astype(DTYPE)
    mean, std = reg.predict(xt, return_std=True, predictive=True)
    _, cov = reg.predict(xt, return_cov=True, predictive=True)
    noise = reg.noise_variance_
    assert noise.shape == (2,) and np.all(noise > 0)
    # the fitted GP: the NNGP, or the NTK as a GP kernel (its posterior, not the ensemble)
    post = reg.posterior_ if cls is NNGPRegressor else reg.posterior_.as_mode("ntkgp")
    _, var = post.predict(xt, return_var=True)
    want = (np.asarray(var, np.float64)[:, None] + float(post.noise)) * reg.y_scale_ ** 2
    tol = 1e-10 if X64 else 1e-4
    np.testing.assert_allclose(std ** 2, want, rtol=tol)
    np.testing.assert_allclose(np.diagonal(cov, axis1=0, axis2=1).T, want, rtol=tol)
    np.testing.assert_allclose(mean, reg.predict(xt), rtol=tol, atol=tol)
    lo, hi = reg.predict_interval(xt, 0.8)
    z = scipy.stats.norm.ppf(0.9)
    np.testing.assert_allclose(hi - lo, 2 * z * std, rtol=tol)
    np.testing.assert_allclose((hi + lo) / 2, mean, rtol=tol, atol=tol)


def test_interval_errors():
    x = np.random.default_rng(2).standard_normal((20, 2)).astype(DTYPE)
    reg = NNGPRegressor(optimizer=None).fit(x, x[:, 0])
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="coverage"):
            reg.predict_interval(x, bad)
    timed = NTKRegressor(optimizer=None, t=10.0).fit(x, x[:, 0])
    with pytest.raises(ValueError, match="t=None"):
        timed.predict_interval(x)
    with pytest.raises(ValueError, match="return_std=True or return_cov=True"):
        reg.predict(x, predictive=True)  # a mean alone would hide that nothing was asked
    with pytest.raises(ValueError, match="return_std=True or return_cov=True"):
        timed.predict(x, predictive=True)
