"""``ntkgp fit data.csv --target COL --out model.npz`` and ``ntkgp predict model.npz new.csv``:
the scikit-learn estimators from the command line (public API only). Model files hold data
only (`ntkgp.estimator.save_model`): loading one runs no code from it."""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
import time

import numpy as np

from ntkgp._src.nn.spec import ACTIVATIONS
from ntkgp._src.util import write_atomic


def _task(y, task, target):
    """The task for target cells ``y`` (strings): as given, or inferred and said on one line.
    A column that is numeric but for a few cells is an error naming them (not labels)."""
    numeric = []
    for v in y:
        try:
            numeric.append(np.isfinite(float(v)))
        except ValueError:
            numeric.append(False)
    numeric = np.asarray(numeric)
    if task == "auto":
        if numeric.all():
            task = "regression"
            print(f"ntkgp fit: task regression: target {target!r} is numeric "
                  f"({len(set(y))} distinct values); pass --task classification if they are "
                  "class codes.")
        elif numeric.mean() > 0.5:
            bad = np.flatnonzero(~numeric)
            cells = ", ".join(f"line {i + 2} ({y[i]!r})" for i in bad[:3])
            raise ValueError(f"target {target!r} is numeric except in {len(bad)} cell(s): "
                             f"{cells}{', ...' if len(bad) > 3 else ''}. Fix or drop those "
                             "rows for regression, or pass --task classification if the "
                             "column holds labels.")
        else:
            task = "classification"
            print(f"ntkgp fit: task classification: target {target!r} holds labels "
                  f"({len(set(y))} classes); pass --task regression for a numeric target.")
    if task == "regression" and not numeric.all():
        i = int(np.flatnonzero(~numeric)[0])
        raise ValueError(f"--task regression needs a numeric target; column {target!r} has "
                         f"{y[i]!r} on line {i + 2}.")
    return task


def cmd_fit(args) -> int:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ntkgp._src import data
    from ntkgp._src.estimator import classifier, persist, regressor

    if os.path.exists(args.out) and not args.force:
        raise ValueError(f"{args.out!r} exists; pass --force to replace it or choose another "
                         "--out.")
    features, x, y = data.read_csv(args.data, target=args.target)
    task = _task(y, args.task, args.target)
    cls = {("regression", "ntk"): regressor.NTKRegressor,
           ("regression", "nngp"): regressor.NNGPRegressor,
           ("classification", "ntk"): classifier.NTKClassifier,
           ("classification", "nngp"): classifier.NNGPClassifier}[task, args.mode]
    if task == "regression":
        y = np.asarray(y, np.float64)
    est = cls(args.activation, depth=args.depth, t=args.t,
              optimizer=None if args.no_fit else "fmin_l_bfgs_b",
              n_restarts_optimizer=args.restarts, solver=args.solver,
              n_features=args.n_features, random_state=args.seed)
    model = make_pipeline(StandardScaler(), est)
    t0 = time.perf_counter()
    model.fit(x, y)
    secs = time.perf_counter() - t0
    fitted = model[-1]
    persist.save_model(model, args.out, overwrite=True,
                         info={"features": features, "target": args.target, "task": task})
    hp = ", ".join(f"{k}={v:.4g}" for k, v in fitted.hyperparameters_.items())
    score = "R^2" if task == "regression" else "accuracy"
    depth = (f"depth {fitted.depth_}" + " (auto)" * (args.depth == "auto"))
    act = fitted.activation_ + " (auto)" * (args.activation == "auto")
    print(f"ntkgp fit: {type(fitted).__name__} ({act}, {depth}) on "
          f"{len(x)} rows x {len(features)} features of {args.data!r} ({task}) in {secs:.1f} s")
    solved = fitted.posterior_.solve_result
    if solved.solver == "cg":
        print(f"  hyperparameters: {hp} (fitted on {min(len(x), fitted.max_fit_samples)} "
              f"rows); solved by conjugate gradients: {solved.iterations} iterations, "
              f"relative residual {solved.residual:.1e}")
    elif solved.solver in ("features", "nystrom"):
        what = ("random features per layer" if solved.solver == "features" else
                "Nystrom landmarks")
        print(f"  hyperparameters: {hp} (fitted on {min(len(x), fitted.max_fit_samples)} "
              f"rows); solved on {args.n_features} {what}")
    else:
        print(f"  hyperparameters: {hp}; log marginal likelihood "
              f"{fitted.log_marginal_likelihood_value_:.4g}")
    print(f"  training {score}: {model.score(x, y):.4f}")
    print(f"  saved {args.out}")
    return 0


def _open_model(path, x64):
    """The saved model's pipeline and info, computed in the precision it was fitted in."""
    import jax

    from ntkgp._src.estimator import persist
    saved = persist.read_model(path)
    info = saved.info
    if not (isinstance(info.get("features"), list) and info.get("task") in
            ("regression", "classification")):
        raise ValueError(f"{path!r} is an ntkgp model but not one saved by `ntkgp fit` (no "
                         "feature names and task); use ntkgp.estimator.load_model in Python.")
    if saved.dtype == "float64" and not x64:
        jax.config.update("jax_enable_x64", True)
        print("ntkgp predict: the model was fitted in float64 (--x64); computing in float64.",
              file=sys.stderr)
    return saved.build(), info


