"""Each layer of ``ntkgp.nn`` on its own: its finite network (shapes, parameters, outputs) and its
kernel map, against closed forms written out here in NumPy (independent of ntkgp's code)."""

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

from ntkgp import nn
from tests.conftest import DTYPE, RTOL, rel_err

KEY = jax.random.PRNGKey(0)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).standard_normal((6, 5)).astype(DTYPE)


def _gram(x, w_std=1.0, b_std=0.0):
    x = np.asarray(x, np.float64)
    return w_std ** 2 * x @ x.T / x.shape[1] + b_std ** 2


def _arccos1(k):
    """E[relu(u) relu(v)] for (u, v) ~ N(0, k), and E[relu'(u) relu'(v)]."""
    d = np.sqrt(np.diag(k))
    c = np.clip(k / np.outer(d, d), -1.0, 1.0)
    th = np.arccos(c)
    return (np.outer(d, d) * (np.sin(th) + (np.pi - th) * c) / (2 * np.pi),
            (np.pi - th) / (2 * np.pi))


def test_a_layer_unpacks_as_init_apply_kernel(x):
    init, apply, kernel = nn.Dense(3)
    out_shape, params = init(KEY, x.shape)
    assert out_shape == (6, 3) and apply(params, x).shape == (6, 3)
    assert kernel(x, None, "nngp").shape == (6, 6)


def test_dense_kernel_is_the_scaled_gram_matrix(x):
    w, b = 1.7, 0.3
    k = nn.Dense(4, W_std=w, b_std=b).kernel(x, None)
    assert rel_err(k.nngp, _gram(x, w, b)) < RTOL
    # NTK parameterization: the gradients of one layer span its NNGP
    assert rel_err(k.ntk, _gram(x, w, b)) < RTOL


def test_dense_init_and_apply(x):
    _, params = nn.Dense(4, W_std=2.0, b_std=0.5).init(KEY, x.shape)
    w, b = params["W"], params["b"]
    assert w.shape == (5, 4) and b.shape == (4,)
    y = nn.Dense(4, W_std=2.0, b_std=0.5).apply(params, x)
    # NTK parameterization: N(0,1) weights, scaled at apply time
    want = 2.0 * np.asarray(x, np.float64) @ np.asarray(w, np.float64) / np.sqrt(5) \
        + 0.5 * np.asarray(b, np.float64)
    assert rel_err(y, want) < RTOL


def test_relu_is_the_arc_cosine_kernel(x):
    w, b = 1.5, 0.1
    net = nn.serial(nn.Dense(1, W_std=w, b_std=b), nn.Relu())
    k = net.kernel(x, None)
    k1 = _gram(x, w, b)
    nngp, dot = _arccos1(k1)
    assert rel_err(k.nngp, nngp) < RTOL
    # the NTK passes through the activation as Theta * Sigma-dot (the next Dense adds Sigma)
    assert rel_err(k.ntk, k1 * dot) < RTOL


def test_erf_is_the_arcsine_kernel(x):
    net = nn.serial(nn.Dense(1, W_std=1.2), nn.Erf())
    k1 = _gram(x, 1.2)
    d = 1.0 + 2.0 * np.diag(k1)
    want = 2.0 / np.pi * np.arcsin(2.0 * k1 / np.sqrt(np.outer(d, d)))
    assert rel_err(net.kernel(x, None, "nngp"), want) < RTOL


def test_identity_and_fan_in_sum(x):
    base = nn.Dense(1, W_std=1.3, b_std=0.2)
    k = base.kernel(x, None)
    same = nn.serial(base, nn.Identity()).kernel(x, None)
    assert rel_err(same.nngp, k.nngp) < RTOL and rel_err(same.ntk, k.ntk) < RTOL
    # two independent copies of the same branch, summed: twice the kernels
    twice = nn.serial(nn.FanOut(2), nn.parallel(base, base), nn.FanInSum()).kernel(x, None)
    assert rel_err(twice.nngp, 2 * np.asarray(k.nngp)) < RTOL


def test_layer_norm_normalizes_each_input(x):
    net = nn.serial(nn.Dense(1, W_std=1.5, b_std=0.4), nn.LayerNorm())
    k = np.asarray(net.kernel(x, None, "nngp"), np.float64)
    assert np.allclose(np.diag(k), 1.0, rtol=10 * RTOL)


