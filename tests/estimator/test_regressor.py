"""NTKRegressor / NNGPRegressor against the closed forms of ntkgp.predict and scikit-learn."""

import os
import pickle
import subprocess
import sys
import warnings

import jax
import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ntkgp import nn, predict
from ntkgp._src.estimator import base
from ntkgp.estimator import NNGPRegressor, NTKRegressor, PrecisionWarning
from tests.conftest import DTYPE, RTOL, X64, needs_x64, rel_err
from tests.helpers import fc

net = fc  # depth-2 ReLU, W_std=1.5, b_std=0.05: the estimators' defaults at depth=2


@pytest.fixture
def data(rng):
    x = rng.normal(size=(40, 3)).astype(DTYPE)
    y = np.stack([np.sin(x[:, 0]) + 0.1 * x[:, 1], x[:, 2] ** 2], 1).astype(DTYPE)
    return x[:30], y[:30], x[30:]


@pytest.mark.parametrize("mode", ["nngp", "ntk"])
def test_equals_gp_inference(data, mode):
    x, y, xt = data
    cls = NNGPRegressor if mode == "nngp" else NTKRegressor
    est = cls(depth=2, diag_reg=1e-3, optimizer=None, normalize_y=False).fit(x, y)
    mean, cov = est.predict(xt, return_cov=True)
    f = net()
    post = predict.gp_inference(f.kernel(x, None), y, diag_reg=1e-3)
    ref_mean, ref_cov = post.predict(f.kernel(xt, x), f.kernel(xt, None), get=mode)
    assert rel_err(mean, ref_mean) < RTOL
    for k in range(y.shape[1]):  # the two outputs share one covariance
        assert rel_err(cov[:, :, k], ref_cov) < RTOL
    _, std = est.predict(xt, return_std=True)
    # std is computed in fixed row tiles, cov in one block: equal up to the dtype's rounding
    assert rel_err(std, np.sqrt(np.stack([np.diag(cov[:, :, k]) for k in range(2)], 1))) < RTOL


def test_nngp_mean_equals_kernel_ridge(data):
    """An independent reference: scikit-learn's KernelRidge on the precomputed NNGP."""
    x, y, xt = data
    est = NNGPRegressor(depth=2, diag_reg=1e-2, optimizer=None, normalize_y=False).fit(x, y)
    k = np.asarray(net().kernel(x, None, "nngp"), np.float64)
    alpha = 1e-2 * np.mean(np.diag(k))
    kr = KernelRidge(kernel="precomputed", alpha=alpha).fit(k, y)
    ref = kr.predict(np.asarray(net().kernel(xt, x, "nngp"), np.float64))
    assert rel_err(est.predict(xt), ref) < RTOL


def test_finite_time_equals_ensemble(data):
    x, y, xt = data
    est = NTKRegressor(depth=2, t=5.0, diag_reg=1e-3, optimizer=None, normalize_y=False)
    mean, cov = est.fit(x, y[:, 0]).predict(xt, return_cov=True)
    ens = predict.gradient_descent_mse_ensemble(net(), x, y[:, 0], diag_reg=1e-3)
    ref_mean, ref_cov = ens(t=5.0, x_test=xt, get="ntk", compute_cov=True)
    assert mean.shape == (10,) and cov.shape == (10, 10)
    assert rel_err(mean, ref_mean) < RTOL and rel_err(cov, ref_cov) < RTOL
    # t=0: the prior mean (zero) after undoing normalize_y=False
    est0 = NTKRegressor(depth=2, t=0.0, optimizer=None, normalize_y=False).fit(x, y[:, 0])
    assert np.max(np.abs(est0.predict(xt))) < 1e-6


def test_normalize_y_scales_back(data):
    x, y, xt = data
    a = NNGPRegressor(depth=2, optimizer=None).fit(x, y)
    b = NNGPRegressor(depth=2, optimizer=None).fit(x, 3.0 * y + 7.0)
    ma, sa = a.predict(xt, return_std=True)
    mb, sb = b.predict(xt, return_std=True)
    np.testing.assert_allclose(mb, 3.0 * ma + 7.0, rtol=10 * RTOL, atol=10 * RTOL)
    np.testing.assert_allclose(sb, 3.0 * sa, rtol=10 * RTOL, atol=10 * RTOL)


def test_shapes_single_and_multi_output(data):
    x, y, xt = data
    one = NTKRegressor(optimizer=None).fit(x, y[:, 0])
    two = NTKRegressor(optimizer=None).fit(x, y)
    assert one.predict(xt).shape == (10,) and two.predict(xt).shape == (10, 2)
    assert one.predict(xt, return_std=True)[1].shape == (10,)
    assert two.predict(xt, return_cov=True)[1].shape == (10, 10, 2)
    assert one.sample_y(xt, 3).shape == (10, 3)
    assert two.sample_y(xt, 3).shape == (10, 2, 3)
    with pytest.raises(ValueError, match="At most one of return_std or return_cov"):
        one.predict(xt, return_std=True, return_cov=True)


