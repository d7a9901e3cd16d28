"""Numerically hard inputs and bad input: a correct answer with a warning, or a clear error."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkgp import linalg, nn, predict
from ntkgp._src.util import check_fits_in_memory
from tests.conftest import DTYPE, X64, rel_err

NET = nn.serial(nn.Dense(512, W_std=1.5, b_std=0.1), nn.Relu(), nn.Dense(1, W_std=1.5, b_std=0.1))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    return (rng.standard_normal((20, 5)).astype(DTYPE), rng.standard_normal((7, 5)).astype(DTYPE),
            rng.standard_normal((20, 2)).astype(DTYPE))


def _fit_recording(x, y, t, xt):
    """Predictions, and whether jitter was added and whether a JitterWarning said so."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        ens = predict.gradient_descent_mse_ensemble(NET, x, y)
        got = ens(t, xt)
    warned = any(issubclass(w.category, linalg.JitterWarning) for w in rec)
    jittered = t is None and float(ens.posterior("ntk", "cholesky").noise) > 0
    return got, jittered, warned


def test_duplicate_points_match_deduplicated(data):
    """Duplicates make the kernel singular up to the rounding of the kernel itself (the
    arc-cosine near correlation 1 turns eps into ~1e-8): either it still factorizes, or
    jitter is added with a warning; the answer is right either way."""
    x, xt, y = data
    xd, yd = np.concatenate([x, x[:3]]), np.concatenate([y, y[:3]])
    got, jittered, warned = _fit_recording(xd, yd, None, xt)
    assert jittered == warned
    if not X64:
        assert warned  # float32: singular to working precision
    want = predict.gradient_descent_mse_ensemble(NET, x, y)(None, xt)
    # gradient flow from zero never separates identical inputs: the limit is the deduplicated
    # fit; the jitter (sqrt(eps) x mean diag) moves it by ~1e-7 (f64) / 2e-3 (f32), observed.
    assert rel_err(got, want) <= (1e-6 if X64 else 1e-2)


def test_conflicting_duplicates_converge_to_their_average(data):
    x, xt, y = data
    xd, yd = np.concatenate([x, x[:1]]), np.concatenate([y, y[:1] + 1.0])
    got, jittered, warned = _fit_recording(xd, yd, None, xt)
    assert jittered == warned
    ya = y.copy()
    ya[0] += 0.5
    want = predict.gradient_descent_mse_ensemble(NET, x, ya)(None, xt)
    assert rel_err(got, want) <= (1e-6 if X64 else 1e-2)
    # at finite time the eigendecomposition needs no jitter at all
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fin = predict.gradient_descent_mse_ensemble(NET, xd, yd)(1e3, xt)
    assert np.all(np.isfinite(fin))


def test_depth_20_relu_nngp(data):
    """A depth-20 ReLU NNGP is nearly constant; its posterior is still right (or warned)."""
    x, xt, y = data
    deep = nn.serial(*[nn.Dense(512, W_std=2**0.5, b_std=0.0), nn.Relu()] * 20,
                     nn.Dense(1, W_std=2**0.5))
    k_dd = deep.kernel(x, None, "nngp")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always", linalg.JitterWarning)
        post = predict.gp_inference(k_dd, y)
        mean = post.predict(deep.kernel(xt, x, "nngp"))
    kr = np.asarray(k_dd, np.float64) + float(post.posteriors["nngp"].noise) * np.eye(len(x))
    want = np.asarray(deep.kernel(xt, x, "nngp"), np.float64) @ np.linalg.solve(kr, y)
    cond = np.linalg.cond(kr)
    assert np.all(np.isfinite(mean))
    assert rel_err(mean, want) <= 10 * cond * np.finfo(DTYPE).eps


def test_float32_n4000_is_finite():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 64)).astype(np.float32)
    y = rng.standard_normal((4000, 1)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no jitter needed here
        ens = predict.gradient_descent_mse_ensemble(NET, x, y)
        mean, cov = ens(None, x[:50] + 0.1, "ntk", compute_cov=True)
    assert mean.dtype == np.float32 and np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))
    assert float(jnp.min(jnp.diagonal(cov))) >= 0.0
    # right, not just finite: the same float32 kernels solved in float64 by NumPy
    k = np.asarray(ens.k_train_train["ntk"], np.float64)
    k_td = np.asarray(NET.kernel(x[:50] + 0.1, x, "ntk"), np.float64)
    want = k_td @ np.linalg.solve(k, np.asarray(y, np.float64))
    assert rel_err(mean, want) <= 1e-3  # observed 4e-5 (condition number 1e4)


def test_not_positive_definite_raises_with_a_fix():
    bad = -np.eye(3, dtype=DTYPE)
    with pytest.raises(linalg.NotPositiveDefiniteError, match="raise `diag_reg`"):
        predict.gp_inference(bad, np.ones(3, DTYPE))
    with pytest.raises(np.linalg.LinAlgError, match="with jitter=0.0"):
        linalg.cholesky(bad, jitter=0.0)


