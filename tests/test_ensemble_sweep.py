"""Ensembles of trained networks against the closed forms: the Monte-Carlo error formulas
against exact Gaussian draws, and a reduced sweep."""

import json

import numpy as np
import pytest

from ntkgp import data, experiments, nn
from ntkgp._src.experiments.ensemble_sweep import relative_errors, sample_moments
from tests.conftest import DTYPE, ONLY_X64_PASS


def test_monte_carlo_error_formulas_match_exact_draws(rng):
    """E||mu_hat - mu||^2 = K tr(Sigma) / s and E||Sigma_hat - Sigma||_F^2 =
    (||Sigma||_F^2 + tr(Sigma)^2) / (K (s - 1)), checked over 4000 ensembles of exact draws."""
    m, k_out, s = 5, 2, 8
    a = rng.standard_normal((m, m))
    sigma = a @ a.T / m + 0.1 * np.eye(m)
    mu = rng.standard_normal((m, k_out))
    chol = np.linalg.cholesky(sigma)
    se_mean, se_cov = [], []
    for _ in range(4000):
        draws = mu + np.einsum("ij,sjk->sik", chol, rng.standard_normal((s, m, k_out)))
        mean, cov = sample_moments(draws)
        se_mean.append(np.sum((mean - mu) ** 2))
        se_cov.append(np.sum((cov - sigma) ** 2))
    tr, fro2 = np.trace(sigma), np.sum(sigma ** 2)
    assert np.mean(se_mean) == pytest.approx(k_out * tr / s, rel=0.06)
    assert np.mean(se_cov) == pytest.approx((fro2 + tr ** 2) / (k_out * (s - 1)), rel=0.08)
    assert relative_errors(mu, sigma, mu, sigma) == (0.0, 0.0)


def _data():
    x, y = data.load("diabetes")
    y = (y - y.mean()) / y.std()
    xtr, ytr, xte, _ = data.split(x, y[:, None], 30, 12, seed=0)
    return xtr.astype(DTYPE), ytr.astype(DTYPE), xte.astype(DTYPE)


def make_net(width):
    return nn.serial(nn.Dense(width, W_std=1.5, b_std=0.05), nn.Relu(),
                     nn.Dense(1, W_std=1.5, b_std=0.05))


@ONLY_X64_PASS
def test_reduced_sweep(tmp_path):
    """Wide ensembles are draws of the predicted Gaussian: their errors are Monte-Carlo error
    (within 2x of its expectation with 48 networks); narrow ones are further off."""
    xtr, ytr, xte = _data()
    r = experiments.ensemble_sweep(make_net, [16, 1024], xtr, ytr, xte, seeds=[4, 48],
                                   steps=100, show_progress=False)
    assert [(row.width, row.seeds) for row in r.rows] == [(16, 4), (16, 48), (1024, 4),
                                                          (1024, 48)]
    wide = r.rows[-1]
    assert wide.mean_err < 2 * wide.mean_err_mc and wide.cov_err < 2 * wide.cov_err_mc
    narrow = r.rows[1]
    assert narrow.cov_err > wide.cov_err
    for row in r.rows:
        assert row.mean_err_width <= row.mean_err and row.cov_err_width <= row.cov_err
        assert np.isfinite(row.mean_err_nngp) and np.isfinite(row.cov_err_nngp)
    assert r.dist_closed_form_nngp > 0      # GD on all layers is not the NNGP posterior
    back = experiments.EnsembleResult.from_json(r.to_json())
    assert back == r and json.loads(r.to_json())["widths"] == [16, 1024]
    assert "width part" in r.table()
    pytest.importorskip("matplotlib")
    experiments.plot_ensemble(r, tmp_path / "e.png").clf()
    assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_arguments():
    xtr, ytr, xte = _data()
    with pytest.raises(ValueError, match="at least 2"):
        experiments.ensemble_sweep(make_net, [8], xtr, ytr, xte, seeds=[1, 4])
    with pytest.raises(ValueError, match="changes with the width"):
        experiments.ensemble_sweep(
            lambda w: nn.serial(nn.Dense(w, parameterization="standard"), nn.Relu(),
                                nn.Dense(1, parameterization="standard")),
            [8, 64], xtr, ytr, xte)
