"""Finite networks converge to the analytic kernels as width grows: the independent check that
the analytic recursion and the empirical kernels agree."""

import jax
import numpy as np
import pytest

from ntkgp import empirical, nn
from tests.conftest import DTYPE, X64
from tests.helpers import check_convergence_rate

ACTS = {"relu": nn.Relu, "erf": nn.Erf, "gelu": nn.Gelu, "abrelu": lambda: nn.ABRelu(-0.3, 1.2),
        "layernorm_relu": None, "residual": None}


def make_net(name, width):
    """Three hidden layers; the readout is `width` wide and traced, so the empirical NNGP
    averages over many outputs (one output's f(x1) f(x2) has O(1) variance at any width)."""
    if name == "layernorm_relu":
        return nn.serial(nn.Dense(width, W_std=1.5, b_std=0.1), nn.LayerNorm(), nn.Relu(),
                         nn.Dense(width, W_std=1.5, b_std=0.1), nn.LayerNorm(), nn.Relu(),
                         nn.Dense(width, W_std=1.5, b_std=0.1))
    if name == "residual":
        block = nn.serial(nn.FanOut(2), nn.parallel(
            nn.serial(nn.Relu(), nn.Dense(width, W_std=1.2, b_std=0.1)), nn.Identity()),
            nn.FanInSum())
        return nn.serial(nn.Dense(width, W_std=1.5, b_std=0.1), block, block, nn.Relu(),
                         nn.Dense(width, W_std=1.5, b_std=0.1))
    act = ACTS[name]
    return nn.serial(nn.Dense(width, W_std=1.5, b_std=0.1), act(),
                     nn.Dense(width, W_std=1.5, b_std=0.1), act(),
                     nn.Dense(width, W_std=1.5, b_std=0.1))


def rms_errors(name, width, x, n_samples):
    """sqrt(mean over networks of ||K_s - K||_F^2) / ||K||_F, for the NNGP and the NTK.

    The per-network error, averaged in square over `n_samples` fixed keys: its square is an
    average of iid terms, so its relative spread is ~sqrt(2/n_samples). (The error of the
    *averaged* kernel is dominated by one or two shared modes, e.g. the overall scale, and
    fluctuates like a chi with 1-2 degrees of freedom whatever n_samples is.)
    """
    ana = make_net(name, 1).kernel(x, None)
    net = make_net(name, width)
    nngp_fn = empirical.empirical_nngp_fn(net)
    ntk_fn = empirical.empirical_ntk_fn(net)
    init = jax.jit(lambda k: net.init(k, x.shape)[1])
    se = np.zeros(2)
    for s in range(n_samples):
        p = init(jax.random.fold_in(jax.random.PRNGKey(0), s))
        for i, (f, ref) in enumerate(((nngp_fn, ana.nngp), (ntk_fn, ana.ntk))):
            d = np.asarray(f(x, None, p), np.float64) - np.asarray(ref, np.float64)
            se[i] += np.sum(d * d) / np.sum(np.asarray(ref, np.float64) ** 2)
    return np.sqrt(se / n_samples)


def _check_rate(name, widths, n_samples):
    x = np.random.default_rng(3).standard_normal((12, 5)).astype(DTYPE)
    return check_convergence_rate(lambda w, xx, n: rms_errors(name, w, xx, n), x, widths,
                                  n_samples, name)


@pytest.mark.parametrize("name", ["relu", "erf"])
def test_convergence_rate_reduced(name):
    """The CI version: widths 64 -> 256."""
    _check_rate(name, (64, 256), n_samples=24)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ACTS))
def test_convergence_rate(name):
    _check_rate(name, (64, 256, 1024), n_samples=32)


def test_monte_carlo_kernel_is_the_mean_of_empirical_kernels(rng):
    net = make_net("relu", 32)
    x1 = rng.standard_normal((5, 3)).astype(DTYPE)
    x2 = rng.standard_normal((4, 3)).astype(DTYPE)
    key = jax.random.PRNGKey(7)
    mc = empirical.monte_carlo_kernel(net, key, 3, x1, x2)
    ps = [net.init(jax.random.fold_in(key, s), x1.shape)[1] for s in range(3)]
    ntk = np.mean([empirical.empirical_ntk_fn(net)(x1, x2, p) for p in ps], axis=0)
    nngp = np.mean([empirical.empirical_nngp_fn(net)(x1, x2, p) for p in ps], axis=0)
    np.testing.assert_allclose(mc.ntk, ntk, rtol=1e-5)
    np.testing.assert_allclose(mc.nngp, nngp, rtol=1e-5)
    assert mc.ntk.shape == (5, 4) and mc.cov2.shape == (4,)
    # (init_fn, apply_fn) pairs work the same.
    mc2 = empirical.monte_carlo_kernel((net.init, net.apply), key, 3, x1, x2, get="ntk")
    np.testing.assert_allclose(mc2, mc.ntk, rtol=1e-6)


@pytest.mark.skipif(not X64, reason="the average over samples is compared at f64 precision")
def test_monte_carlo_average_approaches_analytic():
    x = np.random.default_rng(3).standard_normal((8, 5))
    ana = make_net("relu", 1).kernel(x, None)
    mc = empirical.monte_carlo_kernel(make_net("relu", 512), jax.random.PRNGKey(0), 16, x, None)
    for g in ("nngp", "ntk"):
        err = np.linalg.norm(getattr(mc, g) - getattr(ana, g)) / np.linalg.norm(getattr(ana, g))
        # 16 networks of width 512: per-network RMS error ~0.1, so the mean's is ~0.1/4.
        assert err < 0.06, (g, err)
