"""`trace_axes`, `diagonal_axes` and `vmap_axes` of the empirical kernels: against
neural-tangents 0.6.5 (tests/data/nt_empirical.py) on functions with two output axes per
example and on one that couples the examples, and against brute-force Jacobians."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkgp import empirical, nn
from tests.conftest import DTYPE, X64, rel_err
from tests.data import nt_empirical_fns as fns
from tests.helpers import load_reference

REF, META = load_reference("nt_empirical")
TOL = 1e-9 if X64 else 5e-4


def _inputs():
    params = {k[len("params__"):]: jnp.asarray(REF[k], DTYPE) for k in REF.files
              if k.startswith("params__")}
    return params, REF["x1"].astype(DTYPE), REF["x2"].astype(DTYPE)


# the layouts do not depend on the dtype: the float32 pass checks three cases' numerics
F32_CASES = ("full", "diag_examples_full", "coupled_diag_examples")


@pytest.mark.parametrize("name", sorted(META["kernels"]) if X64 else F32_CASES)
def test_against_neural_tangents(name):
    case = META["kernels"][name]
    params, x1, x2 = _inputs()
    f = getattr(fns, case["fn"])
    axes = (tuple(case["trace_axes"]), tuple(case["diagonal_axes"]))
    xb = x2 if case["x2"] else None
    want_ntk, want_nngp = REF[f"{name}__ntk"], REF[f"{name}__nngp"]
    for vmap_axes in case["vmap_axes"]:
        impls = ("jacobian", "ntvp") if vmap_axes is None else ("jacobian", "ntvp", "auto")
        for impl in impls:
            got = empirical.empirical_ntk_fn(f, *axes, vmap_axes, impl)(x1, xb, params)
            assert got.shape == want_ntk.shape, (vmap_axes, impl)
            assert rel_err(got, want_ntk) < TOL, (vmap_axes, impl)
    got = empirical.empirical_nngp_fn(f, *axes)(x1, xb, params)
    assert got.shape == want_nngp.shape and rel_err(got, want_nngp) < TOL


def test_assuming_independence_of_coupled_examples_changes_the_kernel():
    """vmap_axes=0 is a promise about f; for a function that couples the examples the
    default (None) is right and 0 is not: the check that the promise matters."""
    params, x1, x2 = _inputs()
    want = REF["coupled_traced__ntk"]
    wrong = empirical.empirical_ntk_fn(fns.coupled, vmap_axes=0)(x1, x2, params)
    assert rel_err(wrong, want) > 0.05


def _net_and_data(rng):
    net = nn.serial(nn.Dense(16, W_std=1.3, b_std=0.2), nn.Erf(), nn.Dense(3, b_std=0.1))
    x = rng.standard_normal((5, 4)).astype(DTYPE)
    _, p = net.init(jax.random.PRNGKey(2), x.shape)
    return net, x, p


@pytest.mark.parametrize("impl", ["structured", "jacobian", "ntvp"] if X64 else ["ntvp"])
def test_diagonals_are_the_diagonals_of_full_blocks(impl, rng):
    net, x, p = _net_and_data(rng)
    full = np.asarray(empirical.empirical_ntk_fn(net, ())(x, None, p))  # (N, N, K, K)
    cases = {
        ((), (-1,)): np.einsum("abkk->abk", full),
        ((), (0,)): np.einsum("aakl->akl", full),
        ((-1,), (0,)): np.einsum("aakk->a", full) / 3,
        ((0, -1), ()): np.einsum("aakk->", full) / 15,
        ((0,), (-1,)): np.einsum("aakk->k", full) / 5,
        ((0,), ()): np.einsum("aakl->kl", full) / 5,
    }
    for (tr, dg), want in cases.items():
        got = empirical.empirical_ntk_fn(net, tr, dg, implementation=impl)(x, None, p)
        assert got.shape == want.shape, (tr, dg)
        assert rel_err(got, want) < TOL, (tr, dg)
    x2 = rng.standard_normal((5, 4)).astype(DTYPE)
    pair = np.asarray(empirical.empirical_ntk_fn(net)(x, x2, p))
    got = empirical.empirical_ntk_fn(net, (-1,), (0,), implementation=impl)(x, x2, p)
    assert rel_err(got, np.diagonal(pair)) < TOL


def test_kernel_fn_and_monte_carlo_take_the_axes(rng, key):
    net, x, p = _net_and_data(rng)
    k = empirical.empirical_kernel_fn(net, (), (0,))(x, None, params=p)
    assert k.ntk.shape == (5, 3, 3) and k.nngp.shape == (5, 3, 3)
    y = np.asarray(net.apply(p, x))
    assert rel_err(k.nngp, np.einsum("ak,al->akl", y, y)) < TOL
    mc = empirical.monte_carlo_kernel(net, key, 2, x, get="ntk", trace_axes=(),
                                      diagonal_axes=(-1,))
    assert mc.shape == (5, 5, 3)


def test_bad_axes():
    params, x1, x2 = _inputs()
    with pytest.raises(ValueError, match="both `trace_axes`"):
        empirical.empirical_ntk_fn(fns.conv_like, (-1,), (-1,))(x1, x2, params)
    with pytest.raises(ValueError, match="does not fit outputs with 3 axes"):
        empirical.empirical_ntk_fn(fns.conv_like, (3,))(x1, x2, params)
    with pytest.raises(ValueError, match="same one of x2"):
        empirical.empirical_ntk_fn(fns.conv_like, (-1,), (0,))(x1, x2, params)
    with pytest.raises(ValueError, match="move the batch axis first"):
        empirical.empirical_ntk_fn(fns.conv_like, vmap_axes=1)
    with pytest.raises(ValueError, match="move the batch axis first"):
        empirical.empirical_ntk_fn(fns.conv_like, vmap_axes=(0, 1, {}))
    with pytest.raises(TypeError, match="vmap_axes"):
        empirical.empirical_ntk_fn(fns.conv_like, vmap_axes="batch")
    with pytest.raises(TypeError, match="integers"):
        empirical.empirical_nngp_fn(fns.conv_like, ("a",))(x1, x2, params)


def test_ntk_vector_products(rng):
    params, x1, x2 = _inputs()
    full = np.asarray(empirical.empirical_ntk_fn(fns.conv_like, ())(x1, x2, params))
    v = rng.standard_normal((3, 5, 2)).astype(DTYPE)
    got = empirical.empirical_ntk_vp_fn(fns.conv_like, x1, x2, params)(v)
    # full is (N1, N2, H1, H2, C1, C2): the product sums over (b, h2, c2)
    assert rel_err(got, np.einsum("abhgcd,bgd->ahc", full, v)) < TOL
    net, x, p = _net_and_data(rng)
    w = rng.standard_normal((5, 3)).astype(DTYPE)
    blocks = np.asarray(empirical.empirical_ntk_fn(net, ())(x, None, p))
    got = empirical.empirical_ntk_vp_fn(net, x, None, p)(w)
    assert rel_err(got, np.einsum("abkl,bl->ak", blocks, w)) < TOL
    with pytest.raises(ValueError, match=r"shape of f\(params, x2\)"):
        empirical.empirical_ntk_vp_fn(net, x, None, p)(w[:, :2])
