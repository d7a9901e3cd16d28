"""trace_axes=() in the predictions: kernels with full K x K output blocks, against the
(N, N) path on separable kernels and against direct numpy formulas on coupled ones."""

from types import SimpleNamespace

import numpy as np
import pytest
import scipy.linalg

from ntkgp import empirical, predict
from tests.conftest import DTYPE, X64, rel_err
from tests.data import nt_empirical_fns as fns
from tests.helpers import load_reference


def _blocks(rng, n, k):
    """A positive definite kernel over (point, output) pairs, coupled across outputs, as
    (n, n, k, k) blocks, with its (n k, n k) matrix."""
    a = rng.standard_normal((n * k, n * k + 3))
    mat = a @ a.T / (n * k)
    return mat.reshape(n, k, n, k).transpose(0, 2, 1, 3), mat


def _tol():
    return 1e-9 if X64 else 2e-3


def test_separable_blocks_equal_the_traced_kernel():
    rng = np.random.default_rng(0)
    n, m, k = 7, 3, 2
    a = rng.standard_normal((n + m, 5))
    theta = a @ a.T / 5 + 0.1 * np.eye(n + m)
    y = rng.standard_normal((n, k)).astype(DTYPE)
    f0, g0 = rng.standard_normal((n, k)), rng.standard_normal((m, k))
    eye = np.eye(k)
    full = np.einsum("ij,ab->ijab", theta, eye).astype(DTYPE)
    traced = predict.gradient_descent_mse(theta[:n, :n].astype(DTYPE), y)
    blocked = predict.gradient_descent_mse(full[:n, :n], y, trace_axes=())
    for t in (0.5, None):
        want = traced(t, f0, g0, theta[n:, :n].astype(DTYPE))
        got = blocked(t, f0, g0, full[n:, :n])
        for w, g in zip(want, got):
            np.testing.assert_allclose(g, w, rtol=_tol(), atol=_tol())
    post = predict.gp_inference(full[:n, :n], y, diag_reg=0.1, trace_axes=())
    mean, cov = post.predict(full[n:, :n], full[n:, n:])
    ref = predict.gp_inference(theta[:n, :n].astype(DTYPE), y, diag_reg=0.1)
    mean_ref, cov_ref = ref.predict(theta[n:, :n].astype(DTYPE), theta[n:, n:].astype(DTYPE))
    np.testing.assert_allclose(mean, mean_ref, rtol=_tol(), atol=_tol())
    np.testing.assert_allclose(cov, np.einsum("ij,ab->ijab", cov_ref, eye), rtol=_tol(),
                               atol=_tol())


def test_coupled_blocks_against_numpy():
    rng = np.random.default_rng(1)
    n, m, k = 6, 2, 3
    blocks, mat = _blocks(rng, n + m, k)
    nk = n * k
    y = rng.standard_normal((n, k))
    f0 = rng.standard_normal((n, k))
    g0 = rng.standard_normal((m, k))
    t = 3.0
    # gradient flow on 0.5 * mean((f - y)^2) over the n k entries
    kdd, ktd = mat[:nk, :nk], mat[nk:, :nk]
    decay = scipy.linalg.expm(-t * kdd / nk)
    f_t = y.reshape(-1) + decay @ (f0 - y).reshape(-1)
    g_t = g0.reshape(-1) + ktd @ np.linalg.solve(kdd, (np.eye(nk) - decay)
                                                 @ (y - f0).reshape(-1))
    dyn = predict.gradient_descent_mse(blocks[:n, :n].astype(DTYPE), y.astype(DTYPE),
                                       trace_axes=())
    got_tr, got_te = dyn(t, f0, g0, blocks[n:, :n].astype(DTYPE))
    np.testing.assert_allclose(got_tr, f_t.reshape(n, k), rtol=_tol(), atol=_tol())
    np.testing.assert_allclose(got_te, g_t.reshape(m, k), rtol=_tol(), atol=_tol())
    # GP posterior with relative noise (mean of the n k diagonal entries)
    noise = 0.05 * np.mean(np.diag(kdd))
    kreg = kdd + noise * np.eye(nk)
    mean = ktd @ np.linalg.solve(kreg, y.reshape(-1))
    cov = mat[nk:, nk:] - ktd @ np.linalg.solve(kreg, ktd.T)
    post = predict.gp_inference(blocks[:n, :n].astype(DTYPE), y.astype(DTYPE), diag_reg=0.05,
                                trace_axes=())
    got_mean, got_cov = post.predict(blocks[n:, :n].astype(DTYPE),
                                     blocks[n:, n:].astype(DTYPE))
    np.testing.assert_allclose(got_mean, mean.reshape(m, k), rtol=_tol(), atol=_tol())
    want_cov = cov.reshape(m, k, m, k).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(got_cov, want_cov, rtol=_tol(), atol=_tol())
    lml = (-0.5 * y.reshape(-1) @ np.linalg.solve(kreg, y.reshape(-1))
           - 0.5 * np.linalg.slogdet(kreg)[1] - 0.5 * nk * np.log(2 * np.pi))
    np.testing.assert_allclose(post.log_marginal_likelihood(), lml, rtol=_tol())


