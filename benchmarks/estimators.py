#!/usr/bin/env python
"""The scikit-learn estimators against what a user would pick instead, timed in one process.

neural-tangents has no estimators; each case fits ntkgp's model and the scikit-learn model a
practitioner would reach for on the same rows, in the same process, and reports both fit times
(the median of ``--repeats`` fits after the first) and both test scores. The first fit in the
process (compilation included) is reported as the compile column: first fit minus the median.
Defaults everywhere: marginal-likelihood fit of W_std, b_std and diag_reg (L-BFGS-B), float32
(JAX's default precision; the data are cast).
  fit_ntk_classifier_digits1200: `NTKClassifier(depth=2)` on 1,200 of the 1,797 digits (pixels
      / 16, shuffled with seed 0), accuracy on the other 597; against `SVC()` (RBF, the
      default C and gamma).
  fit_nngp_regressor_diabetes300: `NNGPRegressor(depth=2)` on 300 rows of diabetes
      (standardized features and target), R^2 on the other 142; against
      `GaussianProcessRegressor` with an ARD RBF kernel times a constant plus white noise
      (`normalize_y=True`), the usual GP baseline.
  predict_std_nngp_regressor_diabetes300: `NNGPRegressor(depth=2)` fitted and predicting
      with `return_std=True, predictive=True` (the spread of new targets) on the 142
      held-out diabetes rows (fit and prediction timed together), against the same GPR as
      above with `return_std=True` (its WhiteKernel makes that the spread of new targets too).
  neural_kernel_in_gpr_diabetes300: scikit-learn's own `GaussianProcessRegressor` with
      ntkgp's `NeuralKernel(depth=2) + WhiteKernel()` (its hyperparameters fitted by
      scikit-learn's optimizer through the kernel's gradient), against the ARD RBF GPR above.
  cli_fit_digits1200: `ntkgp fit` on the 1,200 digits written as a CSV, as a new process
      (interpreter start, import, reading, compilation, fit, training score and saving the
      model), against a new Python process that reads the same CSV and fits the same
      pipeline (`StandardScaler` + `NTKClassifier(depth=2)`, what `ntkgp fit` builds).
  gridsearch_ntk_digits: `GridSearchCV(NTKClassifier(), {'depth': [1, 2, 3, 4]}, cv=5)` on all
      1,797 digits (fold sizes 1437/1438), one run: the whole search's time, and how many
      programs the marginal-likelihood fit compiled (one per depth would be ideal; without
      padding every fold size compiled its own).

Usage:
  python benchmarks/estimators.py [--cases REGEX] [--repeats 3] [--render]
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import main, timing_row  # noqa: E402


def all_cases():
    return [dict(id="fit_ntk_classifier_digits1200", nt_id=None),
            dict(id="fit_nngp_regressor_diabetes300", nt_id=None),
            dict(id="predict_std_nngp_regressor_diabetes300", nt_id=None),
            dict(id="neural_kernel_in_gpr_diabetes300", nt_id=None),
            dict(id="cli_fit_digits1200", nt_id=None),
            dict(id="gridsearch_ntk_digits", nt_id=None)]


def _digits():
    import numpy as np
    from sklearn.datasets import load_digits
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    p = np.random.default_rng(0).permutation(len(x))
    return x[p[:1200]], y[p[:1200]], x[p[1200:]], y[p[1200:]]


def _diabetes():
    import numpy as np
    from sklearn.datasets import load_diabetes
    x, y = load_diabetes(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    p = np.random.default_rng(0).permutation(len(x))
    return x[p[:300]], y[p[:300]], x[p[300:]], y[p[300:]]


def _timed_fits(make, x, y, repeats):
    """(first fit's seconds, [later fits' seconds], the last fitted model)."""
    ts = []
    for _ in range(1 + repeats):
        t0 = time.perf_counter()
        model = make().fit(x, y)
        ts.append(time.perf_counter() - t0)
    return ts[0], ts[1:], model


def _count_compiles(name):
    """A logging handler counting JAX's "Finished XLA compilation of jit(name)" messages."""
    import logging

    import jax
    jax.config.update("jax_log_compiles", True)

    class Count(logging.Handler):
        n = 0

        def emit(self, record):
            msg = record.getMessage()
            if msg.startswith("Finished XLA compilation of") and f"jit({name})" in msg:
                Count.n += 1
    handler = Count()
    logging.getLogger("jax").addHandler(handler)
    logging.getLogger("jax").setLevel(logging.DEBUG)
    for h in logging.getLogger("jax").handlers:  # keep the log itself off the console
        if h is not handler:
            h.setLevel(logging.CRITICAL)
    return Count


