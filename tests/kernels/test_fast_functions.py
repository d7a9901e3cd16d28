"""Users' closed forms evaluated with the fast inverse sine and cosine: the same values (to the
fast functions' 2.5 ulp), NaN where XLA gives NaN, the same derivatives, and no ``asin``/``acos``
left in the program."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkgp import nn
from ntkgp._src.kernels.fast_functions import with_fast_inverse_trig
from tests.conftest import DTYPE, X64


@jax.jit
def _clipped_arccos(x):  # a user's own jitted helper
    return jnp.arccos(jnp.clip(x, -1.0, 1.0))


def erf_nngp(c, s1, s2):
    """The Erf network's NNGP (Williams 1997), as a user writes it."""
    return 2 / np.pi * jnp.arcsin(2 * c / jnp.sqrt((1 + 2 * s1) * (1 + 2 * s2)))


def mixed(c, s1, s2):
    rho = c / jnp.sqrt(s1 * s2)
    return jnp.sqrt(s1 * s2) * (jnp.sin(_clipped_arccos(rho)) + jax.lax.asin(rho) * rho)


def _inputs(n=20_000):
    rng = np.random.default_rng(0)
    s1, s2 = rng.uniform(0.1, 3.0, n), rng.uniform(0.1, 3.0, n)
    rho = np.concatenate([rng.uniform(-1, 1, n - 4), [-1.0, 1.0, 0.0, 1 - 1e-7]])
    return [jnp.asarray(a, DTYPE) for a in (rho * np.sqrt(s1 * s2), s1, s2)]


@pytest.mark.parametrize("fn", [erf_nngp, mixed])
def test_the_same_values_and_derivatives_as_the_users_function(fn):
    """Values to a few ulp; derivatives too, relative to their conditioning near rho = +-1
    (where d arccos / d rho = -1/sqrt(1 - rho^2) magnifies an ulp of the inner values)."""
    c, s1, s2 = _inputs()
    fast = with_fast_inverse_trig(fn)
    tol = 1e-14 if X64 else 4e-6
    want, got = np.asarray(jax.vmap(fn)(c, s1, s2)), np.asarray(jax.vmap(fast)(c, s1, s2))
    assert np.all(np.isfinite(want))
    assert np.max(np.abs(got - want) / np.maximum(np.abs(want), 1.0)) <= tol
    inner = slice(0, -4)  # not at rho = +-1, where the derivative is infinite
    want = np.asarray(jax.vmap(jax.grad(fn))(c[inner], s1[inner], s2[inner]))
    got = np.asarray(jax.vmap(jax.grad(fast))(c[inner], s1[inner], s2[inner]))
    rho = np.asarray(c / jnp.sqrt(s1 * s2))[inner]
    assert np.all(np.isfinite(want))
    assert np.all(np.abs(got - want) / np.maximum(np.abs(want), 1.0)
                  <= tol * np.maximum(1.0, 1.0 / (1.0 - rho * rho)))


def test_nan_outside_the_domain_as_xla():
    fast = with_fast_inverse_trig(lambda x: jnp.arcsin(x) + jnp.arccos(x))
    x = jnp.asarray([-1.5, -1.0, 0.3, 1.0, 1.0001, jnp.nan], DTYPE)
    np.testing.assert_array_equal(np.isnan(fast(x)), np.isnan(jnp.arcsin(x) + jnp.arccos(x)))
    assert np.isnan(np.asarray(fast(x))).tolist() == [True, False, False, False, True, True]


def test_no_inverse_trig_is_left_in_the_program():
    def primitives(jaxpr):
        names = set()
        for eqn in jaxpr.eqns:
            names.add(eqn.primitive.name)
            for v in eqn.params.values():
                if isinstance(v, jax.extend.core.ClosedJaxpr):
                    names |= primitives(v.jaxpr)
        return names

    c, s1, s2 = (x[:3] for x in _inputs())
    before = primitives(jax.make_jaxpr(jax.vmap(mixed))(c, s1, s2).jaxpr)
    after = primitives(jax.make_jaxpr(jax.vmap(with_fast_inverse_trig(mixed)))(c, s1, s2).jaxpr)
    assert {"asin", "acos"} <= before
    assert not {"asin", "acos"} & after


def test_an_elementwise_layer_of_a_closed_form_equals_the_built_in_kernel():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(12, 5)), DTYPE)
    dense = nn.Dense(64, W_std=1.3, b_std=0.2)
    user = nn.serial(dense, nn.Elementwise(nngp_fn=erf_nngp), dense, nn.Elementwise(
        nngp_fn=erf_nngp), nn.Dense(1)).kernel(x, None)
    built = nn.serial(dense, nn.Erf(), dense, nn.Erf(), nn.Dense(1)).kernel(x, None)
    tol = 1e-12 if X64 else 1e-5
    for g in ("nngp", "ntk"):
        a, b = np.asarray(getattr(user, g)), np.asarray(getattr(built, g))
        assert np.max(np.abs(a - b)) <= tol * np.max(np.abs(b))