def test_sample_y_matches_moments(data):
    x, y, xt = data
    est = NNGPRegressor(depth=1, diag_reg=0.1, optimizer=None).fit(x, y[:, 0])
    mean, cov = est.predict(xt[:4], return_cov=True)
    s = est.sample_y(xt[:4], 20000, random_state=1)
    scale = np.sqrt(np.max(np.diag(cov)))
    assert np.max(np.abs(s.mean(1) - mean)) < 0.05 * scale
    assert np.max(np.abs(np.cov(s) - cov)) < 0.05 * scale ** 2


@pytest.mark.parametrize("cls", [NNGPRegressor, NTKRegressor])
def test_fit_raises_marginal_likelihood(data, cls):
    x, y, _ = data
    est = cls(depth=2, n_restarts_optimizer=1, random_state=0).fit(x, y[:, 0])
    start = np.log([1.5, 0.05, 1e-2])
    assert est.log_marginal_likelihood_value_ > est.log_marginal_likelihood(start) + 1.0
    np.testing.assert_allclose(est.log_marginal_likelihood(est.theta_),
                               est.log_marginal_likelihood_value_, rtol=10 * RTOL)


@needs_x64
def test_lml_gradient_matches_finite_differences(data):
    x, y, _ = data
    est = NTKRegressor(depth=2, optimizer=None).fit(x, y)
    theta = np.log([1.3, 0.2, 0.05])
    _, g = est.log_marginal_likelihood(theta, eval_gradient=True)
    h = 1e-5
    fd = [(est.log_marginal_likelihood(theta + h * e) - est.log_marginal_likelihood(theta - h * e))
          / (2 * h) for e in np.eye(3)]
    np.testing.assert_allclose(g, fd, rtol=1e-5)