def test_inside_jit_a_failure_is_nan_not_garbage():
    dup = jnp.ones((3, 3), DTYPE)  # rank one
    lml = jax.jit(lambda k: predict.gp_inference(k, jnp.ones(3, DTYPE)).log_marginal_likelihood())
    assert np.isnan(lml(dup))


def test_fixed_jitter_is_added_exactly():
    k = jnp.array([[2.0, 1.0], [1.0, 2.0]], DTYPE)
    c = linalg.cholesky(k, 0.1, jitter=0.01)
    assert float(c.added) == pytest.approx(0.11 * 2.0, rel=1e-6)
    c = linalg.cholesky(k, 0.1, diag_reg_absolute_scale=True)
    assert float(c.added) == pytest.approx(0.1, rel=1e-6)


def test_memory_guard():
    with pytest.raises(MemoryError, match="GiB; .* available. Use fewer training points"):
        check_fits_in_memory(10**7, np.float64, 5, "the training kernels")


@pytest.mark.parametrize("kwargs,match", [
    (dict(y_train=np.ones((19, 2))), r"`y_train` must have 20 rows"),
    (dict(y_train=np.ones((20, 2, 1))), r"shape \(N,\) or \(N, K\)"),
    (dict(y_train=np.full((20, 1), np.nan)), r"`y_train` contains 20 NaN"),
    (dict(diag_reg=-1.0), r"`diag_reg` must be a finite number >= 0"),
    (dict(learning_rate=0.0), r"`learning_rate` must be None"),
])
def test_ensemble_bad_arguments(data, kwargs, match):
    x, _, y = data
    args = {"y_train": y, **kwargs}
    with pytest.raises(ValueError, match=match):
        predict.gradient_descent_mse_ensemble(NET, x, **args)


def test_ensemble_bad_calls(data):
    x, xt, y = data
    ens = predict.gradient_descent_mse_ensemble(NET, x, y, learning_rate=0.5)
    with pytest.raises(ValueError, match="`get` must be one of"):
        ens(None, xt, "ntkgp")
    with pytest.raises(ValueError, match=r"`t` must be >= 0"):
        ens(-1.0, xt)
    with pytest.raises(ValueError, match="whole number of steps"):
        ens(0.75, xt)
    with pytest.raises(ValueError, match="same feature shape"):
        ens(1.0, xt[:, :3])
    with pytest.raises(TypeError, match="`kernel_fn` must be"):
        predict.gradient_descent_mse_ensemble(3, x, y)


def test_divergent_learning_rate_warns(data):
    x, xt, y = data
    lr = float(predict.max_learning_rate(NET.kernel(x, None, "ntk"), n_outputs=2))
    ens = predict.gradient_descent_mse_ensemble(NET, x, y, learning_rate=1.5 * lr)
    with pytest.warns(RuntimeWarning, match="diverges"):
        ens(10 * 1.5 * lr, xt)


def test_posterior_bad_calls(data):
    x, xt, y = data
    post = predict.gp_inference(NET.kernel(x, None), y, get="nngp")
    with pytest.raises(ValueError, match="not prepared for get='ntk'"):
        post.predict(NET.kernel(xt, x), get="ntk")
    with pytest.raises(ValueError, match=r"must have shape \(7, 20\)"):
        post.predict(np.ones((7, 20 + 1), DTYPE)[:, :21].reshape(7, 21))
    with pytest.raises(ValueError, match="needs the ntk kernel"):
        predict.gp_inference(NET.kernel(x, None, ("nngp",)), y, get="ntk")
    with pytest.raises(ValueError, match="`get` must be one of"):
        post.predict(NET.kernel(xt, x), get="gp")
    with pytest.raises(ValueError, match="must be 'nngp' or 'ntkgp'"):
        post.log_marginal_likelihood("ntk")
    with pytest.raises(ValueError, match=r"square \(N, N\)"):
        predict.gp_inference(np.ones((3, 4), DTYPE), np.ones(3, DTYPE))


def test_dynamics_bad_calls(data):
    x, xt, y = data
    dyn = predict.gradient_descent_mse(NET.kernel(x, None, "ntk"), y)
    with pytest.raises(ValueError, match=r"`fx_train_0` must have shape \(20, 2\)"):
        dyn(1.0, np.zeros((20, 3), DTYPE))
    with pytest.raises(ValueError, match=r"`n_outputs` must be an integer >= 1"):
        predict.max_learning_rate(np.eye(3, dtype=DTYPE), n_outputs=0)
    with pytest.raises(ValueError, match=r"`momentum` must be in \[0, 1\)"):
        predict.max_learning_rate(np.eye(3, dtype=DTYPE), momentum=1.0)
