#!/usr/bin/env python
"""Scale benchmarks: exact (Cholesky) vs matrix-free CG kernel regression, and Dask tiles.

neural-tangents has no counterpart (no iterative solver, no Dask), so the comparisons are
inside the suite, same session, same machine. FC NTK of one hidden ReLU layer (W_std=1.5,
b_std=0.05), NTK kernel regression at t=inf, diag_reg=1e-2 relative, synthetic data (8
standard-normal features, y = sin(2 x.w) + 0.1 noise) unless said:
  exact_N{n}_{f64,f32}: `gp_inference` on the whole training kernel (computed in tiles of
      2048), mean at 1000 test points; time end to end (kernel + factorization + prediction).
  exact_net_N{n}_f64: the same mean by `predict.Posterior(net, x, y, mode='ntkgp')`, which
      computes the training kernel itself (one program) and factors it: the memory a user
      of the exact path meets (kernel, one triangular factor above 8,192 points, a panel).
  cg_N{n}_{f64,f32}: `cg_inference` (pivoted Cholesky of rank min(1024, N/4); tol 1e-8 in
      float64, 1e-4 in float32) and the same 1000 test means; the note gives iterations and
      max |CG - exact| / max |exact| over the test means (the exact case of the same N and
      dtype saves its means to a temporary file, read here).
  cg_noprec_N5000_f64: the same without a preconditioner.
  cg_diamonds_f32: ggplot2/diamonds, all 53,940 rows (log price from the 6 numeric columns,
      standardized), 45,000 train / 8,940 test; rank 1024, tol 1e-3; test RMSE in the note.
  cg_synth_N100000_f32: 100,000 training points; rank 1024, tol 1e-3; test RMSE on 2000
      held-out points against the noise floor 0.1.
  dask_{single,local2}_N8000_f32: the 36 upper tiles (1000 x 1000) of an 8000-point kernel:
      one process (`batching.batch`, XLA using both cores; second call timed) vs a 2-worker
      Dask `LocalCluster` (one single-threaded JAX per worker) writing a zarr store;
      cluster start-up in the note.
Peak memory = the case process's max RSS (includes ~0.4 GB for importing JAX).

Usage:
  python benchmarks/scale.py [--cases REGEX] [--repeats 1] [--render]
"""

import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import main, timing_row  # noqa: E402

SIZES = (2000, 5000, 10000, 20000)
N_TEST = 1000
DIAG_REG = 1e-2
RANK = 1024
SAVED = os.path.join(tempfile.gettempdir(), "ntkgp_scale_exact_{n}_{dt}.npy")


def all_cases():
    cases = [dict(id=f"exact_N{n}_f64", how="exact", n=n, nt_id=None) for n in SIZES]
    cases += [dict(id=f"cg_N{n}_f64", how="cg", n=n, nt_id=None) for n in SIZES[:3]]
    cases += [dict(id="exact_N20000_f32", how="exact", n=20000, nt_id=None),
              dict(id="cg_N20000_f32", how="cg", n=20000, nt_id=None),
              dict(id="exact_net_N20000_f64", how="exact_net", n=20000, nt_id=None),
              dict(id="exact_net_N30000_f64", how="exact_net", n=30000, nt_id=None),
              dict(id="cg_noprec_N5000_f64", how="noprec", n=5000, nt_id=None),
              dict(id="cg_diamonds_f32", how="diamonds", nt_id=None),
              dict(id="cg_synth_N100000_f32", how="synth", n=100000, nt_id=None),
              dict(id="dask_single_N8000_f32", how="single", n=8000, nt_id=None),
              dict(id="dask_local2_N8000_f32", how="local2", n=8000, nt_id=None)]
    return cases


