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


if __name__ == "__main__":
    main("estimators", all_cases, run_case, __file__, __doc__)
