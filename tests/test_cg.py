"""Matrix-free kernel operators, preconditioned CG and large-N inference, against dense
factorizations of the same kernels."""

import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from ntkgp import linalg, nn, predict
from ntkgp._src.estimator import base as est_base
from ntkgp.estimator import NNGPRegressor, NTKRegressor
from tests.conftest import DTYPE, ONLY_X32_PASS, ONLY_X64_PASS, X64, rel_err

NET = nn.serial(nn.Dense(1, W_std=1.4, b_std=0.1), nn.Relu(), nn.Dense(1, W_std=1.4, b_std=0.1),
                nn.Relu(), nn.Dense(1))
# CG accuracy that the dtype of the kernel tiles allows (products are summed in float64)
SOLVE_TOL = 1e-6 if X64 else 2e-3


def _data(n, d=4, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(DTYPE)
    y = np.stack([np.sin(2 * x[:, 0]), x[:, 1] * x[:, 2]], axis=1)
    return x, y


def _spd_stored(n, decay, seed=0):
    """A dense SPD matrix with eigenvalues ``k^-decay`` as a `StoredKernelOperator`."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    k = (q * np.arange(1, n + 1) ** -decay) @ q.T
    return k, linalg.StoredKernelOperator(k, block_rows=37)


@ONLY_X64_PASS  # tiling and padding: the same arithmetic in both passes
def test_tiled_operator_equals_dense_kernel():
    x, _ = _data(300)  # 300 rows, tiles of 128: a padded last tile
    op = linalg.TiledKernelOperator(NET.kernel, x, get="ntk", tile_size=128)
    k = np.asarray(NET.kernel(x, None, get="ntk"), np.float64)
    v = np.random.default_rng(1).standard_normal((300, 3))
    tol = 1e-10 if X64 else 1e-5

    def product_err(got, want, scale):  # forward error relative to |K| |v| (no cancellation)
        return np.max(np.abs(got - want)) / np.max(scale)

    # bound: |dK| <= eps_K |K| entrywise; float32 kernel entries of two tilings agree to a few
    # 1e-6 (the arccos near correlation 1), float64 ones to ~1e-13
    pt = 1e-12 if X64 else 1e-5
    assert product_err(op.matmat(v), k @ v, np.abs(k) @ np.abs(v)) < pt
    assert product_err(op.matmat(v[:, 0]), k @ v[:, 0], np.abs(k) @ np.abs(v[:, 0])) < pt
    assert rel_err(op.diagonal(), np.diag(k)) < tol
    assert rel_err(op.columns([0, 299, 128]), k[:, [0, 299, 128]]) < tol
    xt = x[:50] + 0.3
    kt = np.asarray(NET.kernel(xt, x, get="ntk"), np.float64)
    assert product_err(op.cross(xt, v), kt @ v, np.abs(kt) @ np.abs(v)) < pt
    assert rel_err(op.cross_columns(xt), kt.T) < tol
    assert rel_err(op.test_diagonal(xt), np.diag(np.asarray(NET.kernel(xt, None, get="ntk")))) < tol
    with pytest.raises(ValueError, match=r"shape \(300,\) or \(300, C\)"):
        op.matmat(np.ones((299, 1)))
    with pytest.raises(ValueError, match="feature shape"):
        op.cross(np.ones((3, 5), DTYPE), v)


@ONLY_X64_PASS
def test_stored_operator_and_its_errors():
    k, op = _spd_stored(100, 1.0)
    v = np.random.default_rng(2).standard_normal((100, 2))
    np.testing.assert_allclose(op.matmat(v), k @ v, rtol=1e-12)
    np.testing.assert_allclose(op.diagonal(), np.diag(k), rtol=1e-12)
    np.testing.assert_allclose(op.columns([3, 99]), k[:, [3, 99]], rtol=1e-12)
    with pytest.raises(ValueError, match="square"):
        linalg.StoredKernelOperator(np.ones((3, 4)))
    bad = k.copy()
    bad[50, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf in rows 37 to 73"):
        linalg.StoredKernelOperator(bad, block_rows=37).matmat(v)


@ONLY_X64_PASS
def test_pivoted_cholesky_is_exact_for_a_low_rank_kernel_and_improves_with_rank():
    rng = np.random.default_rng(3)
    f = rng.standard_normal((200, 6))
    op = linalg.StoredKernelOperator(f @ f.T)
    lt = linalg.pivoted_cholesky(op, rank=20)
    assert lt.shape[1] == 6  # stops once the remaining trace is ~0
    np.testing.assert_allclose(lt @ lt.T, f @ f.T, atol=1e-8)
    k, op = _spd_stored(200, 1.5)
    errs = [np.trace(k - (lambda a: a @ a.T)(linalg.pivoted_cholesky(op, r))) for r in (5, 20, 80)]
    assert errs[0] > errs[1] > errs[2] > 0
    ny = linalg.nystrom(op, 80)
    assert np.trace(k - ny @ ny.T) < errs[0]


@ONLY_X64_PASS
@pytest.mark.parametrize("method", ["pivoted_cholesky", "nystrom"])
def test_cg_equals_exact_solve_and_preconditioning_cuts_iterations(method):
    k, op = _spd_stored(400, 2.0)
    b = np.random.default_rng(4).standard_normal((400, 3))
    noise = 1e-4
    exact = np.linalg.solve(k + noise * np.eye(400), b)
    plain = linalg.cg_solve(op, b, noise, preconditioner=None, tol=1e-10, max_iter=2000)
    pre = linalg.cg_solve(op, b, noise, preconditioner=method, rank=60, tol=1e-10)
    for res in (plain, pre):
        assert res.converged and res.residuals[-1] <= 1e-10
        assert rel_err(res.x, exact) < 1e-6
    assert pre.iterations < plain.iterations / 3, (pre.iterations, plain.iterations)
    assert pre.preconditioner.rank == 60 and pre.preconditioner.method == method
    # a zero right-hand side (e.g. a constant target after centring) beside the others
    b0 = np.column_stack([b[:, 0], np.zeros(400)])
    res0 = linalg.cg_solve(op, b0, noise, preconditioner=method, rank=60, tol=1e-10)
    assert res0.converged and np.all(res0.x[:, 1] == 0)
    assert rel_err(res0.x[:, 0], exact[:, 0]) < 1e-6
    assert len(pre.residuals) == pre.iterations + 1
    # 'auto' (the default) builds Nyström for a stored kernel: one pass, not one per column
    assert linalg.cg_solve(op, b, noise, rank=60, tol=1e-10).preconditioner.method == "nystrom"


@ONLY_X64_PASS
@pytest.mark.parametrize("n, d", [(40, 5), (40, 50), (100, 3)])
@pytest.mark.parametrize("method", ["pivoted_cholesky", "nystrom"])
def test_without_noise_the_preconditioner_does_not_make_cg_worse(n, d, method):
    # diag_reg=0 on well-conditioned kernels (condition 27 to 4e4): the preconditioner's own
    # noise once sat at eps of the diagonal, and CG stalled at residual ~1 after 300
    # iterations where plain CG converged in 19-163
    x = np.random.default_rng(0).standard_normal((n, d))
    y = np.sin(x[:, 0])
    net = nn.serial(nn.Dense(1), nn.Relu(), nn.Dense(1))
    exact = np.linalg.solve(np.asarray(net.kernel(x, None, "ntk"), np.float64), y)
    plain = predict.cg_inference(net.kernel, x, y, diag_reg=0.0, preconditioner=None)
    pre = predict.cg_inference(net.kernel, x, y, diag_reg=0.0, preconditioner=method)
    assert plain.solve_result.converged and pre.solve_result.converged
    assert pre.solve_result.iterations <= plain.solve_result.iterations
    assert rel_err(pre.alpha[:, 0], exact) < 1e-5


@ONLY_X64_PASS
def test_cg_warns_when_the_tolerance_is_not_met_and_rejects_bad_input():
    k, op = _spd_stored(100, 1.0)
    b = np.ones(100)
    with pytest.warns(linalg.CGConvergenceWarning, match="stopped after 2 iterations"):
        res = linalg.cg_solve(op, b, 1e-6, preconditioner=None, max_iter=2)
    assert not res.converged and res.iterations == 2
    with pytest.raises(ValueError, match=r"`b` \(the right-hand sides\) must have shape \(100,\)"):
        linalg.cg_solve(op, np.ones(99), 0.1)
    with pytest.raises(ValueError, match="NaN or inf"):
        linalg.cg_solve(op, np.full(100, np.nan), 0.1)
    with pytest.raises(ValueError, match="preconditioner"):
        linalg.cg_solve(op, b, 0.1, preconditioner="ilu")
    with pytest.raises(np.linalg.LinAlgError, match="not positive definite"):
        linalg.cg_solve(linalg.StoredKernelOperator(-k), b, 0.0, preconditioner=None)
    for kw, match in [({"max_iter": 0}, "`max_iter` must be an integer >= 1; got 0"),
                      ({"max_iter": 2.5}, "`max_iter` must be an integer"),
                      ({"tol": 0.0}, "`tol` must be a finite number > 0.*got 0.0"),
                      ({"tol": -1e-6}, "`tol` must be a finite number > 0"),
                      ({"tol": float("nan")}, "`tol` must be a finite number > 0"),
                      ({"rank": -1}, "`rank` must be an integer >= 0"),
                      ({"x0": np.ones(99)}, "`x0` must be a finite array of the shape of `b`"),
                      ({"x0": np.full(100, np.inf)}, "with NaN or inf")]:
        with pytest.raises(ValueError, match=match):
            linalg.cg_solve(op, b, 0.1, **kw)


# float32: one mode (the CG numerics); float64: every mode
@pytest.mark.parametrize("get", ["nngp", "ntkgp", "ntk"] if X64 else ["nngp"])
def test_cg_inference_equals_gp_inference(get, monkeypatch):
    from ntkgp._src.scale import tiles
    monkeypatch.setattr(tiles, "VARIANCE_ROWS", 7)  # 20 test points: variances in 3 solves
    x, y = _data(400)
    xt = _data(20, seed=5)[0]
    post = predict.cg_inference(NET.kernel, x, y, get=get, diag_reg=1e-3, tile_size=128,
                                rank=100, tol=1e-9 if X64 else 1e-5)
    exact = predict.gp_inference(NET.kernel(x, None), y, diag_reg=1e-3, get=get)
    mean, cov = exact.predict(NET.kernel(xt, x), NET.kernel(xt, None), get=get)
    m, var = post.predict(xt, return_var=True)
    assert m.shape == (20, 2) and var.shape == (20,)
    assert rel_err(m, mean) < SOLVE_TOL
    assert rel_err(var, np.diag(np.asarray(cov))) < (1e-6 if X64 else 2e-2)
    assert post.solve_result.converged and post.solve_result.iterations < 200
    # 'auto' means pivoted Cholesky for recomputed tiles
    assert post.solve_result.preconditioner.method == "pivoted_cholesky"
    m1 = predict.cg_inference(NET.kernel, x, y[:, 0], get=get, diag_reg=1e-3,
                              tile_size=128).predict(xt)
    assert m1.shape == (20,)


def test_cg_inference_rejects_bad_arguments():
    x, y = _data(50)
    with pytest.raises(ValueError, match="`get` must be one of"):
        predict.cg_inference(NET.kernel, x, y, get="gp")
    with pytest.raises(ValueError, match=r"`y_train` must have 50 rows"):
        predict.cg_inference(NET.kernel, x, y[:40])
    with pytest.raises(ValueError, match="diag_reg"):
        predict.cg_inference(NET.kernel, x, y, diag_reg=-1.0)


@ONLY_X64_PASS
@pytest.mark.parametrize("cls", [NTKRegressor, NNGPRegressor])
def test_estimator_cg_solver_matches_cholesky_and_pickles(cls):
    x, y = _data(500)
    a = cls(depth=2, optimizer=None).fit(x, y[:, 0])
    b = cls(depth=2, optimizer=None, solver="cg", tile_size=128).fit(x, y[:, 0])
    assert a.solver_ == "cholesky" and b.solver_ == "cg"
    ma, sa = a.predict(x[:30], return_std=True)
    mb, sb = b.predict(x[:30], return_std=True)
    # what CG promises is the residual of its system; the predictions' error is that times
    # the conditioning of the preconditioned system (1.5e-6 here in float64)
    k = np.asarray(b.kernel_(b.X_train_, None, ("nngp", "ntk")).ntk if cls is NTKRegressor
                   else b.kernel_(b.X_train_, None, ("nngp",)).nngp, np.float64)
    y_n = b.targets_.astype(np.float64)
    resid = k @ b.posterior_.alpha + b.posterior_.noise * b.posterior_.alpha - y_n
    assert np.linalg.norm(resid) / np.linalg.norm(y_n) < (2e-6 if X64 else 1e-3)
    assert rel_err(mb, ma) < 10 * SOLVE_TOL
    # variances are small differences of O(prior) terms: compare on the prior's scale
    prior = b.posterior_.factor.op.test_diagonal(x[:30]).max() * b.y_scale_[0] ** 2
    assert np.max(np.abs(sb ** 2 - sa ** 2)) / prior < (1e-6 if X64 else 1e-3)
    c = pickle.loads(pickle.dumps(b))
    np.testing.assert_array_equal(c.predict(x[:30]), mb)
    with pytest.raises(ValueError, match="not full covariances"):
        b.predict(x[:3], return_cov=True)
    with pytest.raises(ValueError, match="evidence at other `theta` is not available"):
        b.log_marginal_likelihood(b.theta_)


@ONLY_X32_PASS
def test_estimator_switches_to_cg_above_the_threshold_and_says_so(monkeypatch):
    x, y = _data(300)
    monkeypatch.setattr(est_base, "DENSE_MAX_N", 200)
    with pytest.warns(UserWarning, match="300 training rows > 200: solving by preconditioned"):
        est = NTKRegressor(optimizer=None).fit(x, y[:, 0])
    assert est.solver_ == "cg" and np.isnan(est.log_marginal_likelihood_value_)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert NTKRegressor(optimizer=None, t=5.0).fit(x, y[:, 0]).solver_ == "eigh"
        assert NTKRegressor(optimizer=None, solver="cholesky").fit(x, y[:, 0]).solver_ \
            == "cholesky"
    with pytest.raises(ValueError, match="trained to convergence"):
        NTKRegressor(optimizer=None, solver="cg", t=5.0).fit(x, y[:, 0])
    with pytest.raises(ValueError, match="`solver` must be"):
        NTKRegressor(optimizer=None, solver="lu").fit(x, y[:, 0])


@ONLY_X64_PASS
def test_tiles_sharded_over_two_devices_give_the_same_product():
    code = textwrap.dedent("""
        import sys
        import jax, numpy as np
        sys.path.insert(0, {root!r})
        from ntkgp import linalg
        from tests.test_cg import NET
        assert len(jax.local_devices()) == 2, jax.local_devices()
        x = np.random.default_rng(0).standard_normal((300, 4)).astype(np.float32)
        op = linalg.TiledKernelOperator(NET.kernel, x, get="ntk", tile_size=64)
        v = np.random.default_rng(1).standard_normal((300, 2))
        k = np.asarray(NET.kernel(x, None, get="ntk"), np.float64)
        err = np.abs(op.matmat(v) - k @ v).max() / (np.abs(k) @ np.abs(v)).max()
        assert err < 1e-5, err
        print("ok")
    """).format(root=os.getcwd())
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_ENABLE_X64="0", NTKGP_PROGRESS="0", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]


@ONLY_X64_PASS
def test_an_interrupt_propagates_and_the_callback_keeps_the_iterate_to_continue_from():
    k, op = _spd_stored(200, 1.0)

    class Interrupting(linalg.StoredKernelOperator):
        calls = 0

        def matmat(self, v):
            type(self).calls += 1
            if type(self).calls == 6:
                raise KeyboardInterrupt
            return super().matmat(v)

    b = np.random.default_rng(6).standard_normal(200)
    seen = []
    with pytest.raises(KeyboardInterrupt):
        linalg.cg_solve(Interrupting(k), b, 1e-3, preconditioner=None, tol=1e-10,
                        callback=lambda it, x, res: seen.append((it, x, res)))
    assert [s[0] for s in seen] == [1, 2, 3, 4, 5]
    assert seen[-1][2] < seen[0][2]
    rest = linalg.cg_solve(op, b, 1e-3, preconditioner=None, tol=1e-10, x0=seen[-1][1])
    assert rest.converged and rest.residuals[0] == pytest.approx(seen[-1][2], rel=1e-6)
    assert rel_err(rest.x, np.linalg.solve(k + 1e-3 * np.eye(200), b)) < 1e-8
