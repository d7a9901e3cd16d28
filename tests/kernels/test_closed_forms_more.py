"""The closed forms of Sign, Cos, Rbf, Exp, Gaussian, Gabor, polynomials, rectified monomials
and ExpNormalized against independent float64 computations (NumPy quadrature, known
arc-cosine kernels), Price's theorem, and their bad-input errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkgp import nn
from ntkgp._src.kernels import activations as act
from ntkgp._src.kernels import closed_forms as cf
from tests.conftest import DTYPE, needs_x64
from tests.helpers import gauss_hermite_expect as gh

POINTS = [(1.0, 1.0, 0.3), (0.5, 2.0, -0.7), (1.7, 0.4, 0.8), (0.9, 0.9, 0.89), (0.3, 0.8, 0.0)]
HERM4 = np.polynomial.hermite_e.herme2poly([0, 0, 0, 0, 1]) / np.sqrt(24)
POLY = [0.3, -1.0, 0.5, 0.2, -0.05]


def _rm_pair(n):
    polys = tuple(cf.arccos_polynomials(k) for k in range(n + 1))
    return functools.partial(cf.rectified_monomial_pair, degree=n, polys=polys)


# name: (pair, diag, phi, dphi) with NumPy phi / phi' for the quadrature reference
SMOOTH = {
    "cos": (functools.partial(act.sin_pair, a=1.2, b=0.8, c0=0.3 + np.pi / 2),
            functools.partial(act.sin_diag, a=1.2, b=0.8, c0=0.3 + np.pi / 2),
            lambda x: 1.2 * np.cos(0.8 * x + 0.3), lambda x: -0.96 * np.sin(0.8 * x + 0.3)),
    "exp": (functools.partial(cf.exp_pair, a=0.9, b=0.6),
            functools.partial(cf.exp_diag, a=0.9, b=0.6),
            lambda x: 0.9 * np.exp(0.6 * x), lambda x: 0.54 * np.exp(0.6 * x)),
    "gaussian": (functools.partial(cf.gaussian_pair, a=1.1, b=-0.7),
                 functools.partial(cf.gaussian_diag, a=1.1, b=-0.7),
                 lambda x: 1.1 * np.exp(-0.7 * x * x),
                 lambda x: -1.54 * x * np.exp(-0.7 * x * x)),
    "gaussian_positive_b": (functools.partial(cf.gaussian_pair, a=1.0, b=0.1),
                            functools.partial(cf.gaussian_diag, a=1.0, b=0.1),
                            lambda x: np.exp(0.1 * x * x), lambda x: 0.2 * x * np.exp(0.1 * x * x)),
    "gabor": (cf.gabor_pair, cf.gabor_diag, lambda x: np.exp(-x * x) * np.sin(x),
              lambda x: np.exp(-x * x) * (np.cos(x) - 2 * x * np.sin(x))),
    "polynomial": (functools.partial(cf.polynomial_pair, table=cf.hermite_tables(POLY)),
                   functools.partial(cf.polynomial_diag, table=cf.hermite_tables(POLY)),
                   lambda x: np.polyval(POLY[::-1], x),
                   lambda x: np.polyval(np.polyder(POLY[::-1]), x)),
    "hermite4": (functools.partial(cf.polynomial_pair, table=cf.hermite_tables(HERM4)),
                 functools.partial(cf.polynomial_diag, table=cf.hermite_tables(HERM4)),
                 lambda x: np.polyval(HERM4[::-1], x),
                 lambda x: np.polyval(np.polyder(HERM4[::-1]), x)),
}


@needs_x64
@pytest.mark.parametrize("name", sorted(SMOOTH))
@pytest.mark.parametrize("s1,s2,c", POINTS)
def test_smooth_closed_forms_against_quadrature(name, s1, s2, c):
    pair, diag, phi, dphi = SMOOTH[name]
    k, dot = pair(jnp.array([[c]]), jnp.array([[s1]]), jnp.array([[s2]]), None, True)
    want = gh(phi, s1, s2, c, degree=200)
    assert abs(float(k[0, 0]) - want) < 1e-10 * max(1, abs(want))
    want_dot = gh(dphi, s1, s2, c, degree=200)
    assert abs(float(dot[0, 0]) - want_dot) < 1e-10 * max(1, abs(want_dot))
    for s in (s1, s2):
        want_s = gh(phi, s, s, s, degree=200)
        assert abs(float(diag(jnp.array([s]))[0]) - want_s) < 1e-10 * max(1, want_s)


def _j_known(n, rho):
    """Cho & Saul's J_0, J_1, J_2 written out."""
    th = np.arccos(rho)
    return [np.pi - th, np.sin(th) + (np.pi - th) * np.cos(th),
            3 * np.sin(th) * np.cos(th) + (np.pi - th) * (1 + 2 * np.cos(th) ** 2)][n]


