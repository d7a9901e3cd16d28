"""``ntkgp fit data.csv --target COL --out model.joblib`` and ``ntkgp predict model.joblib
new.csv``: the scikit-learn estimators from the command line (public API only)."""

from __future__ import annotations

import csv
import io
import os
import sys
import tempfile
import time

import numpy as np

FORMAT = "ntkgp-model/1"


def _task(y, task):
    if task != "auto":
        return task
    try:
        np.asarray(y, np.float64)
        return "regression"
    except ValueError:
        return "classification"


def _atomic_write(path, write):
    """Write through a temporary file in the same folder, then rename: a failure or Ctrl-C
    never leaves a half-written file at ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".ntkgp-", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def cmd_fit(args) -> int:
    import jax
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import joblib
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from ntkgp import __version__, data, estimator

    if os.path.exists(args.out) and not args.force:
        raise ValueError(f"{args.out!r} exists; pass --force to replace it or choose another "
                         "--out.")
    features, x, y = data.read_csv(args.data, target=args.target)
    task = _task(y, args.task)
    cls = {("regression", "ntk"): estimator.NTKRegressor,
           ("regression", "nngp"): estimator.NNGPRegressor,
           ("classification", "ntk"): estimator.NTKClassifier,
           ("classification", "nngp"): estimator.NNGPClassifier}[task, args.kernel]
    if task == "regression":
        try:
            y = np.asarray(y, np.float64)
        except ValueError:
            raise ValueError(f"--task regression needs a numeric target; column {args.target!r} "
                             "has non-numeric values.") from None
    est = cls(args.activation, depth=args.depth, t=args.t,
              optimizer=None if args.no_fit else "fmin_l_bfgs_b",
              n_restarts_optimizer=args.restarts, solver=args.solver, random_state=args.seed)
    model = make_pipeline(StandardScaler(), est)
    t0 = time.perf_counter()
    model.fit(x, y)
    secs = time.perf_counter() - t0
    fitted = model[-1]
    payload = {"format": FORMAT, "version": __version__, "model": model, "features": features,
               "target": args.target, "task": task}
    _atomic_write(args.out, lambda p: joblib.dump(payload, p))
    hp = ", ".join(f"{k}={v:.4g}" for k, v in fitted.hyperparameters_.items())
    score = "R^2" if task == "regression" else "accuracy"
    print(f"ntkgp fit: {type(fitted).__name__} ({args.activation}, depth {args.depth}) on "
          f"{len(x)} rows x {len(features)} features of {args.data!r} ({task}) in {secs:.1f} s")
    if fitted.solver_ == "cg":
        cg = fitted.posterior_.cg
        print(f"  hyperparameters: {hp} (fitted on {min(len(x), fitted.max_fit_samples)} "
              f"rows); solved by conjugate gradients: {cg.iterations} iterations, relative "
              f"residual {cg.residuals[-1]:.1e}")
    else:
        print(f"  hyperparameters: {hp}; log marginal likelihood "
              f"{fitted.log_marginal_likelihood_value_:.4g}")
    print(f"  training {score}: {model.score(x, y):.4f}")
    print(f"  saved {args.out}")
    return 0


def load_model(path):
    import joblib
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path!r}; make one with `ntkgp fit`.")
    try:
        payload = joblib.load(path)
    except Exception as e:  # joblib raises many types for files that are not its own
        raise ValueError(f"{path!r} is not a model saved by `ntkgp fit` ({type(e).__name__}: "
                         f"{e}).") from None
    if not (isinstance(payload, dict) and payload.get("format") == FORMAT):
        raise ValueError(f"{path!r} is a joblib file but not an ntkgp model (expected format "
                         f"{FORMAT!r}); make one with `ntkgp fit`.")
    return payload


def cmd_predict(args) -> int:
    import jax
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    from ntkgp import data
    payload = load_model(args.model)
    model, task = payload["model"], payload["task"]
    _, x, _ = data.read_csv(args.data, features=payload["features"])
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    if task == "regression":
        mean, std = model.predict(x, return_std=True) if args.std else (model.predict(x), None)
        w.writerow(["prediction"] + (["std"] if args.std else []))
        for i in range(len(x)):
            w.writerow([f"{mean[i]:.10g}"] + ([f"{std[i]:.10g}"] if args.std else []))
    else:
        label = model.predict(x)
        classes = model[-1].classes_
        proba = model.predict_proba(x) if args.std else None
        w.writerow(["prediction"] + ([f"p_{c}" for c in classes] if args.std else []))
        for i in range(len(x)):
            w.writerow([label[i]] + ([f"{p:.6g}" for p in proba[i]] if args.std else []))
    if args.out:
        def write(p):
            with open(p, "w", newline="") as fh:
                fh.write(out.getvalue())
        _atomic_write(args.out, write)
        print(f"ntkgp predict: {len(x)} predictions written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(out.getvalue())
    return 0


def add_parsers(sub):
    f = sub.add_parser("fit", help="fit an NTK/NNGP estimator on a CSV file and save it")
    f.add_argument("data", help="CSV file with a header row; numeric feature columns")
    f.add_argument("--target", required=True, help="name of the target column")
    f.add_argument("--out", required=True, help="where to save the model (.joblib)")
    f.add_argument("--task", choices=("auto", "regression", "classification"), default="auto",
                   help="auto: regression for a numeric target, else classification")
    f.add_argument("--kernel", choices=("ntk", "nngp"), default="ntk",
                   help="ntk: trained infinitely wide network; nngp: Bayesian posterior")
    f.add_argument("--activation", default="relu",
                   choices=("relu", "erf", "gelu", "abs", "sin"))
    f.add_argument("--depth", type=int, default=2, help="hidden layers (default 2)")
    f.add_argument("--t", type=float, default=None, help="training time (default: converged)")
    f.add_argument("--no-fit", action="store_true",
                   help="keep W_std/b_std/diag_reg at their defaults (no marginal-likelihood fit)")
    f.add_argument("--restarts", type=int, default=0, help="random restarts of the fit")
    f.add_argument("--solver", choices=("auto", "cholesky", "cg"), default="auto",
                   help="exact factorization, or conjugate gradients on kernel tiles (memory "
                   "O(N)); auto: cg above 20000 rows (default auto)")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--force", action="store_true", help="replace an existing --out file")
    f.add_argument("--x64", action="store_true", help="compute in float64")
    f.set_defaults(func=cmd_fit)
    p = sub.add_parser("predict", help="predict with a model saved by `ntkgp fit`")
    p.add_argument("model", help="the .joblib file written by `ntkgp fit`")
    p.add_argument("data", help="CSV file with the model's feature columns (others ignored)")
    p.add_argument("--out", default=None, help="CSV file to write (default: standard output)")
    p.add_argument("--std", action="store_true",
                   help="add the predictive std (regression) or class probabilities")
    p.add_argument("--x64", action="store_true", help="compute in float64")
    p.set_defaults(func=cmd_predict)