def _synthetic(n, d=8, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    w = np.random.default_rng(99).standard_normal(d) / np.sqrt(d)
    return x, np.sin(2.0 * x @ w) + 0.1 * rng.standard_normal(n)


def run_case(case, repeats):
    import jax
    if case["id"].endswith("f64"):
        jax.config.update("jax_enable_x64", True)
    import numpy as np

    from ntkgp import batching, nn, predict
    net = nn.serial(nn.Dense(1, W_std=1.5, b_std=0.05), nn.Relu(),
                    nn.Dense(1, W_std=1.5, b_std=0.05))
    how, info = case["how"], {}
    dt = np.float64 if case["id"].endswith("f64") else np.float32
    t0 = time.perf_counter()
    if how in ("exact", "exact_net", "cg", "noprec"):
        n = case["n"]
        x, y = _synthetic(n + N_TEST)
        x = x.astype(dt)
        xtr, ytr, xte = x[:n], y[:n], x[n:]
        if how == "exact":
            kfn = batching.batch(net.kernel, 2048)
            # the NTK as the GP kernel: the same mean as the trained network at t=inf
            post = predict.gp_inference(kfn(xtr, None, get="ntk"), ytr, diag_reg=DIAG_REG)
            mean = np.asarray(post.predict(kfn(xte, xtr, get="ntk")))
            np.save(SAVED.format(n=n, dt=np.dtype(dt).name), mean)
        elif how == "exact_net":
            post = predict.Posterior(net, xtr, ytr, mode="ntkgp", solver="cholesky",
                                     diag_reg=DIAG_REG)
            mean = np.asarray(post.predict(xte))
            info["note"] = "kernel computed by the posterior"
        else:
            post = predict.cg_inference(net.kernel, xtr, ytr, get="ntk", diag_reg=DIAG_REG,
                                        tol=1e-8 if dt == np.float64 else 1e-4,
                                        max_iter=3000, rank=min(RANK, n // 4),
                                        preconditioner=None if how == "noprec" else
                                        "pivoted_cholesky")
            mean = post.predict(xte)
            info["iterations"] = int(post.solve_result.iterations)
            info["note"] = f"{post.solve_result.iterations} iterations"
            saved = SAVED.format(n=n, dt=np.dtype(dt).name)
            if os.path.exists(saved):
                ex = np.load(saved)
                err = np.max(np.abs(mean - ex)) / np.max(np.abs(ex))
                info["rel_diff_exact"] = float(err)
                info["note"] += f"; max rel diff to exact {err:.1e}"
        ts = [time.perf_counter() - t0]
    elif how in ("diamonds", "synth"):
        from ntkgp import data
        if how == "diamonds":
            x, y = data.rdataset("ggplot2", "diamonds", target="price", standardize=False)
            x = (x - x.mean(0)) / x.std(0)
            y = np.log(y)
            perm = np.random.default_rng(0).permutation(len(x))
            x, y = x[perm].astype(dt), (y[perm] - y.mean()) / y.std()
            ntr = 45000
        else:
            x, y = _synthetic(case["n"] + 2000)
            x = x.astype(dt)
            ntr = case["n"]
        post = predict.cg_inference(net.kernel, x[:ntr], y[:ntr], get="ntk",
                                    diag_reg=DIAG_REG, tol=1e-3, max_iter=500, rank=RANK)
        fit_s = time.perf_counter() - t0
        mean = post.predict(x[ntr:])
        rmse = float(np.sqrt(np.mean((mean - y[ntr:]) ** 2)))
        info["note"] = (f"N={ntr}; {post.solve_result.iterations} iterations, residual "
                        f"{post.solve_result.residual:.1e}; solve {fit_s:.0f} s; test RMSE "
                        f"{rmse:.3f} ({len(x) - ntr} points, test targets' std "
                        f"{float(np.std(y[ntr:])):.2f}"
                        + (", noise floor 0.1)" if how == "synth" else ")"))
        ts = [time.perf_counter() - t0]
    else:
        x = _synthetic(case["n"])[0].astype(dt)
        ref = None
        if how == "single":
            for _ in range(2):  # first call compiles
                t1 = time.perf_counter()
                ref = batching.batch(net.kernel, 1000, progress=False)(x, None, get="ntk")
                ts = [time.perf_counter() - t1]
        else:
            import distributed

            from ntkgp import distributed as nd
            from ntkgp._src.scale.dask_kernel import connect
            cl, _ = connect(None)
            cl.wait_for_workers(2)
            start_s = time.perf_counter() - t0
            with tempfile.TemporaryDirectory() as d:
                for name in ("first", "second"):  # the first call compiles on each worker
                    t1 = time.perf_counter()
                    k = nd.kernel_to_zarr(net.kernel, x, path=os.path.join(d, name),
                                          get="ntk", tile_size=1000, client=cl,
                                          progress=False)
                    ts = [time.perf_counter() - t1]
                    if name == "first":
                        first_s = ts[0]
                ref = np.asarray(k[:])
            cl.close()
            info["note"] = (f"second call into a new store (first, with the workers' "
                            f"compilation: {first_s:.1f} s); cluster start {start_s:.1f} s not "
                            f"included; zarr writes included; distributed "
                            f"{distributed.__version__}")
        info["note"] = (info.get("note", "") + f"; 36 tiles, kernel sum {float(ref.sum()):.6e}"
                        ).lstrip("; ")
    return timing_row(case["id"], None, ts, **info)


if __name__ == "__main__":
    main("scale", all_cases, run_case, __file__, __doc__)
