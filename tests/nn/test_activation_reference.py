"""Closed-form activations (and Elementwise with a user's closed form): kernels against
neural-tangents 0.6.5 reference values (tests/data/nt_activations.py)."""

import numpy as np
import pytest

from ntkgp import nn
from tests.conftest import DTYPE, REFERENCE_TAGS, X64, rel_err
from tests.helpers import build, load_reference

REF, META = load_reference("nt_activations")
CASES = sorted(META["cases"])
# float64: 1e-6 is the bar; float32: rounding of the recursion (Monomial(3) twice amplifies
# the inputs' rounding by ~3^2 per layer).
TOL = 1e-9 if X64 else 5e-4
NEW = {"Sign", "Cos", "Rbf", "Exp", "Gaussian", "Gabor", "Sigmoid_like", "ExpNormalized",
       "Polynomial", "Monomial", "Hermite", "RectifiedMonomial", "Elementwise"}


def test_reference_covers_every_closed_form():
    names = {spec[0] for case in META["cases"].values() for spec in case["layers"]}
    assert NEW <= names
    assert all(hasattr(nn, n) for n in NEW)


def _pairs(case):
    tags = ["12"] if META["cases"][case].get("only_12") else REFERENCE_TAGS
    return [(case, t) for t in tags]


@pytest.mark.parametrize("case,tag", [p for c in CASES for p in _pairs(c)])
def test_kernel_matches_neural_tangents(case, tag):
    net = build(META["cases"][case]["layers"])
    x1, x2 = REF[f"{case}__x1"].astype(DTYPE), REF[f"{case}__x2"].astype(DTYPE)
    a, b = {"12": (x1, x2), "11": (x1, None), "22": (x2, None)}[tag]
    k = net.kernel(a, b)
    assert k.nngp.dtype == DTYPE
    for g in ("nngp", "ntk"):
        ref = REF[f"{case}__{g}_{tag}"]
        assert k.nngp.shape == ref.shape
        err = rel_err(getattr(k, g), ref)
        assert err <= TOL, (g, err)


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_rectified_monomial_is_finite_with_itself(n):
    """neural-tangents returns NaN for an input paired with itself; the expanded J_n is exact
    there: the diagonal equals the variance (2n-1)!! s^n / 2 of the next layer's input."""
    case = f"fc_rectified_monomial{n}"
    x = REF[f"{case}__x1"].astype(DTYPE)
    net = build(META["cases"][case]["layers"])
    k = net.kernel(x)
    assert np.all(np.isfinite(k.nngp)) and np.all(np.isfinite(k.ntk))
    # off the diagonal, the kernel of x against itself is the x1-x2 kernel of two copies (on
    # it, two copies' correlation is 1 only up to rounding, which arccos' slope amplifies)
    k12 = net.kernel(x, x + 0.0 * x[::-1])
    off = ~np.eye(len(x), dtype=bool)
    np.testing.assert_allclose(k.nngp[off], k12.nngp[off], rtol=1e-9 if X64 else 1e-5)
    s = 1.3 ** 2 * np.mean(x.astype(np.float64) ** 2, axis=1) + 0.1 ** 2
    dfact = np.prod(np.arange(2 * n - 1, 0, -2)) if n else 1
    want = 0.9 ** 2 * dfact / 2 * s ** n + 0.1 ** 2
    assert rel_err(np.diag(k.nngp), want) <= (1e-12 if X64 else 1e-6)


def test_hermite_differs_from_neural_tangents_off_unit_variance():
    """neural-tangents' Hermite kernel is c^n whatever the variances; ntkgp's is exact: at
    unit variance they agree (the references), elsewhere ntkgp's matches the moments."""
    x = np.random.default_rng(0).standard_normal((200_000,))
    s = 2.0
    u = np.sqrt(s) * x
    he3 = (u ** 3 - 3 * u) / np.sqrt(6)
    net = nn.Hermite(3)
    from ntkgp._src.kernels.kernel import Kernel
    k = net.kernel_map(Kernel(nngp=np.array([[s]]), ntk=None, cov1=np.array([s]),
                              cov2=np.array([s])))
    assert abs(float(k.nngp[0, 0]) - np.mean(he3 ** 2)) < 0.05 * np.mean(he3 ** 2)
    assert abs(float(k.nngp[0, 0]) - s ** 3) > 1.0  # what c^n would give