@needs_x64
@pytest.mark.parametrize("n", [0, 1, 2])
@pytest.mark.parametrize("s1,s2,c", POINTS + [(1.2, 1.2, 1.2), (0.7, 0.7, -0.7)])
def test_rectified_monomial_against_arc_cosine_kernels(n, s1, s2, c):
    k, dot = _rm_pair(n)(jnp.array([[c]]), jnp.array([[s1]]), jnp.array([[s2]]), None, True)
    sq = np.sqrt(s1 * s2)
    rho = np.clip(c / sq, -1, 1)
    # at |rho| = 1 the computed correlation is 1 only to rounding, which arccos' infinite
    # slope there turns into ~sqrt(eps) (pairs of an input with itself are set exactly)
    tol = 1e-7 if abs(rho) == 1 else 1e-12
    assert abs(float(k[0, 0]) - sq ** n / (2 * np.pi) * _j_known(n, rho)) < tol
    want_dot = 0.0 if n == 0 else n * n * sq ** (n - 1) / (2 * np.pi) * _j_known(n - 1, rho)
    assert abs(float(dot[0, 0]) - want_dot) < tol
    if n == 1:  # and ReLU's own closed form
        relu = act.abrelu_pair(jnp.array([[c]]), jnp.array([[s1]]), jnp.array([[s2]]), None,
                               True, a=0.0, b=1.0)
        assert abs(float(relu[0][0, 0]) - float(k[0, 0])) < 1e-12


@needs_x64
@pytest.mark.parametrize("n", [3, 4, 5])
@pytest.mark.parametrize("s1,s2,c", POINTS[1:3])
def test_rectified_monomial_higher_orders_by_quadrature(n, s1, s2, c):
    """Orders past the written-out ones against adaptive quadrature of max(x, 0)^n over the
    positive quadrant of the bivariate normal density (SciPy)."""
    from scipy import integrate, stats
    k, dot = _rm_pair(n)(jnp.array([[c]]), jnp.array([[s1]]), jnp.array([[s2]]), None, True)
    pdf = stats.multivariate_normal([0, 0], [[s1, c], [c, s2]]).pdf

    def quad(m):
        return integrate.dblquad(lambda v, u: u ** m * v ** m * pdf([u, v]), 0,
                                 12 * np.sqrt(s1), 0, 12 * np.sqrt(s2), epsabs=1e-11)[0]

    want = quad(n)
    assert abs(float(k[0, 0]) - want) < 1e-8 * max(1, want)
    want_dot = n * n * quad(n - 1)
    assert abs(float(dot[0, 0]) - want_dot) < 1e-8 * max(1, want_dot)


PAIRS = {**{k: v[0] for k, v in SMOOTH.items()}, "sign": cf.sign_pair,
         **{f"rectified_monomial{n}": _rm_pair(n) for n in (1, 2, 3)},
         "exp_normalized": functools.partial(cf.exp_normalized_pair, gamma=1.3, shift=-0.5,
                                             do_clip=False)}


@needs_x64
@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("s1,s2,c", POINTS[:4])
def test_price_theorem(name, s1, s2, c):
    """The NTK factor is the derivative of the NNGP map in the covariance (sign: 0, the
    finite network's convention; its NNGP's derivative is a delta's expectation)."""
    pair = PAIRS[name]

    def k_of(cc):
        return pair(jnp.reshape(cc, (1, 1)), jnp.array([[s1]]), jnp.array([[s2]]), None,
                    False)[0][0, 0]

    _, dot = pair(jnp.array([[c]]), jnp.array([[s1]]), jnp.array([[s2]]), None, True)
    want = 0.0 if name == "sign" else float(jax.grad(k_of)(jnp.asarray(c)))
    assert abs(want - float(dot[0, 0])) < 1e-8 * max(1, abs(want))