def test_mlp_is_the_serial_network_and_the_spec():
    x = np.random.default_rng(1).standard_normal((4, 3)).astype(DTYPE)
    by_hand = nn.serial(nn.Dense(8, W_std=1.4, b_std=0.1), nn.Erf(),
                        nn.Dense(8, W_std=1.4, b_std=0.1), nn.Erf(),
                        nn.Dense(2, W_std=1.4, b_std=0.1))
    a = nn.mlp(2, 8, "erf", W_std=1.4, b_std=0.1, n_outputs=2)
    b = nn.from_spec("erf-8x2,W_std=1.4,b_std=0.1", n_outputs=2)
    for net in (a, b):
        assert rel_err(net.kernel(x, None, "ntk"), by_hand.kernel(x, None, "ntk")) < RTOL
        _, p = net.init(KEY, x.shape)
        _, q = by_hand.init(KEY, x.shape)
        assert rel_err(net.apply(p, x), by_hand.apply(q, x)) < RTOL
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        nn.mlp(1, 8, "tanh")
    with pytest.raises(ValueError, match="`depth` must be an integer >= 0"):
        nn.mlp(-1)


def test_a_wide_relu_layer_averages_to_its_kernel():
    """The empirical NNGP of a wide Dense + ReLU layer, averaged over initializations, is the
    arc-cosine kernel (Monte Carlo: within 5 standard errors)."""
    x = np.random.default_rng(2).standard_normal((4, 3)).astype(DTYPE)
    width, draws = 2048, 8
    net = nn.serial(nn.Dense(width, W_std=1.5, b_std=0.1), nn.Relu())
    keys = jax.random.split(KEY, draws)

    def empirical(key):
        _, p = net.init(key, x.shape)
        h = net.apply(p, x)
        return h @ h.T / width

    samples = np.asarray(jax.vmap(empirical)(keys), np.float64)
    want, _ = _arccos1(_gram(x, 1.5, 0.1))
    err = np.abs(samples.mean(0) - want)
    se = samples.std(0, ddof=1) / np.sqrt(draws)
    assert np.all(err <= 5 * se + 1e-6), (err, se)
    assert rel_err(jnp.asarray(samples.mean(0)), want) < 0.05


def test_avg_pool_is_differentiable_inside_jit():
    """The empirical NTK (reverse mode, under jit) of a network with AvgPool is J J^T; the
    pooling's zero once became traced under jit and its window sum had no transpose rule."""
    from ntkgp import empirical
    x = np.random.default_rng(4).standard_normal((3, 5, 5, 2)).astype(DTYPE)
    net = nn.serial(nn.Conv(3, (3, 3), padding="CIRCULAR"), nn.Erf(),
                    nn.AvgPool((2, 2), (2, 2), padding="SAME"), nn.Flatten(), nn.Dense(1))
    _, p = net.init(KEY, x.shape)
    flat, unravel = jax.flatten_util.ravel_pytree(p)
    jac = np.asarray(jax.jacrev(lambda q: net.apply(unravel(q), x)[:, 0])(flat), np.float64)
    for impl in ("jacobian", "ntvp"):
        k = empirical.empirical_ntk_fn(net, implementation=impl)(x, None, p)
        assert rel_err(k, jac @ jac.T) < RTOL, impl


def test_concatenation_along_positions_and_its_errors():
    x = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(DTYPE)
    a, b = nn.Conv(4, (2,), padding="VALID"), nn.Conv(4, (3,), padding="SAME", b_std=0.1)
    net = nn.serial(nn.FanOut(2), nn.parallel(a, b), nn.FanInConcat(axis=1))
    shape, params = net.init(jax.random.PRNGKey(0), x.shape)
    y = net.apply(params, x)
    assert shape == y.shape == (2, 9, 4)
    np.testing.assert_array_equal(y[:, :4], a.apply(params[1][0], x))
    k = net.kernel(x)
    assert k.nngp.shape == (2, 2, 9, 9)
    np.testing.assert_array_equal(np.asarray(k.nngp)[:, :, :4, 4:], 0.0)  # independent
    with pytest.raises(ValueError, match="zero-mean Gaussian layer"):
        nn.serial(nn.FanOut(2), nn.parallel(nn.Relu(), b), nn.FanInConcat(axis=1)).kernel(x)
    with pytest.raises(ValueError, match="the batch axis cannot be concatenated"):
        nn.serial(nn.FanOut(2), nn.parallel(a, b), nn.FanInConcat(axis=0)).kernel(x)
    with pytest.raises(ValueError, match="shapes agree except along axis 1"):
        nn.serial(nn.FanOut(2), nn.parallel(a, nn.Conv(5, (2,))),
                  nn.FanInConcat(axis=1)).init(jax.random.PRNGKey(0), x.shape)