@needs_x64
def test_hyperparameters_recovered_from_nngp_samples():
    """Data drawn from a known NNGP (plus noise): the fit lands near the truth."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 3))
    true = {"W_std": 1.2, "b_std": 0.5, "diag_reg": 0.05}
    k = np.asarray(net(1, true["W_std"], true["b_std"]).kernel(x, None, "nngp"))
    noise = true["diag_reg"] * np.mean(np.diag(k))
    y = np.linalg.cholesky(k + noise * np.eye(400)) @ rng.normal(size=(400, 4))
    est = NNGPRegressor(depth=1, normalize_y=False).fit(x, y)
    hp = est.hyperparameters_
    assert abs(hp["W_std"] / true["W_std"] - 1) < 0.1, hp
    assert abs(hp["b_std"] / true["b_std"] - 1) < 0.35, hp
    assert abs(np.log(hp["diag_reg"] / true["diag_reg"])) < np.log(1.5), hp


def test_tiled_equals_whole(data):
    x, y, xt = data
    whole = NTKRegressor(optimizer=None).fit(x, y)
    tiled = NTKRegressor(optimizer=None, tile_size=8).fit(x, y)
    m1, s1 = whole.predict(xt, return_std=True)
    m2, s2 = tiled.predict(xt, return_std=True)
    assert rel_err(m2, m1) < RTOL and rel_err(s2, s1) < RTOL


def test_pipeline_gridsearch_clone(data):
    x, y, _ = data
    pipe = make_pipeline(StandardScaler(), NTKRegressor(optimizer=None))
    gs = GridSearchCV(pipe, {"ntkregressor__depth": [1, 3],
                             "ntkregressor__diag_reg": [1e-3, 1e-1]}, cv=3).fit(x, y[:, 0])
    assert gs.best_params_["ntkregressor__depth"] in (1, 3)
    c = clone(NTKRegressor(depth=4, W_std=1.1))
    assert c.get_params()["depth"] == 4 and not hasattr(c, "posterior_")


def test_joblib_round_trip_in_new_process(data, tmp_path):
    x, y, xt = data
    est = NTKRegressor(depth=2, t=3.0, optimizer=None).fit(x, y)
    path = tmp_path / "model.joblib"
    joblib.dump(est, path)
    np.save(tmp_path / "xt.npy", xt)
    code = ("import joblib, numpy as np, sys; m = joblib.load(sys.argv[1]); "
            "np.save(sys.argv[3], m.predict(np.load(sys.argv[2]), return_std=True)[1])")
    env = dict(os.environ, JAX_ENABLE_X64="1" if X64 else "0")
    subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "xt.npy"),
                    str(tmp_path / "std.npy")], check=True, env=env)
    np.testing.assert_array_equal(np.load(tmp_path / "std.npy"),
                                  est.predict(xt, return_std=True)[1])
    assert np.array_equal(pickle.loads(pickle.dumps(est)).predict(xt), est.predict(xt))


def test_network_argument(data):
    x, y, xt = data
    fixed = NTKRegressor(network=net(2), n_restarts_optimizer=0).fit(x, y)
    assert fixed.hyperparameter_names_ == ("diag_reg",)
    as_fn = NTKRegressor(network=lambda w, b: net(2, w, b), optimizer=None).fit(x, y)
    ref = NTKRegressor(depth=2, optimizer=None).fit(x, y)
    assert rel_err(as_fn.predict(xt), ref.predict(xt)) < RTOL
    with pytest.raises(TypeError, match="must return an ntkgp.nn network"):
        NTKRegressor(network=lambda w, b: 3, optimizer=None).fit(x, y)


BAD = [
    (lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 4, np.nan, x), y),
     ValueError, "NaN"),
    (lambda x, y: (x, np.where(np.arange(y.size).reshape(y.shape) == 2, np.inf, y)),
     ValueError, "infinity"),
    (lambda x, y: (x[:, 0], y), ValueError, "Expected 2D array"),
    (lambda x, y: (x, y[:-1]), ValueError, "inconsistent numbers of samples"),
    (lambda x, y: (x.astype(str).astype(object) + "a", y), ValueError, "could not convert"),
]


@pytest.mark.parametrize("make, exc, match", BAD)
def test_bad_input(data, make, exc, match):
    x, y, _ = data
    xb, yb = make(x, y[:, 0])
    with pytest.raises(exc, match=match):
        NTKRegressor(optimizer=None).fit(xb, yb)


def test_bad_use(data):
    x, y, xt = data
    with pytest.raises(NotFittedError, match="not fitted yet"):
        NTKRegressor().predict(xt)
    est = NTKRegressor(optimizer=None).fit(x, y)
    with pytest.raises(ValueError, match="X has 2 features, but NTKRegressor is expecting 3"):
        est.predict(xt[:, :2])
    for kw, match in [({"activation": "tanh"}, "`activation` must be one of"),
                      ({"depth": 0}, "`depth` must be an integer >= 1"),
                      ({"diag_reg": -1.0}, "`diag_reg` must be a finite number >= 0"),
                      ({"t": -1.0}, "`t` must be None"),
                      ({"optimizer": "adam"}, "`optimizer` must be 'fmin_l_bfgs_b' or None"),
                      ({"network": 3}, "`network` must be None"),
                      ({"max_fit_samples": 0}, "`max_fit_samples` must be an integer >= 1"),
                      ({"n_restarts_optimizer": -1}, "`n_restarts_optimizer` must be an"),
                      ({"tile_size": 0}, "`tile_size` must be an integer >= 1")]:
        with pytest.raises((ValueError, TypeError), match=match):
            NTKRegressor(**kw).fit(x, y)
    with pytest.raises(ValueError, match=r"`theta` must have shape \(3,\)"):
        est.log_marginal_likelihood([0.0])


@pytest.mark.skipif(X64, reason="the warning is about x64 being off")
def test_float64_data_warns_once_when_x64_is_off(data, monkeypatch):
    x, y, _ = data
    monkeypatch.setattr(base, "_warned", set())
    with pytest.warns(PrecisionWarning, match="jax_enable_x64"):
        NTKRegressor(optimizer=None).fit(x.astype(np.float64), y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PrecisionWarning)
        NTKRegressor(optimizer=None).fit(x.astype(np.float64), y)
    assert not jax.config.read("jax_enable_x64")  # the estimator never flips it


def test_too_large_for_memory_is_a_clear_error(data, monkeypatch):
    x, y, _ = data
    import ntkgp._src.util as util
    monkeypatch.setattr(util, "free_memory_bytes", lambda: 1000)
    with pytest.raises(MemoryError, match=r"\(30 rows padded to 32\) for N=32 training "
                       "points .* need about"):
        NTKRegressor(optimizer=None).fit(x, y)
    with pytest.raises(MemoryError, match="marginal-likelihood fit's .* N=32 training points"):
        NTKRegressor().fit(x, y)  # the fit's arrays, on its 30 rows padded to 32


def test_standard_parameterization(data):
    x, y, xt = data
    est = NTKRegressor(depth=2, parameterization="standard", width=64, optimizer=None,
                       normalize_y=False, diag_reg=1e-3).fit(x, y)
    layers = []
    for _ in range(2):
        layers += [nn.Dense(64, W_std=1.5, b_std=0.05, parameterization="standard"), nn.Relu()]
    f = nn.serial(*layers, nn.Dense(1, W_std=1.5, b_std=0.05, parameterization="standard"))
    post = predict.gp_inference(f.kernel(x, None), y, diag_reg=1e-3)
    assert rel_err(est.predict(xt), post.predict(f.kernel(xt, x), get="ntk")) < RTOL


@pytest.mark.parametrize("cls", [NNGPRegressor, NTKRegressor])
def test_fit_moves_on_one_feature_with_duplicate_rows(rng, cls):
    """1-D inputs with repeated values (like diabetes' bmi): every correlation is near 1, where
    the kernels' gradients used to blow up and L-BFGS stopped at its start."""
    x = np.round(rng.normal(size=(80, 1)), 1).astype(DTYPE)
    y = (np.sin(2 * x[:, 0]) + 0.3 * rng.normal(size=80)).astype(DTYPE)
    est = cls(depth=2).fit(x, y)
    start = est.log_marginal_likelihood(np.log([1.5, 0.05, 1e-2]))
    assert est.log_marginal_likelihood_value_ > start + 5.0, est.hyperparameters_
