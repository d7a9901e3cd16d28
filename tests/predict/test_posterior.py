"""`predict.Posterior`, the one prediction object: the same numbers through every solver and
kernel source, the same as the neural-tangents-shaped wrappers, and clear errors."""

import numpy as np
import pytest

from ntkgp import linalg, nn, predict
from tests.conftest import DTYPE, X64, rel_err

NET = nn.mlp(2, 1, "relu", W_std=1.5, b_std=0.1)
SOLVE_TOL = 1e-7 if X64 else 2e-3  # CG against exact solves


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((30, 4)).astype(DTYPE)
    xt = rng.standard_normal((9, 4)).astype(DTYPE)
    y = np.sin(x[:, :2]).astype(DTYPE)
    return x, xt, y


@pytest.mark.parametrize("mode", ["nngp", "ntk", "ntkgp"])
def test_every_solver_gives_the_same_converged_prediction(data, mode):
    x, xt, y = data
    chol = predict.Posterior(NET, x, y, mode=mode, solver="cholesky", diag_reg=1e-2)
    eig = predict.Posterior(NET, x, y, mode=mode, solver="eigh", diag_reg=1e-2)
    cg = predict.Posterior(NET, x, y, mode=mode, diag_reg=1e-2,
                           solver=linalg.CGSolver(tol=1e-10 if X64 else 1e-6))
    m_c, v_c = chol.predict(xt, return_var=True)
    m_e, v_e = eig.predict(xt, return_var=True)
    m_g, v_g = cg.predict(xt, return_var=True)
    assert m_c.shape == (9, 2) and v_c.shape == (9,)
    tol = 1e-9 if X64 else 1e-3
    assert rel_err(m_e, m_c) < tol and rel_err(v_e, v_c) < tol
    assert rel_err(m_g, m_c) < SOLVE_TOL and rel_err(v_g, v_c) < (1e-6 if X64 else 2e-2)
    assert [p.solve_result.solver for p in (chol, eig, cg)] == ["cholesky", "eigh", "cg"]
    assert all(p.solve_result.converged for p in (chol, eig, cg))


def test_it_is_what_the_neural_tangents_functions_return(data):
    x, xt, y = data
    ts = [0.5, 4.0, None]
    ens = predict.gradient_descent_mse_ensemble(NET, x, y, diag_reg=1e-3)
    post = predict.Posterior(NET, x, y, mode="ntk", solver="eigh", diag_reg=1e-3)
    mean, cov = post.predict(xt, t=ts, return_cov=True)
    want = ens(ts, xt, "ntk", compute_cov=True)
    assert rel_err(mean, want.mean) < 1e-12 and rel_err(cov, want.covariance) < 1e-12
    gp = predict.gp_inference(NET.kernel(x, None), y, diag_reg=1e-3, get="nngp")
    bayes = predict.Posterior(NET, x, y, mode="nngp", diag_reg=1e-3)
    m, c = bayes.predict(xt, return_cov=True)
    m2, c2 = gp.predict(NET.kernel(xt, x), NET.kernel(xt, None), get="nngp")
    tol = 1e-12 if X64 else 1e-5
    assert rel_err(m, m2) < tol and rel_err(c, c2) < tol
    assert float(bayes.log_marginal_likelihood()) == pytest.approx(
        float(gp.log_marginal_likelihood("nngp")), rel=1e-10 if X64 else 1e-5)


def test_variances_are_the_diagonal_of_the_covariance_and_training_points_converge(data):
    x, xt, y = data
    post = predict.Posterior(NET, x, y, mode="ntk", solver="eigh", diag_reg=1e-3)
    _, var = post.predict(xt, t=[1.0, 10.0], return_var=True)
    _, cov = post.predict(xt, t=[1.0, 10.0], return_cov=True)
    assert rel_err(var, np.diagonal(np.asarray(cov), axis1=1, axis2=2)) < 1e-6
    # on the training points the outputs reach the targets, with no spread left: V V^T y = y
    # up to the eigenvectors' orthogonality, a few N eps (float32: ~1e-5, float64: ~1e-14)
    mean, cov = post.predict(None, t=None, return_cov=True)
    tol = 4 * len(x) * np.finfo(DTYPE).eps
    assert rel_err(mean, y) < tol and float(np.max(np.abs(cov))) == 0.0


