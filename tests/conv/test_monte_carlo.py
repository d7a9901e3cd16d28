"""Finite CNNs converge to the analytic CNTK as the number of channels grows."""

import jax
import numpy as np
import pytest

from ntkgp import empirical, nn
from tests.conftest import DTYPE, ONLY_X64_PASS
from tests.helpers import check_convergence_rate

ARCHS = ("gap", "flatten", "circular_erf_avgpool", "residual_layernorm")


def make_net(name, width, out=None):
    """Two conv layers and a readout of ``out`` outputs (default ``width``)."""
    c = dict(W_std=1.5, b_std=0.1)
    out = width if out is None else out
    if name == "gap":
        return nn.serial(nn.Conv(width, (3, 3), padding="SAME", **c), nn.Relu(),
                         nn.Conv(width, (3, 3), strides=(2, 2), padding="SAME", **c), nn.Relu(),
                         nn.GlobalAvgPool(), nn.Dense(out, **c))
    if name == "flatten":
        return nn.serial(nn.Conv(width, (3, 3), padding="VALID", **c), nn.Relu(),
                         nn.Conv(width, (2, 2), padding="SAME", **c), nn.Relu(),
                         nn.Flatten(), nn.Dense(out, **c))
    if name == "circular_erf_avgpool":
        return nn.serial(nn.Conv(width, (3, 3), padding="CIRCULAR", **c), nn.Erf(),
                         nn.AvgPool((2, 2), padding="SAME"),
                         nn.Conv(width, (2, 2), padding="VALID", **c), nn.Erf(),
                         nn.Flatten(), nn.Dense(out, **c))
    if name == "residual_layernorm":
        block = nn.serial(nn.FanOut(2), nn.parallel(
            nn.serial(nn.Relu(), nn.Conv(width, (3, 3), padding="SAME", **c)), nn.Identity()),
            nn.FanInSum())
        return nn.serial(nn.Conv(width, (3, 3), padding="SAME", **c), block, nn.LayerNorm(),
                         nn.Relu(), nn.GlobalAvgPool(), nn.Dense(out, **c))
    raise KeyError(name)


def rms_errors(name, width, x, n_samples):
    """sqrt(mean over networks of ||K_s - K||_F^2) / ||K||_F for the NNGP and the NTK (see
    tests/kernels/test_monte_carlo.py for why per-network errors).

    The empirical NNGP is that of a readout with ``width`` outputs (one output's f(x1) f(x2)
    has O(1) variance at any width); the NTK is that of one output, which already converges
    (it sums over all parameters), and costs ``width`` times less to differentiate.
    """
    ana = make_net(name, 1).kernel(x, None)
    se = np.zeros(2)
    for i, (g, out, make_fn) in enumerate((("nngp", width, empirical.empirical_nngp_fn),
                                           ("ntk", 1, empirical.empirical_ntk_fn))):
        net = make_net(name, width, out)
        f = jax.jit(make_fn(net))
        init = jax.jit(lambda k: net.init(k, x.shape)[1])
        ref = np.asarray(getattr(ana, g), np.float64)
        for s in range(n_samples):
            d = np.asarray(f(x, None, init(jax.random.fold_in(jax.random.PRNGKey(0), s))),
                           np.float64) - ref
            se[i] += np.sum(d * d) / np.sum(ref ** 2)
    return np.sqrt(se / n_samples)


def _check_rate(name, widths, n_samples):
    x = np.random.default_rng(5).standard_normal((6, 6, 6, 2)).astype(DTYPE)
    return check_convergence_rate(lambda w, xx, n: rms_errors(name, w, xx, n), x, widths,
                                  n_samples, name)


@ONLY_X64_PASS
@pytest.mark.parametrize("name", ["gap", pytest.param("flatten", marks=pytest.mark.slow)])
def test_cnn_convergence_rate_reduced(name):
    """The CI version: 64 -> 256 channels (in the float64 pass: a statistical check; the
    float32 kernels are checked against neural-tangents in both passes)."""
    _check_rate(name, (64, 256), n_samples=32)


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHS)
def test_cnn_convergence_rate(name):
    _check_rate(name, (64, 256, 1024), n_samples=48)
