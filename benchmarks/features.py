#!/usr/bin/env python
"""Random-feature and Nystrom regression against the exact solve, CG, and scikit-learn's
Nystroem + ridge.

neural-tangents has no counterpart (no random features), so every comparison is inside one
case's process. FC NTK of one hidden ReLU layer (W_std=1.5, b_std=0.05) as in the scale suite,
mode 'ntk' at t=inf, diag_reg=1e-2 relative, float32, `FeatureSolver(n_features=m)` (NTK
features of width D = 2m + 1) and `FeatureSolver(m, kind='nystrom')` (`solver='nystrom'`:
the exact NTK on m landmark rows, D = m). Each case also fits scikit-learn's `Nystroem` (RBF,
gamma =
1/d, D components on the same rows) + `RidgeCV` (alphas 1e-3..1e2; above 100,000 rows the
alpha RidgeCV picks on the first 20,000, then `Ridge` on all), the usual choice for kernel
regression at this size. Times are end to end (features or kernels, solve, test means).
  rf_diamonds_N20000_f32: ggplot2/diamonds (log price from the 6 numeric columns,
      standardized), 20,000 train / 5,000 test rows; exact (`gp_inference` on the whole kernel,
      tiles of 2048), CG (pivoted-Cholesky rank 1024, tol 1e-3) and features m=2048.
  rf_synth_N20000_f32: the scale suite's synthetic data (8 standard-normal features,
      y = sin(2 x.w) + 0.1 noise), same four solvers: a problem whose exact kernel has many
      dimensions above the noise (features saturate; the warning's effective dimension is in
      the note).
  rf_synth_N1000000_f32: 10^6 synthetic rows, features m=1024 vs Nystroem (D = 2049); test
      RMSE on 2,000 held-out rows (noise floor 0.1).
  rf_fashion_mnist_f32: Fashion-MNIST (Debian package dataset-fashion-mnist), 60,000 train /
      10,000 test 784-pixel images in [0, 1], one-hot targets, features m=2048; test accuracy
      against Nystroem + ridge (D = 4097) on the same rows.
  rf_synth_N1000000_dask_f32: the 10^6 synthetic rows written to a zarr store (chunks of
      100,000 rows) and fitted through `dask.array.from_zarr` (read a chunk at a time,
      never whole), features m=256 (D = 513), against the same fit on the rows in memory,
      timed alternately (fit + test means, `repeats` each): the cost of reading the rows
      from disk, and the largest difference of the test means (the same blocks of rows
      give the same features: 0 expected); then once with a 2-worker LocalCluster's client
      active, where each chunk's features and sums are a task on a worker (reported).
The regression cases also run what a practitioner would: `NTKRegressor` with
`activation='auto'` (the activation and the hyperparameters chosen by maximized evidence on
2,000 rows) and `solver='features'` (m random directions) or `'nystrom'` (D - 1 landmarks,
sklearn's dimension); `est_features` / `est_nystrom` in the note. Fashion-MNIST runs
`NTKClassifier(activation='auto', solver='features')` the same way (`est_features`).
Peak memory = the case process's max RSS.

Usage:
  python benchmarks/features.py [--cases REGEX] [--repeats 1] [--render]
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import main, timing_row  # noqa: E402

DIAG_REG = 1e-2


def all_cases():
    return [dict(id="rf_diamonds_N20000_f32", data="diamonds", n=20000, m=2048, exact=True,
                 nt_id=None, timeout=1200),
            dict(id="rf_synth_N20000_f32", data="synth", n=20000, m=2048, exact=True,
                 nt_id=None, timeout=1200),
            dict(id="rf_synth_N1000000_f32", data="synth", n=1000000, m=1024, exact=False,
                 nt_id=None, timeout=1800),
            dict(id="rf_fashion_mnist_f32", data="fashion", n=60000, m=2048, exact=False,
                 nt_id=None),
            dict(id="rf_synth_N1000000_dask_f32", data="synth", n=1000000, m=256,
                 lazy=True, nt_id=None, timeout=1200)]


def _data(case):
    import numpy as np

    from ntkgp import data
    if case["data"] == "diamonds":
        x, y = data.rdataset("ggplot2", "diamonds", target="price", standardize=False)
        x = (x - x.mean(0)) / x.std(0)
        y = np.log(y)
        perm = np.random.default_rng(0).permutation(len(x))
        x, y = x[perm], (y[perm] - y.mean()) / y.std()
        n = case["n"]
        return x[:n], y[:n], x[n:n + 5000], y[n:n + 5000]
    if case["data"] == "synth":
        n, d = case["n"], 8
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n + 2000, d))
        w = np.random.default_rng(99).standard_normal(d) / np.sqrt(d)
        y = np.sin(2.0 * x @ w) + 0.1 * rng.standard_normal(n + 2000)
        return x[:n], y[:n], x[n:], y[n:]
    xtr, ltr = data.load_images("fashion_mnist", "train")
    xte, lte = data.load_images("fashion_mnist", "test")
    return (xtr.reshape(len(xtr), -1), np.eye(10)[ltr], xte.reshape(len(xte), -1),
            np.eye(10)[lte])


def _score(mean, y):
    import numpy as np
    if y.ndim == 2:  # classes: accuracy
        return float(np.mean(np.argmax(mean, 1) == np.argmax(y, 1)))
    return float(np.sqrt(np.mean((mean - y) ** 2)))


def _lazy_case(case, repeats):
    """The same random-feature fit from a zarr store through Dask and from memory."""
    import tempfile

    import dask.array as da
    import numpy as np
    import zarr

    from ntkgp import linalg, nn, predict
    net = nn.serial(nn.Dense(1, W_std=1.5, b_std=0.05), nn.Relu(),
                    nn.Dense(1, W_std=1.5, b_std=0.05))
    xtr, ytr, xte, yte = (a.astype(np.float32) for a in _data(case))
    with tempfile.TemporaryDirectory() as tmp:
        store = zarr.open_array(os.path.join(tmp, "x.zarr"), mode="w", shape=xtr.shape,
                                chunks=(100000, xtr.shape[1]), dtype="f4")
        store[:] = xtr
        lazy = da.from_zarr(os.path.join(tmp, "x.zarr"))

        def fit(rows, y=ytr):
            post = predict.Posterior(net, rows, y, mode="ntk", diag_reg=DIAG_REG,
                                     solver=linalg.FeatureSolver(case["m"]))
            return np.asarray(post.predict(xte))

        fit(xtr[:4096], ytr[:4096])  # compile the programs of a block
        ts, diff = {"memory": [], "dask": []}, 0.0
        for _ in range(max(1, repeats)):
            for name, rows in (("memory", xtr), ("dask", lazy)):
                t0 = time.perf_counter()
                means = fit(rows)
                ts[name].append(time.perf_counter() - t0)
                if name == "memory":
                    ref = means
                else:
                    diff = max(diff, float(np.max(np.abs(means - ref))))
        cluster_s, cluster_diff = _on_cluster(fit, lazy, ref)
    med = {k: sorted(v)[len(v) // 2] for k, v in ts.items()}
    rmse = _score(ref, yte)
    note = (f"N={len(xtr)}: fit + test means {med['dask']:.1f} s from the zarr store through "
            f"Dask against {med['memory']:.1f} s from memory (medians of {len(ts['dask'])}); "
            f"test RMSE {rmse:.4f}; largest difference of the test means {diff:.1e}; with a "
            f"LocalCluster of 2 one-thread workers active (the chunks' features and sums as "
            f"its tasks) {cluster_s:.1f} s, test means within {cluster_diff:.1e}")
    return timing_row(case["id"], None, ts["dask"], memory_s=med["memory"],
                      dask_over_memory=med["dask"] / med["memory"], max_diff=diff,
                      cluster_s=cluster_s, cluster_max_diff=cluster_diff, note=note)


def _on_cluster(fit, lazy, ref):
    """``(seconds, largest difference to ref)`` of the fit with a 2-worker LocalCluster's
    client active (the second fit: the first compiles on the workers)."""
    import numpy as np
    from distributed import Client, LocalCluster
    env = {"JAX_PLATFORMS": "cpu", "NTKGP_PROGRESS": "0",
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, env=env) as cluster, Client(cluster) as client:
        client.wait_for_workers(2)
        fit(lazy)
        t0 = time.perf_counter()
        means = fit(lazy)
        return time.perf_counter() - t0, float(np.max(np.abs(means - ref)))


def run_case(case, repeats):
    import warnings
    if case.get("lazy"):
        return _lazy_case(case, repeats)

    import numpy as np
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import Ridge, RidgeCV

    from ntkgp import batching, linalg, nn, predict
    from ntkgp.estimator import NTKClassifier, NTKRegressor
    net = nn.serial(nn.Dense(1, W_std=1.5, b_std=0.05), nn.Relu(),
                    nn.Dense(1, W_std=1.5, b_std=0.05))
    xtr, ytr, xte, yte = (a.astype(np.float32) for a in _data(case))
    metric = "accuracy" if ytr.ndim == 2 else "RMSE"
    info, times = {"metric": metric}, {}

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", linalg.FeatureSaturationWarning)
        post = predict.Posterior(net, xtr, ytr, mode="ntk", diag_reg=DIAG_REG,
                                 solver=linalg.FeatureSolver(case["m"]))
    info["features"] = _score(np.asarray(post.predict(xte)), yte)
    times["features"] = time.perf_counter() - t0
    d_features = int(post.factor.gram.shape[0])
    info["effective_dim"] = post.factor.effective_dim
    info["saturated"] = any(issubclass(w.category, linalg.FeatureSaturationWarning)
                            for w in caught)
    del post

    t0 = time.perf_counter()
    post = predict.Posterior(net, xtr, ytr, mode="ntk", diag_reg=DIAG_REG,
                             solver=linalg.FeatureSolver(case["m"], kind="nystrom"))
    info["nystrom"] = _score(np.asarray(post.predict(xte)), yte)
    times["nystrom"] = time.perf_counter() - t0
    info["nystrom_effective_dim"] = post.factor.effective_dim
    del post

    t0 = time.perf_counter()
    ny = Nystroem(gamma=1.0 / xtr.shape[1], n_components=d_features, random_state=0)
    z = ny.fit_transform(xtr)
    if len(z) > 100000:  # RidgeCV's SVD would copy the N x D features: alpha from a subset
        alpha = RidgeCV(alphas=np.logspace(-3, 2, 6)).fit(z[:20000], ytr[:20000]).alpha_
        ridge = Ridge(alpha=alpha, solver="cholesky").fit(z, ytr)
    else:
        ridge = RidgeCV(alphas=np.logspace(-3, 2, 6)).fit(z, ytr)
    info["sklearn"] = _score(ridge.predict(ny.transform(xte)), yte)
    times["sklearn"] = time.perf_counter() - t0
    del z

    # what a practitioner runs: the estimator, its kernel's hyperparameters and activation
    # chosen by maximized evidence on max_fit_samples rows, then the same feature solvers
    # (classes: the classifier on random features only)
    for solver, m in ((("features", case["m"]), ("nystrom", d_features - 1))
                      if ytr.ndim == 1 else (("features", case["m"]),)):
        t0 = time.perf_counter()
        if ytr.ndim == 1:
            est = NTKRegressor(solver=solver, n_features=m, activation="auto", random_state=0)
            info[f"est_{solver}"] = _score(est.fit(xtr, ytr).predict(xte), yte)
        else:
            est = NTKClassifier(solver=solver, n_features=m, activation="auto",
                                random_state=0).fit(xtr, np.argmax(ytr, 1))
            info[f"est_{solver}"] = float(np.mean(est.predict(xte) == np.argmax(yte, 1)))
        times[f"est_{solver}"] = time.perf_counter() - t0
        info[f"est_{solver}_arch"] = f"{est.activation_} depth {est.depth_}"
        del est

    if case["exact"]:
        t0 = time.perf_counter()
        kfn = batching.batch(net.kernel, 2048)
        post = predict.gp_inference(kfn(xtr, None, get="ntk"), ytr, diag_reg=DIAG_REG)
        info["exact"] = _score(np.asarray(post.predict(kfn(xte, xtr, get="ntk"))), yte)
        times["exact"] = time.perf_counter() - t0
        del post
        t0 = time.perf_counter()
        post = predict.cg_inference(net.kernel, xtr, ytr, get="ntk", diag_reg=DIAG_REG,
                                    tol=1e-3, max_iter=500, rank=1024)
        info["cg"] = _score(np.asarray(post.predict(xte)), yte)
        times["cg"] = time.perf_counter() - t0
    info["times"] = times
    info["nystrom_s"] = times["nystrom"]
    parts = [f"{k} {info[k]:.4f} in {times[k]:.1f} s" for k in
             ("features", "nystrom", "exact", "cg", "sklearn", "est_features", "est_nystrom")
             if k in info]
    info["note"] = (f"N={len(xtr)}, test {metric}: " + "; ".join(parts)
                    + f"; random features D={d_features}, effective dim "
                    f"{info['effective_dim']:.0f}" + (" (saturated)" if info["saturated"] else "")
                    + f"; Nystrom D={case['m']}, effective dim "
                    f"{info['nystrom_effective_dim']:.0f}"
                    + (f"; estimators (est_): {info['est_features_arch']} chosen by evidence"
                       if "est_features_arch" in info else ""))
    return timing_row(case["id"], None, [times["features"]], **info)


if __name__ == "__main__":
    main("features", all_cases, run_case, __file__, __doc__)
