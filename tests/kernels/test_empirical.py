"""Empirical (finite-width) kernels: the three implementations against each other and against
a brute-force Jacobian, for ntkgp.nn networks and an Equinox model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from ntkgp import empirical, nn
from tests.conftest import DTYPE, X64, rel_err

TOL = 1e-5 if X64 else 2e-4
IMPLS = ("jacobian", "ntvp", "structured")

NETS = {
    "mlp": lambda: nn.serial(nn.Dense(32, W_std=1.5, b_std=0.1), nn.Relu(),
                             nn.Dense(16), nn.Erf(), nn.Dense(3, W_std=1.2, b_std=0.3)),
    "standard_nobias": lambda: nn.serial(
        nn.Dense(24, W_std=1.4, b_std=None, parameterization="standard"), nn.Gelu(),
        nn.Dense(3, W_std=1.1, b_std=0.2, parameterization="standard")),
    "residual_layernorm": lambda: nn.serial(
        nn.Dense(16, W_std=1.3, b_std=0.1), nn.LayerNorm(), nn.FanOut(2),
        nn.parallel(nn.serial(nn.Relu(), nn.Dense(16)), nn.Identity()), nn.FanInSum(),
        nn.Sin(), nn.Dense(2)),
}


def brute_force_ntk(apply, params, x1, x2):
    """J(x1) J(x2)^T from the Jacobian of the flattened parameter vector: (N1, N2, K, K)."""
    flat, unravel = ravel_pytree(params)
    j1 = jax.jacrev(lambda p: apply(unravel(p), x1))(flat)  # (N1, K, P)
    j2 = jax.jacrev(lambda p: apply(unravel(p), x2))(flat)
    return np.einsum("akp,blp->abkl", np.asarray(j1, np.float64), np.asarray(j2, np.float64))


# float32: the full blocks (they contain the traced kernel, tested against them below), and
# not the residual net, whose code path the others share (the float64 pass runs every case)
@pytest.mark.parametrize("name", sorted(NETS) if X64 else
                         [n for n in sorted(NETS) if n != "residual_layernorm"])
@pytest.mark.parametrize("trace_axes", [(-1,), ()] if X64 else [()])
@pytest.mark.parametrize("x2_none", [False, True])
def test_implementations_agree_with_brute_force(name, trace_axes, x2_none, rng):
    net = NETS[name]()
    x1 = rng.standard_normal((5, 4)).astype(DTYPE)
    x2 = None if x2_none else rng.standard_normal((3, 4)).astype(DTYPE)
    _, params = net.init(jax.random.PRNGKey(1), x1.shape)
    full = brute_force_ntk(net.apply, params, x1, x1 if x2 is None else x2)
    want = np.einsum("abkk->ab", full) / full.shape[-1] if trace_axes else full
    for impl in IMPLS:
        got = empirical.empirical_ntk_fn(net, trace_axes, implementation=impl)(x1, x2, params)
        assert got.shape == want.shape, impl
        assert rel_err(got, want) < TOL, impl
    auto = empirical.empirical_ntk_fn(net.apply, trace_axes)(x1, x2, params)  # via apply
    assert rel_err(auto, want) < TOL


def test_auto_picks_structured_for_ntkgp_nets(rng):
    net = NETS["mlp"]()
    x = rng.standard_normal((3, 4)).astype(DTYPE)
    _, p = net.init(jax.random.PRNGKey(0), x.shape)
    assert empirical.choose_implementation(net, p, x, None) == "structured"
    assert empirical.choose_implementation(net.apply, p, x, None) == "structured"
    assert empirical.choose_implementation(lambda pp, xx: net.apply(pp, xx), p, x, None,
                                           trace_axes=()) == "jacobian"


def test_equinox_model(rng):
    eqx = pytest.importorskip("equinox")
    mlp = eqx.nn.MLP(in_size=4, out_size=3, width_size=16, depth=2, activation=jax.nn.tanh,
                     key=jax.random.PRNGKey(0))
    if not X64:
        mlp = jax.tree.map(lambda a: a.astype(jnp.float32) if eqx.is_inexact_array(a) else a,
                           mlp)
    params, static = eqx.partition(mlp, eqx.is_inexact_array)

    def f(p, x):
        return jax.vmap(eqx.combine(p, static))(x)

    x1 = rng.standard_normal((5, 4)).astype(DTYPE)
    x2 = rng.standard_normal((3, 4)).astype(DTYPE)
    full = brute_force_ntk(f, params, x1, x2)
    for trace_axes, want in (((), full), ((-1,), np.einsum("abkk->ab", full) / 3)):
        res = {impl: empirical.empirical_ntk_fn(f, trace_axes, implementation=impl)(x1, x2, params)
               for impl in ("jacobian", "ntvp", "auto")}
        for impl, got in res.items():
            assert rel_err(got, want) < TOL, (trace_axes, impl)
    with pytest.raises(ValueError, match="structured"):
        empirical.empirical_ntk_fn(f, implementation="structured")


def test_scalar_outputs(rng):
    w = jnp.asarray(rng.standard_normal(4), DTYPE)

    def f(p, x):
        return jnp.tanh(x @ p)  # (N,)

    x = rng.standard_normal((5, 4)).astype(DTYPE)
    want = brute_force_ntk(lambda p, xx: f(p, xx)[:, None], w, x, x)[:, :, 0, 0]
    for impl in ("jacobian", "ntvp"):
        got = empirical.empirical_ntk_fn(f, trace_axes=(), implementation=impl)(x, None, w)
        assert got.shape == (5, 5) and rel_err(got, want) < TOL


def test_traced_is_mean_of_full_blocks(rng):
    net = NETS["mlp"]()
    x = rng.standard_normal((4, 4)).astype(DTYPE)
    _, p = net.init(jax.random.PRNGKey(0), x.shape)
    full = empirical.empirical_ntk_fn(net, ())(x, None, p)
    traced = empirical.empirical_ntk_fn(net, (-1,))(x, None, p)
    np.testing.assert_allclose(traced, np.einsum("abkk->ab", full) / 3, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(full, np.transpose(full, (1, 0, 3, 2)))  # x2=None: symmetric


def test_empirical_nngp(rng):
    net = NETS["mlp"]()
    x1 = rng.standard_normal((4, 4)).astype(DTYPE)
    x2 = rng.standard_normal((2, 4)).astype(DTYPE)
    _, p = net.init(jax.random.PRNGKey(0), x1.shape)
    y1, y2 = np.asarray(net.apply(p, x1)), np.asarray(net.apply(p, x2))
    np.testing.assert_allclose(empirical.empirical_nngp_fn(net)(x1, x2, p), y1 @ y2.T / 3,
                               rtol=1e-5)
    np.testing.assert_allclose(empirical.empirical_nngp_fn(net, ())(x1, x2, p),
                               np.einsum("ak,bl->abkl", y1, y2), rtol=1e-5)
    k = empirical.empirical_kernel_fn(net)(x1, x2, params=p)
    np.testing.assert_allclose(k.cov1, np.mean(y1 ** 2, axis=1), rtol=1e-5)
    np.testing.assert_allclose(k.ntk, empirical.empirical_ntk_fn(net)(x1, x2, p), rtol=1e-6)
