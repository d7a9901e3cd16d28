"""Identities of the closed-form predictions: limits in time, interpolation, scikit-learn's
KernelRidge, the Bayesian posterior, PSD covariances, multi-output, explicit gradient descent."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.kernel_ridge import KernelRidge

from ntkgp import nn, predict
from tests.conftest import DTYPE, RTOL, X64, rel_err

TOL = 1e-8 if X64 else RTOL
NET = nn.serial(nn.Dense(512, W_std=1.5, b_std=0.1), nn.Relu(), nn.Dense(512, W_std=1.5, b_std=0.1),
                nn.Erf(), nn.Dense(1, W_std=1.5, b_std=0.1))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((12, 4)).astype(DTYPE)
    xt = rng.standard_normal((5, 4)).astype(DTYPE)
    y = rng.standard_normal((12, 3)).astype(DTYPE)
    return x, xt, y


@pytest.fixture(scope="module")
def ens(data):
    x, _, y = data
    return predict.gradient_descent_mse_ensemble(NET, x, y, diag_reg=1e-2)


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_time_zero_is_the_prior(ens, data, get):
    _, xt, _ = data
    mean, cov = ens(0.0, xt, get, compute_cov=True)
    np.testing.assert_array_equal(np.asarray(mean), 0.0)
    assert rel_err(cov, NET.kernel(xt, None, "nngp")) <= TOL
    mean, cov = ens(0.0, None, get, compute_cov=True)
    np.testing.assert_array_equal(np.asarray(mean), 0.0)
    k = ens.k_train_train["nngp"]
    if get == "nngp":  # the prior of the observations: diag_reg is their noise
        k = k + 1e-2 * jnp.mean(jnp.diagonal(k)) * jnp.eye(len(k), dtype=k.dtype)
    assert rel_err(cov, k) <= TOL


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_long_time_is_the_closed_form(ens, data, get):
    """eigh at t=1e9 and at t=inf (in an array) agree with the Cholesky t=None path."""
    _, xt, _ = data
    inf = ens(None, xt, get, compute_cov=True)
    for ts in ([1e9], [np.inf]):
        late = ens(np.array(ts), xt, get, compute_cov=True)
        assert rel_err(late.mean[0], inf.mean) <= TOL
        assert rel_err(late.cov[0], inf.cov) <= TOL
    train = ens(np.array([1e9]), None, get)
    assert rel_err(train[0], ens.y_train) <= TOL


def test_interpolation_without_regularization(data):
    x, xt, y = data
    e = predict.gradient_descent_mse_ensemble(NET, x, y)
    mean, cov = e(None, x, "ntk", compute_cov=True)  # training points through the test path
    assert rel_err(mean, y) <= TOL
    assert float(jnp.max(jnp.abs(cov))) <= TOL * float(jnp.max(e.k_train_train["nngp"]))
    post = predict.gp_inference(NET.kernel(x, None), y, get="nngp")
    assert rel_err(post.predict(NET.kernel(x, x, "nngp")), y) <= TOL


@pytest.mark.parametrize("get", ["nngp", "ntkgp"])
def test_mean_is_kernel_ridge(data, get):
    x, xt, y = data
    which = "nngp" if get == "nngp" else "ntk"
    k_dd = np.asarray(getattr(NET.kernel(x, None), which), np.float64)
    k_td = np.asarray(getattr(NET.kernel(xt, x), which), np.float64)
    alpha = 0.05
    krr = KernelRidge(kernel="precomputed", alpha=alpha).fit(k_dd, np.asarray(y, np.float64))
    post = predict.gp_inference(NET.kernel(x, None), y, diag_reg=alpha,
                                diag_reg_absolute_scale=True, get=get)
    assert rel_err(post.predict(NET.kernel(xt, x), get=get), krr.predict(k_td)) <= TOL


def test_nngp_mode_is_the_bayesian_posterior(ens, data):
    """At t=inf, training the readout only gives the GP posterior (NumPy, float64)."""
    x, xt, y = data
    mean, cov = ens(None, xt, "nngp", compute_cov=True)
    k = {a: np.asarray(NET.kernel(*a_, "nngp"), np.float64) for a, a_ in
         (("dd", (x, None)), ("td", (xt, x)), ("tt", (xt, None)))}
    kr = k["dd"] + 1e-2 * np.mean(np.diag(k["dd"])) * np.eye(len(x))
    assert rel_err(mean, k["td"] @ np.linalg.solve(kr, y)) <= TOL
    assert rel_err(cov, k["tt"] - k["td"] @ np.linalg.solve(kr, k["td"].T)) <= TOL


@pytest.mark.parametrize("get", ["nngp", "ntk"])
@pytest.mark.parametrize("t", [None, np.array([0.5, 3.0, 50.0])])
def test_covariances_symmetric_psd(ens, data, get, t):
    _, xt, _ = data
    cov = np.asarray(ens(t, xt, get, compute_cov=True).cov, np.float64)
    cov = cov.reshape((-1,) + cov.shape[-2:])
    for c in cov:
        np.testing.assert_array_equal(c, c.T)
        assert np.linalg.eigvalsh(c).min() >= -10 * TOL * np.abs(c).max()


def test_multi_output_is_independent_columns(ens, data):
    x, xt, y = data
    both = ens(np.array([2.0, np.inf]), xt, "ntk", compute_cov=True)
    for j in range(y.shape[1]):
        one = predict.gradient_descent_mse_ensemble(NET, x, y[:, j], diag_reg=1e-2)
        # one output: loss normalized by N, not N*K, so time runs K times faster
        m1, c1 = one(np.array([2.0 / y.shape[1], np.inf]), xt, "ntk", compute_cov=True)
        assert m1.shape == (2, len(xt))
        assert rel_err(m1, both.mean[..., j]) <= TOL
        assert rel_err(c1, both.cov) <= TOL


def test_ensemble_mean_is_linearized_dynamics_from_zero(ens, data):
    x, xt, y = data
    dyn = predict.gradient_descent_mse(ens.k_train_train["ntk"], y, diag_reg=1e-2)
    ts = np.array([0.0, 1.0, 7.0, np.inf])
    fx_train, fx_test = dyn(ts, None, None, NET.kernel(xt, x, "ntk"))
    assert rel_err(fx_test, ens(ts, xt, "ntk")) <= TOL
    assert rel_err(fx_train, ens(ts, None, "ntk")) <= TOL


def test_discrete_steps_match_explicit_gradient_descent(data):
    """learning_rate=eta predicts s steps of f <- f - eta/m Theta (f - y) exactly."""
    x, xt, y = data
    k_dd, k_td = NET.kernel(x, None, "ntk"), NET.kernel(xt, x, "ntk")
    lr = 0.9 * float(predict.max_learning_rate(k_dd, n_outputs=y.shape[1]))
    rng = np.random.default_rng(2)
    f, ft = rng.standard_normal(y.shape).astype(DTYPE), rng.standard_normal((5, 3)).astype(DTYPE)
    f_init = f
    dyn = predict.gradient_descent_mse(k_dd, y, learning_rate=lr)
    got_tr, got_te = dyn(np.array([0.0, lr, 5 * lr, 40 * lr]), f, ft, k_td)
    m = y.size
    for step in range(41):
        if step in (0, 1, 5, 40):
            i = (0, 1, 5, 40).index(step)
            assert rel_err(got_tr[i], f) <= TOL and rel_err(got_te[i], ft) <= TOL
        r = f - y
        f, ft = f - lr / m * (k_dd @ r), ft - lr / m * (k_td @ r)
    flow = predict.gradient_descent_mse(k_dd, y)(5 * lr, f_init)
    assert rel_err(flow, dyn(5 * lr, f_init)) > 1e-2  # the step size matters at 0.9 x max


def test_one_dimensional_targets(data):
    x, xt, y = data
    e = predict.gradient_descent_mse_ensemble(NET, x, y[:, 0])
    mean, cov = e(1.0, xt, compute_cov=True)
    assert mean.shape == (5,) and cov.shape == (5, 5)
    assert e(None, None).shape == (12,)


def test_factorizations_are_reused(ens, data):
    _, xt, _ = data
    ens(None, xt, "ntk"), ens(1.0, xt, "ntk")
    n = ens.n_factorizations
    for t in (None, 2.0, np.array([3.0, 4.0])):
        ens(t, xt[:3], "ntk", compute_cov=True)
    assert ens.n_factorizations == n


def test_log_marginal_likelihood_matches_scipy(data):
    from scipy.stats import multivariate_normal

    x, _, y = data
    post = predict.gp_inference(NET.kernel(x, None), y, diag_reg=0.1)
    k = np.asarray(NET.kernel(x, None, "nngp"), np.float64)
    k = k + 0.1 * np.mean(np.diag(k)) * np.eye(len(x))
    want = sum(multivariate_normal(cov=k).logpdf(np.asarray(y[:, j], np.float64))
               for j in range(y.shape[1]))
    assert abs(float(post.log_marginal_likelihood()) - want) <= TOL * abs(want)


@pytest.mark.skipif(not X64, reason="finite differences need float64")
def test_log_marginal_likelihood_gradient_matches_finite_differences(data):
    x, _, y = data

    def lml(p):
        net = nn.serial(nn.Dense(64, W_std=p[0], b_std=p[1]), nn.Relu(),
                        nn.Dense(1, W_std=p[0], b_std=p[1]))
        post = predict.gp_inference(net.kernel(x, None, ("nngp",)), y, diag_reg=p[2],
                                    get="nngp")
        return post.log_marginal_likelihood()

    p = jnp.array([1.3, 0.2, 0.05])
    g = jax.grad(lml)(p)
    h = 1e-6
    fd = [(lml(p.at[i].add(h)) - lml(p.at[i].add(-h))) / (2 * h) for i in range(3)]
    np.testing.assert_allclose(np.asarray(g), np.asarray(fd), rtol=1e-6)
    assert np.all(np.abs(np.asarray(g)) > 1e-3)  # a gradient that says something
    assert np.isfinite(jax.jit(lml)(p))


@pytest.mark.parametrize("extra", [0, 5])
def test_closed_form_evidence_gradients(data, extra):
    """The closed-form gradients (used by the estimators' fit) against reverse mode through the
    Cholesky factor; rows padded with junk kernel entries and zero targets leave the value and
    the gradients of the data rows unchanged."""
    from ntkgp._src.predict import evidence

    x, _, y = data
    k = NET.kernel(x, None, "ntk")

    def lml(k, reg):
        return predict.gp_inference(k, y, diag_reg=reg, get="nngp").log_marginal_likelihood()

    want_v, (want_k, want_reg) = jax.value_and_grad(lml, (0, 1))(k, 0.05)
    n = len(x)
    junk = jnp.asarray(np.random.default_rng(0).normal(size=(n + extra, n + extra)), k.dtype)
    kp = junk.at[:n, :n].set(k)
    yp = jnp.concatenate([y, jnp.zeros((extra, y.shape[1]), y.dtype)])
    mask = np.arange(n + extra) < n
    v, dk, dreg, _, _ = jax.jit(evidence.log_marginal_likelihood_gradients)(kp, yp, 0.05,
                                                                            mask)
    tol = 1e-9 if X64 else 1e-4
    assert abs(float(v) - float(want_v)) <= tol * abs(float(want_v))
    assert rel_err(dk[:n, :n], want_k) <= tol
    assert abs(float(dreg) - float(want_reg)) <= tol * abs(float(want_reg))
    np.testing.assert_array_equal(np.asarray(dk[n:]), 0.0)
    np.testing.assert_array_equal(np.asarray(dk[:, n:]), 0.0)


def test_posterior_is_a_pytree_through_jit(data):
    x, xt, y = data
    k_dd, k_td = NET.kernel(x, None), NET.kernel(xt, x)
    eager = predict.gp_inference(k_dd, y, diag_reg=1e-3).predict(k_td, get="ntk")
    post = jax.jit(lambda k, yy: predict.gp_inference(k, yy, diag_reg=1e-3))(k_dd, y)
    jitted = jax.jit(lambda p, k: p.predict(k, get="ntk"))(post, k_td)
    assert rel_err(jitted, eager) <= TOL


def test_times_as_lists_with_none_and_integers(ens, data):
    _, xt, _ = data
    a = ens([0, 3, None], xt, "ntk")
    b = ens(np.array([0.0, 3.0, np.inf]), xt, "ntk")
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_new_times_and_test_points_of_the_same_shape_do_not_recompile(ens, data):
    from ntkgp._src.predict import common

    _, xt, _ = data
    ens(np.array([1.0, 2.0]), xt, "ntk", compute_cov=True)
    ens(None, xt, "ntk", compute_cov=True)
    sizes = (common.moments_eigh._cache_size(), common.moments_cholesky._cache_size())
    ens(np.array([5.0, 7.0]), xt + 1.0, "ntk", compute_cov=True)
    ens(None, xt - 1.0, "ntk", compute_cov=True)
    assert (common.moments_eigh._cache_size(), common.moments_cholesky._cache_size()) == sizes


@pytest.mark.filterwarnings("ignore::ntkgp.linalg.JitterWarning")  # float32: eigenvalue 1e-9
def test_momentum_dynamics_equal_the_heavy_ball_recurrence():
    """gradient_descent_mse(momentum=beta) = iterating v <- beta v + g, f <- f - lr v in
    function space (g = Theta (f - y) / m), including near-zero eigenvalues."""
    rng = np.random.default_rng(3)
    a = rng.standard_normal((12, 12))
    evals = np.geomspace(1e-9, 5.0, 12)
    q, _ = np.linalg.qr(a)
    ntk = (q * evals) @ q.T
    ntk = 0.5 * (ntk + ntk.T)
    y, f0 = rng.standard_normal((2, 12, 2))
    m = y.size
    beta, lr = 0.8, 0.9 * float(predict.max_learning_rate(ntk, n_outputs=2, momentum=0.8))
    f, v, want = f0.copy(), np.zeros_like(f0), [f0.copy()]
    for _ in range(60):
        v = beta * v + ntk @ (f - y) / m
        f = f - lr * v
        want.append(f.copy())
    dyn = predict.gradient_descent_mse(ntk.astype(DTYPE), y.astype(DTYPE), learning_rate=lr,
                                       momentum=beta)
    got = dyn(lr * np.arange(61.0), f0.astype(DTYPE))
    assert rel_err(got, np.array(want)) <= (1e-10 if X64 else 1e-4)
    # converges to the same limit as gradient descent
    assert rel_err(dyn(None, f0), predict.gradient_descent_mse(ntk, y)(None, f0)) <= RTOL


def test_momentum_needs_a_learning_rate():
    with pytest.raises(ValueError, match="`momentum` needs a `learning_rate`"):
        predict.gradient_descent_mse(np.eye(3), np.ones(3), momentum=0.5)
    with pytest.raises(ValueError, match=r"`momentum` must be a number in \[0, 1\)"):
        predict.gradient_descent_mse_ensemble(lambda *a: None, np.ones((3, 1)), np.ones(3),
                                              learning_rate=0.1, momentum=1.0)