def test_bad_blocks_are_clear_errors():
    y = np.zeros((4, 2), DTYPE)
    with pytest.raises(ValueError, match=r"\(N1, N2, 2, 2\)"):
        predict.gradient_descent_mse(np.eye(4, dtype=DTYPE), y, trace_axes=())
    with pytest.raises(ValueError, match="trace_axes"):
        predict.gp_inference(np.eye(4, dtype=DTYPE), y, trace_axes=(0,))
    dyn = predict.gradient_descent_mse(np.eye(8, dtype=DTYPE).reshape(4, 2, 4, 2).transpose(
        0, 2, 1, 3), y, trace_axes=())
    with pytest.raises(ValueError, match="fx_train_0"):
        dyn(1.0, np.zeros((4, 3)))


def test_output_blocks_against_neural_tangents():
    """gradient_descent_mse, gp_inference and gradient_descent_mse_ensemble with trace_axes=()
    on a finite network's empirical kernels, against neural-tangents 0.6.5
    (tests/data/nt_empirical.py)."""
    ref, _ = load_reference("nt_empirical")
    r = {k[len("pred__"):]: ref[k].astype(DTYPE) for k in ref.files if k.startswith("pred__")}
    params = {k[len("params__"):]: ref[k].astype(DTYPE) for k in ref.files
              if k.startswith("params__")}
    tol = 1e-8 if X64 else 5e-3
    ts = r["t"]
    gd = predict.gradient_descent_mse(r["k_train_ntk"], r["y"], diag_reg=1e-3, trace_axes=())
    train, test = gd(ts, r["f0"], r["ft0"], r["k_test_ntk"])
    assert rel_err(train, r["gd_train"]) < tol and rel_err(test, r["gd_test"]) < tol
    kernels = {f"k_{w}": {g: r[f"k_{w}_{g}"] for g in ("nngp", "ntk")}
               for w in ("train", "test", "testtest")}

    def cov_err(got, want):
        """A posterior covariance is the prior minus a term of the same size: its rounding
        error is relative to the prior's scale (f32 inputs: eps x the solve's condition)."""
        return np.max(np.abs(np.asarray(got, np.float64) - want)) / np.max(
            np.abs(r["k_testtest_ntk"]) + np.abs(r["k_testtest_nngp"]))

    def as_kernel(d):
        return SimpleNamespace(nngp=d["nngp"], ntk=d["ntk"])

    gp = predict.gp_inference(as_kernel(kernels["k_train"]), r["y"], diag_reg=1e-3,
                              trace_axes=())
    for g in ("nngp", "ntk"):
        out = gp.predict(as_kernel(kernels["k_test"]), as_kernel(kernels["k_testtest"]), g)
        assert rel_err(out.mean, r[f"gp_{g}_mean"]) < tol, g
        assert out.cov.shape == r[f"gp_{g}_cov"].shape
        assert cov_err(out.cov, r[f"gp_{g}_cov"]) < tol, g
    kfn = empirical.empirical_kernel_fn(fns.mlp, trace_axes=(), vmap_axes=0)
    ens = predict.gradient_descent_mse_ensemble(
        lambda a, b, get: kfn(a, b, get, params=params), r["x_train"], r["y"], diag_reg=1e-3,
        trace_axes=())
    for g in ("nngp", "ntk"):
        for t, tag in ((ts, ""), (None, "_inf")):
            mean, cov = ens(t, r["x_test"], g, compute_cov=True)
            assert rel_err(mean, r[f"ens_{g}{tag}_mean"]) < tol, (g, tag)
            assert cov.shape == r[f"ens_{g}{tag}_cov"].shape, (g, tag)
            assert cov_err(cov, r[f"ens_{g}{tag}_cov"]) < tol, (g, tag)
    mean_train = ens(ts, None, "ntk")
    assert mean_train.shape == (3, 8, 3)
