"""Bad input gets a clear error naming what was expected, what came, and how to fix it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkgp import batching, empirical, nn
from tests.conftest import DTYPE


@pytest.fixture
def net():
    return nn.serial(nn.Dense(4), nn.Relu(), nn.Dense(1))


def test_feature_dims_mismatch(net):
    with pytest.raises(ValueError, match=r"same feature shape.*x1 \(3, 4\) and x2 \(2, 5\)"):
        net.kernel(np.ones((3, 4)), np.ones((2, 5)))


@pytest.mark.parametrize("shape", [(3,), (3, 4, 5)])
def test_wrong_rank(net, shape):
    with pytest.raises(ValueError, match=r"must have shape \(N, d\).*got shape"):
        net.kernel(np.ones(shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf(net, bad):
    x = np.ones((3, 2))
    x[1, 1] = bad
    with pytest.raises(ValueError, match=r"`x1` contains 1 NaN or infinite.*impute"):
        net.kernel(x)
    with pytest.raises(ValueError, match=r"`x2` contains 1 NaN"):
        net.kernel(np.ones((3, 2)), x)


@pytest.mark.parametrize("shape", [(0, 3), (3, 0)])
def test_empty(net, shape):
    with pytest.raises(ValueError, match=r"is empty"):
        net.kernel(np.ones(shape))


@pytest.mark.parametrize("get", ["ntkk", ("nngp", "NTK"), ()])
def test_get_typos(net, get):
    with pytest.raises(ValueError, match=r"`get` must"):
        net.kernel(np.ones((2, 2)), get=get)


def test_get_wrong_type(net):
    with pytest.raises(TypeError, match=r"`get` must be a string or a tuple"):
        net.kernel(np.ones((2, 2)), get=3)


def test_unknown_parameterization():
    with pytest.raises(ValueError, match=r"`parameterization` must be one of \('ntk', "
                                         r"'standard'\); got 'ntks'"):
        nn.Dense(3, parameterization="ntks")


@pytest.mark.parametrize("kw", [{"W_std": -1.0}, {"b_std": float("nan")}])
def test_bad_hyperparameters(kw):
    with pytest.raises(ValueError, match=r"must be a finite number >= 0"):
        nn.Dense(3, **kw)


@pytest.mark.parametrize("kw", [{"W_std": [1, 2]}, {"b_std": "0.1"}, {"W_std": np.ones(2)}])
def test_hyperparameters_of_the_wrong_type(kw):
    with pytest.raises(TypeError, match=r"must be a (number|real scalar)"):
        nn.Dense(3, **kw)


@pytest.mark.parametrize("n", [0, -2, 2.5, True])
def test_bad_width(n):
    with pytest.raises(ValueError, match=r"`out_dim` must be an integer >= 1"):
        nn.Dense(n)


def test_complex_and_string_inputs(net):
    with pytest.raises(TypeError, match=r"must be real; got complex"):
        net.kernel(np.ones((2, 2), np.complex64))
    with pytest.raises(TypeError, match=r"numeric array"):
        net.kernel(np.array([["a", "b"]]))


def test_integer_inputs_are_promoted(net):
    k = net.kernel(np.arange(6).reshape(3, 2))
    assert jnp.issubdtype(k.ntk.dtype, jnp.floating)


def test_layernorm_after_nonlinearity_is_refused():
    net = nn.serial(nn.Dense(4), nn.Relu(), nn.LayerNorm(), nn.Dense(1))
    with pytest.raises(ValueError, match=r"LayerNorm.*follow a Dense layer"):
        net.kernel(np.ones((2, 3)))


def test_unjoined_branches():
    net = nn.serial(nn.Dense(4), nn.FanOut(2), nn.parallel(nn.Relu(), nn.Erf()))
    with pytest.raises(ValueError, match=r"ends with 2 parallel branches.*FanInSum"):
        net.kernel(np.ones((2, 3)))


def test_parallel_without_fanout():
    with pytest.raises(ValueError, match=r"needs a list of 2 inputs.*FanOut\(2\)"):
        nn.serial(nn.Dense(4), nn.parallel(nn.Relu(), nn.Erf())).kernel(np.ones((2, 3)))


def test_serial_of_non_layers():
    with pytest.raises(TypeError, match=r"argument 1 is function"):
        nn.serial(nn.Dense(3), lambda x: x)


def test_apply_with_wrong_input_width():
    init, apply, _ = nn.Dense(3)
    _, p = init(jax.random.PRNGKey(0), (-1, 4))
    with pytest.raises(ValueError, match=r"initialized for 4 input features.*re-run `init`"):
        apply(p, np.ones((2, 5), DTYPE))


def test_empirical_errors():
    net = nn.serial(nn.Dense(4), nn.Relu(), nn.Dense(2))
    with pytest.raises(ValueError, match=r"`implementation` must be one of"):
        empirical.empirical_ntk_fn(net, implementation="fast")
    with pytest.raises(ValueError, match=r"'structured' needs an ntkgp.nn network"):
        empirical.empirical_ntk_fn(lambda p, x: x @ p, implementation="structured")
    _, p = net.init(jax.random.PRNGKey(0), (-1, 3))
    with pytest.raises(ValueError, match=r"`trace_axes`=\(2,\) does not fit outputs with 2 "):
        empirical.empirical_ntk_fn(net, trace_axes=(2,))(np.ones((2, 3), DTYPE), None, p)
    with pytest.raises(TypeError, match=r"`params` is required"):
        empirical.empirical_ntk_fn(net)(np.ones((2, 3), DTYPE))
    with pytest.raises(TypeError, match=r"`f` must be a function"):
        empirical.empirical_ntk_fn(3)


def test_monte_carlo_errors():
    with pytest.raises(TypeError, match=r"`net` must be an ntkgp.nn network or an"):
        empirical.monte_carlo_kernel(3, jax.random.PRNGKey(0), 2, np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"`n_samples` must be an integer >= 1"):
        empirical.monte_carlo_kernel(nn.Dense(2), jax.random.PRNGKey(0), 0, np.ones((2, 2)))


def test_batching_errors(net):
    with pytest.raises(ValueError, match=r"`tile_size` must be an integer >= 1"):
        batching.batch(net.kernel, tile_size=0)
    with pytest.raises(ValueError, match=r"contains 1 NaN"):
        batching.batch(net.kernel, 2)(np.array([[1.0, np.nan]]))


def test_errors_inside_jit_are_shape_errors_not_traces(net):
    f = jax.jit(lambda a, b: net.kernel(a, b))
    with pytest.raises(ValueError, match=r"same feature shape"):
        f(np.ones((2, 3)), np.ones((2, 4)))