def run_case(case, repeats):
    import warnings

    import numpy as np

    from ntkgp.estimator import NNGPRegressor, NTKClassifier
    warnings.simplefilter("ignore")  # float64 -> float32 notices and the like
    if case["id"] == "fit_ntk_classifier_digits1200":
        from sklearn.svm import SVC
        xtr, ytr, xte, yte = _digits()
        first, ts, model = _timed_fits(lambda: NTKClassifier(depth=2), xtr, ytr, repeats)
        _, base_ts, base = _timed_fits(SVC, xtr, ytr, max(repeats, 3))
        info = dict(accuracy=float(model.score(xte, yte)),
                    baseline_accuracy=float(base.score(xte, yte)),
                    baseline_s=float(np.median(base_ts)), first_fit_s=first,
                    hyperparameters=model.hyperparameters_)
        info["note"] = (f"first fit {first:.2f} s; SVC fit {info['baseline_s']:.3f} s; "
                        f"accuracy {info['accuracy']:.4f} (SVC {info['baseline_accuracy']:.4f})")
        return timing_row(case["id"], first - float(np.median(ts)), ts, **info)
    if case["id"] == "fit_nngp_regressor_diabetes300":
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
        xtr, ytr, xte, yte = _diabetes()
        first, ts, model = _timed_fits(lambda: NNGPRegressor(depth=2), xtr, ytr, repeats)
        kernel = ConstantKernel() * RBF(np.ones(xtr.shape[1])) + WhiteKernel()
        _, base_ts, base = _timed_fits(
            lambda: GaussianProcessRegressor(kernel, normalize_y=True, random_state=0),
            xtr.astype(np.float64), ytr.astype(np.float64), max(repeats, 3))
        info = dict(r2=float(model.score(xte, yte)),
                    baseline_r2=float(base.score(xte.astype(np.float64), yte)),
                    baseline_s=float(np.median(base_ts)), first_fit_s=first)
        info["note"] = (f"first fit {first:.2f} s; GPR (ARD RBF) fit {info['baseline_s']:.2f} "
                        f"s; R^2 {info['r2']:.4f} (GPR {info['baseline_r2']:.4f})")
        return timing_row(case["id"], first - float(np.median(ts)), ts, **info)
    if case["id"] in ("predict_std_nngp_regressor_diabetes300",
                      "neural_kernel_in_gpr_diabetes300"):
        return _gp_case(case["id"], repeats)
    if case["id"] == "cli_fit_digits1200":
        return _cli_case(repeats)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV
    count = _count_compiles("value_and_grad")
    x, y = load_digits(return_X_y=True)
    t0 = time.perf_counter()
    search = GridSearchCV(NTKClassifier(), {"depth": [1, 2, 3, 4]}, cv=5).fit(
        (x / 16.0).astype(np.float32), y)
    total = time.perf_counter() - t0
    info = dict(fit_compiles=count.n, best_depth=int(search.best_params_["depth"]),
                cv_accuracy=float(search.best_score_))
    info["note"] = (f"20 fits + refit; marginal-likelihood programs compiled: {count.n} "
                    f"(4 depths); best depth {info['best_depth']}, CV accuracy "
                    f"{info['cv_accuracy']:.4f}")
    return timing_row(case["id"], None, [total], **info)


def _ard_gpr(d):
    import numpy as np
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
    kernel = ConstantKernel() * RBF(np.ones(d)) + WhiteKernel()
    return GaussianProcessRegressor(kernel, normalize_y=True, random_state=0)


