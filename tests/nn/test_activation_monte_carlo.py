"""Finite networks with the closed-form activations converge to their analytic kernels as
their widths grow: errors fall roughly like width^-1/2."""

import jax.numpy as jnp
import numpy as np
import pytest

from ntkgp import nn
from tests.conftest import DTYPE, ONLY_X64_PASS
from tests.helpers import rms_kernel_errors

ACTS = {
    "sign": nn.Sign, "cos": lambda: nn.Cos(1.2, 0.8, 0.3), "rbf": lambda: nn.Rbf(0.6),
    "exp": lambda: nn.Exp(0.9, 0.5), "gaussian": lambda: nn.Gaussian(1.1, -0.7),
    "gabor": nn.Gabor, "sigmoid_like": nn.Sigmoid_like,
    "exp_normalized": lambda: nn.ExpNormalized(1.3, -0.5),
    "polynomial": lambda: nn.Polynomial([0.1, 1.0, -0.3, 0.2]),
    "monomial2": lambda: nn.Monomial(2), "hermite2": lambda: nn.Hermite(2),
    "rectified_monomial0": lambda: nn.RectifiedMonomial(0),
    "rectified_monomial2": lambda: nn.RectifiedMonomial(2),
    "user_closed_form": lambda: nn.Elementwise(
        jnp.tanh, nngp_fn=lambda c, v1, v2: _tanh_dual(c, v1, v2)),
}


def _tanh_dual(c, v1, v2):
    """The exact NNGP of erf, used as a closed form for erf (``fn=erf`` below)."""
    return jnp.arcsin(2 * c / jnp.sqrt((1 + 2 * v1) * (1 + 2 * v2))) * 2 / np.pi


def make_net(name, width, out):
    act = ACTS[name]()
    if name == "user_closed_form":  # the finite activation that the closed form belongs to
        import jax
        act = nn.Elementwise(jax.scipy.special.erf, nngp_fn=_tanh_dual)
    return nn.serial(nn.Dense(width, 1.2, 0.1), act, nn.Dense(out, 1.0, 0.1))


def inputs():
    return (0.8 * np.random.default_rng(5).standard_normal((4, 3))).astype(DTYPE)


def _check(name, widths, n_samples, ratio):
    """RMS relative errors of the empirical NNGP and NTK of one hidden layer at the given
    widths; each 4x wider network must shrink them by ``ratio`` per factor of 4 (O(width^-1/2)
    fluctuations give 0.5). Polynomial activations have heavy-tailed fluctuations, so the
    rate is checked from the narrowest to the widest network, where sampling noise in the
    error estimate matters least."""
    x = inputs()
    analytic = make_net(name, 1, 1).kernel(x)
    errs = [rms_kernel_errors(lambda w, out: make_net(name, w, out), analytic, x, w,
                              n_samples, seed=2) for w in widths]
    steps = np.log(widths[-1] / widths[0]) / np.log(4)
    assert np.all(errs[-1] <= ratio ** steps * errs[0]), (name, widths, errs)
    return errs


# The CI version covers one activation of each kind of closed form (the others' formulas are
# checked against quadrature to 1e-10 in tests/kernels/test_closed_forms_more.py and share
# these code paths); the slow version covers all.
REDUCED = ["sign", "rbf", "gabor", "exp_normalized", "polynomial", "rectified_monomial2",
           "user_closed_form"]


@ONLY_X64_PASS
@pytest.mark.parametrize("name", REDUCED)
def test_activation_convergence_rate_reduced(name):
    """The CI version: 32 -> 512 units, 12 networks each."""
    errs = _check(name, (32, 512), n_samples=12, ratio=0.65)
    assert np.all(errs[-1] < 0.3), errs


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ACTS))
def test_activation_convergence_rate(name):
    _check(name, (64, 256, 1024, 4096), n_samples=64, ratio=0.6)
