"""Analytic kernels against independent NumPy float64 computations.

Covers hyperparameters and inputs beyond the neural-tangents reference cases.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import erf as np_erf

from ntkgp import nn
from ntkgp._src.kernels import activations as act
from tests.conftest import DTYPE, X64, needs_x64, rel_err
from tests.helpers import gauss_hermite_expect as _gh_expect

TOL = 1e-9 if X64 else 2e-4


def _relu_expect(s1, s2, c):
    """E[relu(u) relu(v)] and P(u>0, v>0) (Cho & Saul 2009), NumPy float64."""
    rho = np.clip(c / np.sqrt(s1 * s2), -1, 1)
    th = np.arccos(rho)
    return (np.sqrt(s1 * s2) / (2 * np.pi) * (np.sin(th) + (np.pi - th) * np.cos(th)),
            (np.pi - th) / (2 * np.pi))


def _one_hidden_layer(x1, x2, w0, b0, w1, b1, phi_pair):
    d = x1.shape[1]
    q = w0 ** 2 * x1 @ x2.T / d + b0 ** 2
    s1 = w0 ** 2 * np.sum(x1 ** 2, 1)[:, None] / d + b0 ** 2
    s2 = w0 ** 2 * np.sum(x2 ** 2, 1)[None, :] / d + b0 ** 2
    k, dot = phi_pair(s1, s2, q)
    nngp = w1 ** 2 * k + b1 ** 2
    return nngp, nngp + w1 ** 2 * q * dot


hyper = st.tuples(st.floats(0.3, 2.5), st.floats(0.0, 1.0), st.floats(0.3, 2.5),
                  st.floats(0.0, 1.0), st.integers(0, 10_000))


def _erf_expect(s1, s2, c):
    """Williams (1997) for erf, NumPy float64."""
    return ((2 / np.pi) * np.arcsin(2 * c / np.sqrt((1 + 2 * s1) * (1 + 2 * s2))),
            (4 / np.pi) / np.sqrt((1 + 2 * s1) * (1 + 2 * s2) - 4 * c ** 2))


@pytest.mark.parametrize("layer,expect", [(nn.Relu, _relu_expect), (nn.Erf, _erf_expect)])
@settings(max_examples=20 if X64 else 6)  # each example compiles; float64 runs the full set
@given(h=hyper)
def test_one_hidden_layer_numpy(layer, expect, h):
    w0, b0, w1, b1, seed = h
    rng = np.random.default_rng(seed)
    x1, x2 = rng.standard_normal((5, 3)), rng.standard_normal((4, 3))
    net = nn.serial(nn.Dense(7, W_std=w0, b_std=b0), layer(), nn.Dense(1, W_std=w1, b_std=b1))
    k = net.kernel(x1.astype(DTYPE), x2.astype(DTYPE))
    nngp, ntk = _one_hidden_layer(x1, x2, w0, b0, w1, b1, expect)
    assert rel_err(k.nngp, nngp) < TOL
    assert rel_err(k.ntk, ntk) < TOL


# ---------------------------------------------------------------------------------------------
# Each activation's E[phi(u)phi(v)] and E[phi'(u)phi'(v)] against NumPy 2-D Gauss-Hermite at
# high degree (smooth activations) or the ReLU decomposition (piecewise linear).
def _gelu(x):
    return 0.5 * x * (1 + np_erf(x / np.sqrt(2)))


def _gelu_d(x):
    return 0.5 * (1 + np_erf(x / np.sqrt(2))) + x * np.exp(-x ** 2 / 2) / np.sqrt(2 * np.pi)


SMOOTH = {
    "erf": (functools.partial(act.erf_pair, a=1.3, b=0.7, c0=0.2),
            lambda x: 1.3 * np_erf(0.7 * x) + 0.2,
            lambda x: 1.3 * 0.7 * 2 / np.sqrt(np.pi) * np.exp(-(0.7 * x) ** 2)),
    "sin": (functools.partial(act.sin_pair, a=1.1, b=1.4, c0=0.3),
            lambda x: 1.1 * np.sin(1.4 * x + 0.3), lambda x: 1.1 * 1.4 * np.cos(1.4 * x + 0.3)),
    "gelu": (act.gelu_pair, _gelu, _gelu_d),
}

POINTS = [(1.0, 1.0, 0.3), (0.5, 2.0, -0.7), (1.7, 0.4, 0.8), (0.9, 0.9, 0.89), (2.0, 1.0, 0.0)]


@needs_x64
@pytest.mark.parametrize("name", sorted(SMOOTH))
@pytest.mark.parametrize("s1,s2,c", POINTS)
def test_smooth_activation_expectations(name, s1, s2, c):
    pair, phi, dphi = SMOOTH[name]
    k, dot = pair(jnp.array([[c]]), jnp.array([[s1]]), jnp.array([[s2]]), None, True)
    assert abs(float(k[0, 0]) - _gh_expect(phi, s1, s2, c)) < 1e-9
    assert abs(float(dot[0, 0]) - _gh_expect(dphi, s1, s2, c)) < 1e-9


@pytest.mark.parametrize("a,b", [(0.0, 1.0), (0.1, 1.0), (-0.3, 1.2), (-1.0, 1.0), (0.7, -0.4)])
@pytest.mark.parametrize("s1,s2,c", POINTS)
def test_abrelu_by_relu_decomposition(a, b, s1, s2, c):
    # phi(x) = b relu(x) - a relu(-x); the cross terms are relu kernels at correlation -rho.
    pp, p_pp = _relu_expect(s1, s2, c)
    pm, p_pm = _relu_expect(s1, s2, -c)
    want_k = (a * a + b * b) * pp - 2 * a * b * pm
    want_dot = (a * a + b * b) * p_pp + 2 * a * b * p_pm
    k, dot = act.abrelu_pair(jnp.array([[c]], DTYPE), jnp.array([[s1]], DTYPE),
                             jnp.array([[s2]], DTYPE), None, True, a=a, b=b)
    assert abs(float(k[0, 0]) - want_k) < TOL * max(1, abs(want_k))
    assert abs(float(dot[0, 0]) - want_dot) < TOL


PAIRS = {
    "abrelu": functools.partial(act.abrelu_pair, a=-0.3, b=1.2),
    "relu": functools.partial(act.abrelu_pair, a=0.0, b=1.0),
    "erf": functools.partial(act.erf_pair, a=1.3, b=0.7, c0=0.2),
    "sin": functools.partial(act.sin_pair, a=1.1, b=1.4, c0=0.3),
    "gelu": act.gelu_pair,
    "quadrature_sin": functools.partial(act.quadrature_pair, fn=lambda x: jnp.sin(1.3 * x),
                                        degree=40),
}


@needs_x64
@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("s1,s2,c", POINTS[:4])
def test_price_theorem(name, s1, s2, c):
    """The NTK factor is the derivative of the NNGP map in the covariance (Price 1958)."""
    pair = PAIRS[name]

    def k_of(cc):
        return pair(jnp.reshape(cc, (1, 1)), jnp.array([[s1]]), jnp.array([[s2]]), None,
                    False)[0][0, 0]

    _, dot = pair(jnp.array([[c]]), jnp.array([[s1]]), jnp.array([[s2]]), None, True)
    assert abs(float(jax.grad(k_of)(jnp.asarray(c))) - float(dot[0, 0])) < 1e-8


@needs_x64
def test_gelu_derivative_in_closed_form_is_the_forward_mode_one_everywhere():
    """GELU's hand-derived K-dot against forward-mode autodiff of its K', over variances from
    1e-3 to 50 and correlations over [-1, 1], the coincident ends included."""
    rng = np.random.default_rng(3)
    s1, s2 = 10 ** rng.uniform(-3, 1.7, (2, 4000))
    rho = np.concatenate([rng.uniform(-1, 1, 3980), np.ones(10), -np.ones(10)])
    c, s1, s2 = jnp.asarray(rho * np.sqrt(s1 * s2)), jnp.asarray(s1), jnp.asarray(s2)
    _, dot = act.gelu_pair(c, s1, s2, None, True)
    _, want = jax.jvp(lambda cc: act._gelu_k(cc, s1, s2), (c,), (jnp.ones_like(c),))
    assert float(jnp.max(jnp.abs(dot - want))) < 1e-12


@needs_x64
@pytest.mark.parametrize("closed,fn", [
    (nn.Erf(), jax.scipy.special.erf),
    (nn.Sin(a=1.2, b=0.8, c=0.4), lambda x: 1.2 * jnp.sin(0.8 * x + 0.4)),
    (nn.Gelu(), lambda x: x * jax.scipy.stats.norm.cdf(x)),
])
def test_elementwise_quadrature_matches_closed_form(closed, fn, rng):
    x1, x2 = rng.standard_normal((5, 3)), rng.standard_normal((4, 3))
    dense = nn.Dense(5, W_std=1.3, b_std=0.2)
    out = nn.Dense(1, W_std=1.3, b_std=0.2)
    a = nn.serial(dense, closed, out).kernel(x1, x2)
    b = nn.serial(dense, nn.Elementwise(fn, degree=160), out).kernel(x1, x2)
    assert rel_err(b.nngp, a.nngp) < 1e-8
    assert rel_err(b.ntk, a.ntk) < 1e-8
    for x in (x1, None):  # and the diagonal path
        assert rel_err(nn.serial(dense, nn.Elementwise(fn, degree=160), out).kernel(x1, x).ntk,
                       nn.serial(dense, closed, out).kernel(x1, x).ntk) < 1e-8


def test_gelu_approximate_uses_its_own_kernel(rng):
    x = rng.standard_normal((4, 3)).astype(DTYPE)
    exact = nn.serial(nn.Dense(3), nn.Gelu(), nn.Dense(1)).kernel(x)
    approx = nn.serial(nn.Dense(3), nn.Gelu(approximate=True), nn.Dense(1)).kernel(x)
    # The tanh approximation differs from x*Phi(x) by < 1e-3, and so do the kernels.
    assert 0 < rel_err(approx.nngp, exact.nngp) < 2e-3
