"""The fast arcsin/arccos of the arc-cosine and Erf kernels: maximum error over the whole domain
[-1, 1] in units in the last place, in float32 and float64, against extended-precision libm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkgp._src.kernels import special
from tests.conftest import X64

DTYPES = [np.float32, np.float64] if X64 else [np.float32]


def _grid(dt):
    """Every region: a dense uniform grid, points near 0 (tiny values, subnormal-free), near the
    branch switch at 1/2 and near +-1 (where arccos -> 0 like sqrt), with their negatives."""
    rng = np.random.default_rng(0)
    u = np.linspace(0, 1, 400_001)
    near = lambda c, w: c + w * rng.uniform(-1, 1, 50_000)  # noqa: E731
    pos = np.concatenate([u, rng.uniform(0, 1, 200_000), 10.0 ** rng.uniform(-30, 0, 50_000),
                          near(0.5, 1e-6), 1 - 10.0 ** rng.uniform(-16, 0, 50_000),
                          [0.5, np.nextafter(0.5, 1), np.nextafter(0.5, 0), 1.0]])
    x = np.clip(np.concatenate([pos, -pos]), -1, 1).astype(dt)
    return np.unique(x)


def _ulps(got, x, ref_fn, dt):
    ref = ref_fn(x.astype(np.longdouble))
    # one unit in the last place of the exact value, in the tested dtype
    ulp = np.spacing(np.abs(ref).astype(dt)).astype(np.longdouble)
    ulp = np.maximum(ulp, np.finfo(dt).tiny)
    return np.asarray(np.abs(np.asarray(got, np.longdouble) - ref) / ulp, np.float64)


@pytest.mark.parametrize("dt", DTYPES)
@pytest.mark.parametrize("name", ["arcsin", "arccos"])
def test_maximum_error_over_the_domain_is_within_two_and_a_half_ulp(name, dt):
    x = _grid(dt)
    fast = jax.jit(getattr(special, name))(jnp.asarray(x))
    assert fast.dtype == dt
    err = _ulps(fast, x, getattr(np, name), dt)
    # (where longdouble is double, the libm reference is itself within half an ulp)
    assert err.max() <= 2.5, (name, dt, float(err.max()), x[np.argmax(err)])
    assert err.mean() < 0.5


@pytest.mark.parametrize("name", ["arcsin", "arccos"])
def test_exact_values_symmetry_and_range(name):
    dt = np.float64 if X64 else np.float32
    f = getattr(special, name)
    x = jnp.asarray([-1.0, -0.5, 0.0, 0.5, 1.0], dt)
    np.testing.assert_allclose(np.asarray(f(x), np.float64), getattr(np, name)(np.asarray(x)),
                               rtol=2 * np.finfo(dt).eps, atol=0)
    y = jnp.asarray(np.linspace(-1, 1, 1001), dt)
    if name == "arcsin":
        np.testing.assert_array_equal(f(-y), -f(y))
    else:
        assert float(f(y).min()) >= 0 and float(f(y).max()) <= float(np.asarray(np.pi, dt))


def test_narrow_floats_go_through_float32():
    x = jnp.linspace(-1, 1, 101, dtype=jnp.bfloat16)
    got = special.arccos(x)
    assert got.dtype == jnp.bfloat16
    want = np.arccos(np.asarray(x, np.float32))
    np.testing.assert_allclose(np.asarray(got, np.float32), want, atol=2e-2)


def test_derivatives_are_capped_at_plus_minus_one():
    dt = np.float64 if X64 else np.float32
    d_asin = jax.vmap(jax.grad(special.arcsin))(jnp.asarray([0.3, 1.0, -1.0], dt))
    d_acos = jax.vmap(jax.grad(special.arccos))(jnp.asarray([0.3, 1.0, -1.0], dt))
    np.testing.assert_allclose(d_asin[0], 1 / np.sqrt(1 - 0.09), rtol=1e-6)
    np.testing.assert_allclose(d_acos, -d_asin, rtol=1e-6)
    cap = 1 / np.sqrt(np.finfo(dt).eps)
    np.testing.assert_allclose(np.asarray(d_asin[1:]), [cap, cap], rtol=1e-6)
