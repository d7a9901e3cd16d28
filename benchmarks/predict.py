#!/usr/bin/env python
"""Infinite-width prediction benchmarks: ntkgp.predict against neural-tangents 0.6.5.

Cases (FC net `fc2`: Dense(512, W_std=1.5, b_std=0.05), Relu, x2, Dense(1); d=784; N_test=500;
targets y ~ N(0, 1) of shape (N, 1); diag_reg=1e-4 relative):
  ensemble_ntk_cov_N{1000,4000}_f32: end to end, as neural-tangents' baseline measures it:
      a new `gradient_descent_mse_ensemble(net, x_train, y_train)` and its t=inf NTK mean and
      covariance on the test points, per run (kernels, Cholesky, solves). The first call
      (compilation included) is reported as compile time.
  gp_inference_ntk_cov_N{1000,4000}_f32: kernels precomputed; `gp_inference` + predict.
  ensemble_ntk_cov_N{2000,8000}_f32_reused_buffers: the same with glibc keeping freed blocks
      for reuse in both libraries' processes (`_common.REUSE_ENV`).
  ensemble_ntk_cov_10times_N{1000,4000}_f32: ntkgp only (neural-tangents' baseline has no such
      case): end to end at 10 training times (eigendecomposition instead of Cholesky).
  ensemble_ntk_cov_N{500,2000,8000}_f32, ensemble_ntk_cov_N{500,1000,2000,4000,8000}_f64: the
      same at the other training sizes and in float64; neural-tangents' side is this script run
      in its venv (as the shared baseline does it).
  ensemble_ntk_cov_N16000_f64: ntkgp only (exact, float64): one run, with the time of each stage
      (train kernels, Cholesky, test kernels and prediction) and the peak memory.
  gd_xent_N1000_K10_f64: `predict.gradient_descent` under cross-entropy (the function-space
      ODE, rtol 1.4e-8 on both sides), kernel given (a NumPy Gram of random features), 1000
      training and 500 test points, 10 classes, times 1, 10, 100; neural-tangents runs this
      script itself in its venv.
The ensemble cases also give their limit (`ensemble_limit`, `_limits.py`): the Grams, the
Cholesky factor, the solves and the covariance's products at this machine's matmul rate, the
ReLU layers' updates at its fused elementwise rate, the kernels' and the factor's writes.
Every case runs in its own process; neural-tangents runs first in its reference venv through the
shared `nt_baseline.py --_child`, then ntkgp, alternating case by case.

Usage:
  python benchmarks/predict.py [--cases REGEX] [--repeats 3] [--no-nt] [--render]
The reference venv: `NTREF_LIGHT=1 bash ../shared/ntref/ntref_setup.sh /tmp/ntref/venv`.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
from _common import block, main, timing_row  # noqa: E402
from _limits import RELU_FLOPS, limit  # noqa: E402

W_STD, B_STD = 1.5, 0.05
N_TEST = 500


def all_cases():
    cases = []
    for n in (1000, 4000):
        cases.append(dict(id=f"ensemble_ntk_cov_N{n}_f32", kind="ensemble", n=n, dt="f32"))
        cases.append(dict(id=f"gp_inference_ntk_cov_N{n}_f32", kind="gp", n=n, dt="f32"))
    # the other training sizes and float64: neural-tangents' side run by this script in its
    # venv (the shared baseline has only the two cases above)
    for n, dt in ((500, "f32"), (2000, "f32"), (8000, "f32"), (500, "f64"), (1000, "f64"),
                  (2000, "f64"), (4000, "f64"), (8000, "f64")):
        cases.append(dict(id=f"ensemble_ntk_cov_N{n}_{dt}", kind="ensemble", n=n, dt=dt,
                          nt_self=True))
    for n in (2000, 8000):  # both libraries with freed buffers reused (the targets read the above)
        cases.append(dict(id=f"ensemble_ntk_cov_N{n}_f32_reused_buffers", kind="ensemble", n=n,
                          dt="f32", nt_self=True, env=_common.REUSE_ENV))
    for n in (1000, 4000):
        cases.append(dict(id=f"ensemble_ntk_cov_10times_N{n}_f32", kind="sweep", n=n,
                          dt="f32", nt_id=None))
    cases.append(dict(id="ensemble_ntk_cov_N16000_f64", kind="stages", n=16000, dt="f64",
                      nt_id=None))
    cases.append(dict(id="gd_xent_N1000_K10_f64", kind="ode", n=1000, dt="f64", nt_self=True))
    return cases


def ode_case(case, repeats):
    """Cross-entropy gradient flow in function space (`predict.gradient_descent`, this
    process's library) from a kernel both sides build with NumPy alone."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    rng = np.random.default_rng(0)
    n, k_out = case["n"], 10
    phi = rng.standard_normal((n + N_TEST, 256))
    gram = phi @ phi[:n].T / 256
    k, kt = jnp.asarray(gram[:n]), jnp.asarray(gram[n:])
    y = jnp.asarray(np.eye(k_out)[rng.integers(0, k_out, n)])
    f0 = jnp.asarray(0.1 * rng.standard_normal((n, k_out)))
    ft0 = jnp.asarray(0.1 * rng.standard_normal((N_TEST, k_out)))
    t = jnp.asarray([1.0, 10.0, 100.0])

    def xent(f, yy):
        return -jnp.mean(jax.nn.log_softmax(f) * yy)

    if _common.BACKEND == "nt":
        import neural_tangents as nt
        fn = nt.predict.gradient_descent(xent, k, y)
    else:
        from ntkgp import predict
        fn = predict.gradient_descent(xent, k, y)
    times = []
    for _ in range(repeats + 1):  # the first call compiles
        t0 = time.perf_counter()
        out = block(fn(t, f0, ft0, kt))
        times.append(time.perf_counter() - t0)
    return timing_row(case["id"], times[0], times[1:], check=float(jnp.mean(out[1][-1] ** 2)),
                      note="N=1000 train, 500 test, 10 classes, times 1, 10, 100; "
                           "first call (compile) separate")


def _timed(fn):
    t0 = time.perf_counter()
    out = block(fn())
    return out, time.perf_counter() - t0


def ensemble_limit(n, dtype, m=N_TEST, d=784, depth=2):
    """The limit (`_limits.limit`) of one ensemble prediction with covariance: as matrix
    products, the input Grams (training: symmetric, N^2 d; test-train 2 N M d; test: M^2 d),
    the Cholesky factor (N^3 / 3), two triangular solves (N^2 M each), the N x N x M and
    M x N x M products of the covariance; as elementwise work, each ReLU layer's update
    (`RELU_FLOPS` per entry) of the three kernels (symmetric ones once per pair); and one
    write of the training kernels, the factor and the test kernels."""
    pairs = n * (n + 1) / 2 + n * m + m * (m + 1) / 2
    return limit(dtype.name,
                 matmul_flops=n * n * d + 2 * n * m * d + m * m * d + n ** 3 / 3
                 + 2 * n * n * m + 2 * n * n * m + 2 * n * m * m,
                 elementwise_flops=depth * RELU_FLOPS * pairs,
                 write_bytes=(3 * n * n + 2 * n * m + m * m) * dtype.itemsize)


def run_case(case, repeats):
    import jax
    if case["dt"] == "f64":
        jax.config.update("jax_enable_x64", True)
    if case["kind"] == "ode":
        return ode_case(case, repeats)
    import jax.numpy as jnp
    import numpy as np

    dtype = np.float64 if case["dt"] == "f64" else np.float32
    rng = np.random.default_rng(0)
    n = case["n"]
    x_tr = jnp.asarray(rng.standard_normal((n, 784)), dtype)
    x_te = jnp.asarray(rng.standard_normal((N_TEST, 784)), dtype)
    y_tr = jnp.asarray(rng.standard_normal((n, 1)), dtype)
    if _common.BACKEND != "nt":  # neural-tangents' venv has no ntkgp
        from ntkgp import nn, predict
        net = nn.serial(nn.Dense(512, W_std=W_STD, b_std=B_STD), nn.Relu(),
                        nn.Dense(512, W_std=W_STD, b_std=B_STD), nn.Relu(),
                        nn.Dense(1, W_std=W_STD, b_std=B_STD))
    info = {}
    if _common.BACKEND == "nt":  # the ensemble cases of `nt_self`, as the shared baseline
        from neural_tangents import predict as nt_predict
        from neural_tangents import stax
        kfn = jax.jit(stax.serial(
            stax.Dense(512, W_std=W_STD, b_std=B_STD), stax.Relu(),
            stax.Dense(512, W_std=W_STD, b_std=B_STD), stax.Relu(),
            stax.Dense(1, W_std=W_STD, b_std=B_STD))[2], static_argnames="get")

        def once():
            pred = nt_predict.gradient_descent_mse_ensemble(kfn, x_tr, y_tr, diag_reg=1e-4)
            return block(pred(None, x_te, "ntk", compute_cov=True))
        out, compile_s = _timed(once)
        ts = [_timed(once)[1] for _ in range(repeats)]
    elif case["kind"] == "stages":
        t0 = time.perf_counter()
        ens = predict.gradient_descent_mse_ensemble(net, x_tr, y_tr, diag_reg=1e-4)
        block(ens.k_train_train["ntk"])
        info["train_kernels_s"] = time.perf_counter() - t0
        _, info["cholesky_s"] = _timed(lambda: ens.posterior("ntk", "cholesky").factor.chol)
        out, info["predict_s"] = _timed(lambda: ens(None, x_te, "ntk", compute_cov=True))
        ts = [info["train_kernels_s"] + info["cholesky_s"] + info["predict_s"]]
        compile_s = None
        info["note"] = (f"one run: train kernels {info['train_kernels_s']:.1f} s, Cholesky "
                        f"{info['cholesky_s']:.1f} s, test kernels + prediction "
                        f"{info['predict_s']:.1f} s")
    else:
        if case["kind"] == "ensemble":
            def once():
                ens = predict.gradient_descent_mse_ensemble(net, x_tr, y_tr, diag_reg=1e-4)
                return block(ens(None, x_te, "ntk", compute_cov=True))
        elif case["kind"] == "sweep":
            times = np.geomspace(1.0, 1e4, 10)

            def once():
                ens = predict.gradient_descent_mse_ensemble(net, x_tr, y_tr, diag_reg=1e-4)
                mean, cov = block(ens(times, x_te, "ntk", compute_cov=True))
                return mean[-1], cov[-1]
        else:
            k_dd = block(net.kernel(x_tr, None))
            k_td = block(net.kernel(x_te, x_tr))
            k_tt = block(net.kernel(x_te, None, "nngp"))

            def once():
                post = predict.gp_inference(k_dd, y_tr, diag_reg=1e-4, get="ntk")
                return block(post.predict(k_td, k_tt, get="ntk"))
        out, compile_s = _timed(once)
        ts = [_timed(once)[1] for _ in range(repeats)]
    mean, cov = out
    info["finite"] = bool(jnp.all(jnp.isfinite(mean)) and jnp.all(jnp.isfinite(cov)))
    info["check"] = float(jnp.mean(jnp.diagonal(cov)))
    row = timing_row(case["id"], compile_s, ts, **info)
    if case["kind"] == "ensemble" and _common.BACKEND != "nt":
        row.update(ensemble_limit(n, np.dtype(dtype)))  # after the row took the peak memory
    return row


if __name__ == "__main__":
    main("predict", all_cases, run_case, __file__, __doc__)
