"""predict.gradient_descent_ensemble: sampled initializations through the function-space ODE."""

import jax
import numpy as np
import pytest

from ntkgp import nn, predict, train
from tests.conftest import DTYPE


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 2)).astype(DTYPE)
    xt = (x[:3] + 0.05 * rng.standard_normal((3, 2))).astype(DTYPE)  # near training points
    y = np.eye(3, dtype=DTYPE)[[0, 1, 2, 0, 1, 2]]
    net = nn.serial(nn.Dense(512, W_std=1.5, b_std=0.1), nn.Erf(), nn.Dense(3))
    return net, x, y, xt


def mse(f, y):
    return 0.5 * ((f - y) ** 2).mean()


def test_squared_error_samples_are_draws_of_the_closed_form_gaussian(setup):
    """Mean and variance of 3000 samples against gradient_descent_mse_ensemble, within 4
    standard errors (mean: sigma / sqrt(S); variance: sigma^2 sqrt(2 / S))."""
    net, x, y, xt = setup
    s = 3000
    got = predict.gradient_descent_ensemble(mse, net, x, y, n_samples=s)(2.0, xt)
    mean, cov = predict.gradient_descent_mse_ensemble(net, x, y)(2.0, xt, "ntk",
                                                                 compute_cov=True)
    var = np.diag(np.asarray(cov, np.float64))[:, None]
    assert np.all(np.abs(np.asarray(got.mean) - mean) <= 4 * np.sqrt(var / s))
    assert np.all(np.abs(np.asarray(got.std, np.float64) ** 2 - var) <= 4 * var * np.sqrt(2 / s))
    assert got.samples.shape == (s, 3, 3)


def test_cross_entropy_ensemble_probabilities_and_times(setup):
    net, x, y, xt = setup
    ens = predict.gradient_descent_ensemble(train.cross_entropy_loss, net, x, y,
                                            n_samples=400, key=jax.random.PRNGKey(3))
    out = ens(np.array([0.0, 200.0]), xt)
    assert out.samples.shape == (2, 400, 3, 3) and out.prob_mean.shape == (2, 3, 3)
    np.testing.assert_allclose(np.asarray(out.prob_mean).sum(-1), 1.0, rtol=1e-5)
    # at t = 0 the outputs are the NNGP prior: standard deviation sqrt(K(x, x))
    prior = np.sqrt(np.diag(np.asarray(net.kernel(xt, None, "nngp"), np.float64)))[:, None]
    np.testing.assert_allclose(np.asarray(out.std[0], np.float64), np.broadcast_to(prior, (3, 3)),
                               rtol=4 * np.sqrt(0.5 / 400))
    # training fits the labels: test points next to training points take their class
    near = np.sum(np.asarray(out.prob_mean) * y[:3], -1)
    assert near[1].mean() > 0.5 and near[1].mean() > near[0].mean() + 0.15, near
    with pytest.raises(ValueError, match=">= 0"):
        ens(-1.0, xt)
    with pytest.raises(TypeError, match="scalar"):
        predict.gradient_descent_ensemble(lambda f, t: f - t, net, x, y)