@needs_x64
@pytest.mark.parametrize("s1,s2,c", POINTS)
def test_exp_normalized_is_the_kernel_of_its_finite_activation(s1, s2, c):
    """With the RMS over channels at its limit sqrt(s), ExpNormalized's finite activation
    has the closed-form kernel."""
    gamma, shift = 1.3, -0.5
    scale = np.sqrt(2) * np.exp(gamma * (1 + shift) / 2)

    def phi(s):
        return lambda x: scale * np.sqrt(s) * np.sin(np.sqrt(gamma) * x / np.sqrt(s) + np.pi / 4)

    k, _ = cf.exp_normalized_pair(jnp.array([[c]]), jnp.array([[s1]]), jnp.array([[s2]]),
                                  None, False, gamma=gamma, shift=shift, do_clip=False)
    assert abs(float(k[0, 0]) - gh(phi(s1), s1, s2, c, phi2=phi(s2))) < 1e-10


def test_sign_kernel():
    c, s1, s2 = 0.3, 0.8, 1.1
    k, dot = cf.sign_pair(jnp.array([[c]], DTYPE), jnp.array([[s1]], DTYPE),
                          jnp.array([[s2]], DTYPE), None, True)
    assert abs(float(k[0, 0]) - 2 / np.pi * np.arcsin(c / np.sqrt(s1 * s2))) < 1e-6
    assert float(dot[0, 0]) == 0.0
    np.testing.assert_array_equal(cf.sign_diag(jnp.array([0.0, 2.0], DTYPE)), [0.0, 1.0])


def test_monomial_and_hermite_are_their_polynomials():
    x = np.random.default_rng(0).standard_normal((4, 3)).astype(DTYPE)
    for layer, poly in ((nn.Monomial(3), [0, 0, 0, 1]),
                        (nn.Hermite(3), [0, -3 / np.sqrt(6), 0, 1 / np.sqrt(6)])):
        a = nn.serial(nn.Dense(4, 1.2, 0.1), layer, nn.Dense(1)).kernel(x)
        b = nn.serial(nn.Dense(4, 1.2, 0.1), nn.Polynomial(poly), nn.Dense(1)).kernel(x)
        np.testing.assert_allclose(a.ntk, b.ntk, rtol=1e-6)
        np.testing.assert_allclose(layer.apply((), x), np.polyval(poly[::-1], x), rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.parametrize("make,err,match", [
    (lambda: nn.Polynomial([]), ValueError, "at least one coefficient"),
    (lambda: nn.Polynomial([[1, 2]]), ValueError, "1-D"),
    (lambda: nn.Polynomial([1, np.nan]), ValueError, "finite"),
    (lambda: nn.RectifiedMonomial(-1), ValueError, "non-negative integer"),
    (lambda: nn.Monomial(1.5), ValueError, "non-negative integer"),
    (lambda: nn.Hermite(True), ValueError, "non-negative integer"),
    (lambda: nn.Rbf(-1.0), ValueError, "gamma"),
    (lambda: nn.Elementwise(), ValueError, "got neither"),
    (lambda: nn.Elementwise(nngp_fn=lambda c: c), TypeError, "cov12, var1, var2"),
    (lambda: nn.Elementwise(nngp_fn=lambda c, a, b: jnp.ones(3)), ValueError, "scalar"),
    (lambda: nn.Elementwise(jnp.tanh, nngp_fn=3.0), TypeError, "callable"),
])
def test_bad_arguments_are_clear_errors(make, err, match):
    with pytest.raises(err, match=match):
        make()


def test_kernel_only_elementwise_has_no_finite_network():
    layer = nn.Elementwise(nngp_fn=lambda c, a, b: c)
    x = jnp.ones((2, 3), DTYPE)
    assert layer.kernel(x).nngp.shape == (2, 2)
    with pytest.raises(NotImplementedError, match="pass `fn=`"):
        layer.apply((), x)


def test_gaussian_with_positive_b_beyond_its_range_is_a_clear_error():
    x = 3.0 * jnp.ones((2, 3), DTYPE)
    with pytest.raises(ValueError, match="(?i)nan|inf"):
        nn.serial(nn.Dense(3), nn.Gaussian(1.0, 0.5)).kernel(x)