def _gp_case(case_id, repeats):
    """Fit + predict with std (ntkgp's regressor) or fit (NeuralKernel inside scikit-learn's
    GPR), against the ARD RBF GPR doing the same, in this process."""
    import numpy as np

    from ntkgp.estimator import NeuralKernel, NNGPRegressor
    xtr, ytr, xte, yte = _diabetes()
    x64, xte64, y64 = (a.astype(np.float64) for a in (xtr, xte, ytr))

    def timed(make, fit_x, fit_y, test_x, **kw):
        ts = []
        for _ in range(1 + repeats):
            t0 = time.perf_counter()
            model = make().fit(fit_x, fit_y)
            mean, std = model.predict(test_x, return_std=True, **kw)
            ts.append(time.perf_counter() - t0)
        r2 = 1 - np.mean((mean - yte) ** 2) / np.var(yte)
        return ts, float(r2), float(np.mean(std))

    if case_id == "predict_std_nngp_regressor_diabetes300":
        # the spread of new targets, like the GPR's with its WhiteKernel
        ts, r2, std = timed(lambda: NNGPRegressor(depth=2), xtr, ytr, xte, predictive=True)
        what = "NNGPRegressor fit + predict(return_std=True, predictive=True)"
    else:
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import WhiteKernel
        ts, r2, std = timed(lambda: GaussianProcessRegressor(
            NeuralKernel(depth=2) + WhiteKernel(), normalize_y=True, random_state=0),
            x64, y64, xte64)
        what = "GPR(NeuralKernel(depth=2) + WhiteKernel()) fit + predict(return_std=True)"
    base_ts, base_r2, base_std = timed(lambda: _ard_gpr(xtr.shape[1]), x64, y64, xte64)
    base_ts = base_ts[1:]
    info = dict(r2=r2, mean_std=std, baseline_r2=base_r2, baseline_mean_std=base_std,
                baseline_s=float(np.median(base_ts)), first_s=ts[0])
    info["note"] = (f"{what}: first {ts[0]:.2f} s; GPR (ARD RBF) {info['baseline_s']:.2f} s; "
                    f"R^2 {r2:.4f} (GPR {base_r2:.4f}); mean std {std:.3f} "
                    f"(GPR {base_std:.3f})")
    return timing_row(case_id, ts[0] - float(np.median(ts[1:])), ts[1:], **info)


_SCRIPT = """import sys, numpy as np
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from ntkgp.estimator import NTKClassifier
d = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1)
make_pipeline(StandardScaler(), NTKClassifier(depth=2)).fit(d[:, :-1], d[:, -1].astype(int))
"""


def _cli_case(repeats):
    """`ntkgp fit` as a new process against a Python process that fits the same pipeline."""
    import subprocess
    import tempfile

    import numpy as np
    xtr, ytr, _, _ = _digits()
    env = dict(os.environ, NTKGP_PROGRESS="0")

    def timed(cmd):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        return time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as tmp:
        csv = os.path.join(tmp, "digits.csv")
        head = ",".join([f"p{i}" for i in range(xtr.shape[1])] + ["label"])
        np.savetxt(csv, np.column_stack([xtr, ytr]), delimiter=",", header=head,
                   comments="", fmt="%.6g")
        cli = os.path.join(os.path.dirname(sys.executable), "ntkgp")
        ts, base = [], []
        for i in range(repeats):
            ts.append(timed([cli, "fit", csv, "--target", "label", "--task", "classification",
                             "--out", os.path.join(tmp, f"m{i}.npz")]))
            base.append(timed([sys.executable, "-c", _SCRIPT, csv]))
    info = dict(baseline_s=float(np.median(base)))
    info["note"] = (f"`ntkgp fit` process {np.median(ts):.1f} s (start, import, read, compile, "
                    f"fit, training score, save); a Python process fitting the same "
                    f"StandardScaler + NTKClassifier(depth=2) pipeline {np.median(base):.1f} s")
    return timing_row("cli_fit_digits1200", None, ts, **info)


if __name__ == "__main__":
    main("estimators", all_cases, run_case, __file__, __doc__)