def cmd_predict(args) -> int:
    from ntkgp._src import data
    model, info = _open_model(args.model, args.x64)
    task = info["task"]
    _, x, _ = data.read_csv(args.data, features=info["features"])
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    if task == "regression":
        reg = model[-1]
        mean, std = model.predict(x, return_std=True) if args.std else (model.predict(x), None)
        head, cols = ["prediction"], [mean]
        if args.std:
            head, cols = head + ["std_latent"], cols + [std]
            print("ntkgp predict: std_latent is the spread of the noise-free function (for "
                  f"the {type(reg).__name__}"
                  f"{'' if reg.mode == 'nngp' else ', over initializations'}); it leaves out "
                  f"the fitted noise (std {float(np.sqrt(reg.noise_variance_[0])):.4g}); "
                  "--interval gives intervals for new targets.", file=sys.stderr)
        if args.interval is not None:
            lo, hi = reg.predict_interval(model[:-1].transform(x), args.interval)
            pct = f"{100 * args.interval:g}"
            head, cols = head + [f"lower_{pct}", f"upper_{pct}"], cols + [lo, hi]
            print(f"ntkgp predict: lower_{pct}/upper_{pct}: {pct}% predictive interval of a new "
                  "target (the fitted Gaussian process's posterior plus the fitted noise).",
                  file=sys.stderr)
        w.writerow(head)
        for i in range(len(x)):
            w.writerow([f"{c[i]:.10g}" for c in cols])
    else:
        if args.interval is not None:
            raise ValueError("--interval is for regression models; a classifier gives class "
                             "probabilities with --std.")
        label = model.predict(x)
        classes = model[-1].classes_
        proba = model.predict_proba(x) if args.std else None
        w.writerow(["prediction"] + ([f"p_{c}" for c in classes] if args.std else []))
        for i in range(len(x)):
            w.writerow([label[i]] + ([f"{p:.6g}" for p in proba[i]] if args.std else []))
    if args.out:
        write_atomic(args.out, lambda fh: fh.write(out.getvalue().encode()))
        print(f"ntkgp predict: {len(x)} predictions written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(out.getvalue())
    return 0


def _depth(text):
    """``--depth``: a number of hidden layers >= 1, or 'auto'."""
    if text == "auto":
        return text
    try:
        depth = int(text)
    except ValueError:
        depth = 0
    if depth < 1:
        raise argparse.ArgumentTypeError(f"expected a number of hidden layers >= 1 or 'auto'; "
                                         f"got {text!r}")
    return depth


def add_parsers(sub):
    f = sub.add_parser("fit", help="fit an NTK/NNGP estimator on a CSV file and save it")
    f.add_argument("data", help="CSV file with a header row; numeric feature columns")
    f.add_argument("--target", required=True, help="name of the target column")
    f.add_argument("--out", required=True,
                   help="where to save the model (.npz: arrays and a JSON description, no code)")
    f.add_argument("--task", choices=("auto", "regression", "classification"), default="auto",
                   help="auto: regression for a numeric target, classification for labels "
                   "(said on one line)")
    f.add_argument("--mode", choices=("ntk", "nngp"), default="ntk",
                   help="ntk: trained infinitely wide network; nngp: Bayesian posterior")
    f.add_argument("--activation", default="relu", choices=tuple(ACTIVATIONS) + ("auto",),
                   help="default relu; auto: the activation of the largest fitted marginal "
                   "likelihood (one fit each; with --depth auto, one per pair)")
    f.add_argument("--depth", type=_depth, default=2,
                   help="hidden layers (default 2), or 'auto': the depth from 1 to 5 of the "
                   "largest fitted marginal likelihood (five fits)")
    f.add_argument("--t", type=float, default=None, help="training time (default: converged)")
    f.add_argument("--no-fit", action="store_true",
                   help="keep W_std/b_std/diag_reg at their defaults (no marginal-likelihood fit)")
    f.add_argument("--restarts", type=int, default=0, help="random restarts of the fit")
    f.add_argument("--solver", choices=("auto", "cholesky", "cg", "features", "nystrom"),
                   default="auto",
                   help="exact factorization; conjugate gradients on kernel tiles (memory "
                   "O(N)); or regression on random or Nystrom features of the network (time "
                   "O(N D^2), for millions of rows); auto: cg above 20000 rows")
    f.add_argument("--n-features", type=int, default=2048,
                   help="random directions per activation layer (--solver features) or "
                   "landmarks (--solver nystrom)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--force", action="store_true", help="replace an existing --out file")
    f.set_defaults(func=cmd_fit)
    p = sub.add_parser("predict", help="predict with a model saved by `ntkgp fit`")
    p.add_argument("model", help="the .npz model file written by `ntkgp fit`")
    p.add_argument("data", help="CSV file with the model's feature columns (others ignored)")
    p.add_argument("--out", default=None, help="CSV file to write (default: standard output)")
    p.add_argument("--std", action="store_true",
                   help="add the std of the noise-free function (regression: column "
                   "std_latent) or class probabilities")
    p.add_argument("--interval", type=float, default=None, metavar="COVERAGE",
                   help="regression: add the central predictive interval of new targets with "
                   "this coverage, fitted noise included (e.g. 0.95: columns lower_95, "
                   "upper_95)")
    p.set_defaults(func=cmd_predict)
