"""Equinox modules and Flax (linen, nnx) models passed straight to the empirical kernels,
against the NTK of the same function from the Jacobian of its flattened parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkgp import empirical, train
from tests.conftest import DTYPE, rel_err
from tests.kernels.test_empirical import brute_force_ntk

eqx = pytest.importorskip("equinox")
linen = pytest.importorskip("flax.linen")
nnx = pytest.importorskip("flax.nnx")

TOL = 1e-5 if DTYPE == np.float32 else 1e-10


@pytest.fixture
def xs(rng):
    return (rng.standard_normal((5, 4)).astype(DTYPE), rng.standard_normal((3, 4)).astype(DTYPE))


def _cast(tree):
    return jax.tree.map(lambda a: a.astype(DTYPE) if eqx.is_inexact_array(a) else a, tree)


def _traced(full):
    return np.einsum("abkk->ab", full) / full.shape[-1]


def _check_all(model, params, apply, p_ref, x1, x2):
    """Every kernel entry point on ``model`` against the brute-force NTK of ``apply``."""
    full = brute_force_ntk(apply, p_ref, x1, x2)
    for impl in ("jacobian", "ntvp", "auto"):
        got = empirical.empirical_ntk_fn(model, (), implementation=impl)(x1, x2, params)
        assert rel_err(got, full) < TOL, impl
    k = empirical.empirical_kernel_fn(model)(x1, x2, None, params)
    y1, y2 = np.asarray(apply(p_ref, x1), np.float64), np.asarray(apply(p_ref, x2), np.float64)
    assert rel_err(k.ntk, _traced(full)) < TOL
    assert rel_err(k.nngp, y1 @ y2.T / y1.shape[-1]) < TOL
    assert rel_err(k.cov1, np.mean(y1 ** 2, -1)) < TOL
    nngp = empirical.empirical_nngp_fn(model)(x1, None, params)
    assert rel_err(nngp, y1 @ y1.T / y1.shape[-1]) < TOL
    v = np.ones((x2.shape[0], full.shape[-1]), DTYPE)
    vp = empirical.empirical_ntk_vp_fn(model, x1, x2, params)(v)
    assert rel_err(vp, np.einsum("abkl,bl->ak", full, v)) < TOL
    assert empirical.choose_implementation(model, params, x1, x2) in ("jacobian", "ntvp")


def test_equinox_module(xs):
    x1, x2 = xs
    mlp = _cast(eqx.nn.MLP(4, 3, 16, 2, activation=jax.nn.tanh, key=jax.random.PRNGKey(0)))
    params, static = eqx.partition(mlp, eqx.is_inexact_array)

    def apply(p, x):  # Equinox modules take one example: mapped over the batch
        return jax.vmap(eqx.combine(p, static))(x)

    for given in (None, mlp, params):  # the module's own, a module, partition's arrays
        _check_all(mlp, given, apply, params, x1, x2)
    # another module of the same structure: its parameters are used, not the kernel's own
    other = _cast(eqx.nn.MLP(4, 3, 16, 2, activation=jax.nn.tanh, key=jax.random.PRNGKey(1)))
    p_other = eqx.filter(other, eqx.is_inexact_array)
    got = empirical.empirical_ntk_fn(mlp)(x1, x2, other)
    assert rel_err(got, _traced(brute_force_ntk(apply, p_other, x1, x2))) < TOL
    with pytest.raises(ValueError, match="same structure"):
        empirical.empirical_ntk_fn(mlp)(x1, x2, {"w": np.ones(3)})


class _LinenNet(linen.Module):
    @linen.compact
    def __call__(self, x):
        h = linen.Dense(16, param_dtype=DTYPE)(x)
        h = linen.BatchNorm(use_running_average=True, param_dtype=DTYPE)(h)
        return linen.Dense(3, param_dtype=DTYPE)(jnp.tanh(h))


def test_flax_linen_module(xs):
    x1, x2 = xs
    model = _LinenNet()
    variables = model.init(jax.random.PRNGKey(0), x1)
    # batch statistics that are not the initial zeros and ones, to see them used, held fixed
    # (linen keeps them in float32: in float64 they would round the model's own computation)
    stats = jax.tree.map(lambda a: a.astype(DTYPE) + 0.3, variables["batch_stats"])
    variables = {"params": variables["params"], "batch_stats": stats}

    def apply(p, x):  # only the 'params' collection is differentiated
        return model.apply({"params": p, "batch_stats": stats}, x)

    _check_all(model, variables, apply, variables["params"], x1, x2)
    with pytest.raises(TypeError, match="variables of model.init"):
        empirical.empirical_ntk_fn(model)(x1, x2)
    with pytest.raises(ValueError, match="'params' collection"):
        empirical.empirical_ntk_fn(model)(x1, x2, np.ones(3))


class _NnxNet(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(4, 16, param_dtype=DTYPE, rngs=rngs)
        self.bn = nnx.BatchNorm(16, use_running_average=True, param_dtype=DTYPE, rngs=rngs)
        self.l2 = nnx.Linear(16, 3, param_dtype=DTYPE, rngs=rngs)

    def __call__(self, x):
        return self.l2(jnp.tanh(self.bn(self.l1(x))))


def test_flax_nnx_module(xs):
    x1, x2 = xs
    model = _NnxNet(nnx.Rngs(0))
    model.bn.mean[...] = model.bn.mean[...] + 0.3  # batch statistics, held fixed
    graph, params, rest = nnx.split(model, nnx.Param, ...)

    def apply(p, x):
        return nnx.merge(graph, p, rest)(x)

    for given in (None, model, params):  # the module's own, a module, its Param state
        _check_all(model, given, apply, params, x1, x2)
    with pytest.raises(ValueError, match="nnx.state"):
        empirical.empirical_ntk_fn(model)(x1, x2, {"w": np.ones(3)})


def test_modules_elsewhere_say_how_to_wrap_them(xs):
    mlp = eqx.nn.MLP(4, 3, 8, 1, key=jax.random.PRNGKey(0))
    with pytest.raises(TypeError, match="eqx.partition"):
        train.linearize(mlp, eqx.filter(mlp, eqx.is_inexact_array))