def test_kernels_from_disk_with_given_test_kernels(data, tmp_path):
    x, xt, y = data
    path = tmp_path / "k.npy"
    np.save(path, np.asarray(NET.kernel(x, None, "nngp"), np.float64))
    stored = linalg.StoredKernelOperator(np.load(path, mmap_mode="r"), block_rows=7)
    post = predict.Posterior.from_kernels(stored, y, mode="nngp", diag_reg=1e-2,
                                          solver=linalg.CGSolver(tol=1e-10))
    mean, var = post.predict(k_test_train=NET.kernel(xt, x, "nngp"),
                             k_test_test=np.diag(np.asarray(NET.kernel(xt, None, "nngp"))),
                             return_var=True)
    exact = predict.Posterior(NET, x, y, mode="nngp", diag_reg=1e-2)
    m, v = exact.predict(xt, return_var=True)
    assert rel_err(mean, m) < SOLVE_TOL and rel_err(var, v) < (1e-6 if X64 else 2e-2)


def test_new_targets_reuse_the_factor(data):
    x, xt, y = data
    post = predict.Posterior(NET, x, y, mode="ntkgp", diag_reg=1e-2)
    other = post.with_targets(2.0 * y[:, 0])
    assert other.factor is post.factor
    assert rel_err(other.predict(xt), 2.0 * np.asarray(post.predict(xt))[:, 0]) < 1e-5


def test_clear_errors(data):
    x, xt, y = data
    chol = predict.Posterior(NET, x, y, mode="ntk", diag_reg=1e-3)
    with pytest.raises(ValueError, match="finite training time t need solver='eigh'"):
        chol.predict(xt, t=3.0)
    with pytest.raises(ValueError, match="not both"):
        chol.predict(xt, return_var=True, return_cov=True)
    with pytest.raises(ValueError, match="`mode` must be one of"):
        predict.Posterior(NET, x, y, mode="gp")
    with pytest.raises(ValueError, match="`solver` must be one of"):
        predict.Posterior(NET, x, y, solver="lu")
    cg = predict.Posterior(NET, x, y, mode="nngp", solver="cg", diag_reg=1e-2)
    with pytest.raises(ValueError, match="not full covariances"):
        cg.predict(xt, return_cov=True)
    with pytest.raises(ValueError, match="conjugate gradients do not give"):
        cg.log_marginal_likelihood()
    bare = predict.Posterior.from_kernels(NET.kernel(x, None), y, mode="nngp")
    with pytest.raises(ValueError, match="built from kernels alone"):
        bare.predict(xt)
    with pytest.raises(ValueError, match="needs the ntk kernel"):
        predict.Posterior.from_kernels(NET.kernel(x, None, ("nngp",)), y, mode="ntk")


def test_a_cg_callback_can_stop_the_solve_and_the_result_says_so(data):
    x, _, y = data
    op = linalg.DenseKernelOperator(np.asarray(NET.kernel(x, None, "ntk"), np.float64))
    res = linalg.cg_solve(op, y, 1e-6, preconditioner=None, tol=1e-14,
                          callback=lambda it, xk, r: it >= 2)
    assert res.stopped and not res.converged and res.iterations == 2
    assert res.solver == "cg" and len(res.residuals) == 3 and res.residual == res.residuals[-1]


@pytest.mark.parametrize("mode", ["nngp", "ntk", "ntkgp"])
def test_a_networks_one_program_predicts_what_its_kernels_do_one_by_one(data, mode):
    # a network's test kernels and moments run as one compiled program; a kernel function of
    # the user's own (here a wrapper of the same network) runs them one call at a time
    x, xt, y = data
    own = lambda a, b, get: NET.kernel(a, b, get)  # noqa: E731
    tol = 1e-12 if X64 else 1e-5
    for solver, ts in (("cholesky", None), ("eigh", [0.5, None])):
        fused = predict.Posterior(NET, x, y, mode=mode, solver=solver, diag_reg=1e-3)
        eager = predict.Posterior(own, x, y, mode=mode, solver=solver, diag_reg=1e-3)
        m1, c1 = fused.predict(xt, t=ts, return_cov=True)
        m2, c2 = eager.predict(xt, t=ts, return_cov=True)
        assert rel_err(m1, m2) < tol and rel_err(c1, c2) < tol
        v1, v2 = fused.predict(xt, t=ts, return_var=True), eager.predict(xt, t=ts, return_var=True)
        assert rel_err(v1[0], v2[0]) < tol and rel_err(v1[1], v2[1]) < tol
        assert rel_err(fused.predict(xt, t=ts), m2) < tol
