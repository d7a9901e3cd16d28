"""Every benchmark target the project set, measured from the saved rows.

A target is a number computed from one suite's saved rows (a time ratio against
neural-tangents measured in the same session, a ratio inside the suite, an accuracy, a slope)
and a bound on it. `evaluate` gives each target's measured value and status: **met**,
**missed**, or *not measured* when its rows are missing or failed. RESULTS.md opens with this
table (`render`), so a claim in the docs or the README can be checked against one place.
"""

import math

from _common import median as _median
from _common import nt_ratio as _nt_ratio

LE, GE, IN = "≤", "≥", "in"
# every activation with a closed-form kernel: within 1.5x the ReLU network, <= 0.3x
# neural-tangents; `elementwise_closed_form` is a user's `nngp_fn` (with jnp.arcsin)
# differentiated by autodiff in both libraries, held to the same bounds
_ACTIVATIONS = ("sign", "cos", "rbf", "exp", "gaussian", "gabor", "sigmoid_like",
                "exp_normalized", "polynomial", "monomial3", "hermite3", "rectified_monomial2",
                "erf", "gelu", "sin", "abrelu", "leaky_relu", "abs")
_ACT_BOUNDS = {}  # activation -> (vs ReLU, vs neural-tangents) where not (1.5, 0.3)
_ACT_CASES = [(a, "f32") for a in _ACTIVATIONS + ("elementwise_closed_form",)] + [
    (a, "f64") for a in ("erf", "gelu")]


def nt_ratio(case):
    """ntkgp median / neural-tangents median of one case (same session, alternating)."""
    def measure(rows):
        """(value, date, detail) or None."""
        row = rows.get(case)
        ratio = _nt_ratio(row)
        if ratio is None:
            return None
        return ratio, row.get("date"), f"{_median(row, 'ntkgp'):.3g} s / {_median(row, 'nt'):.3g} s"
    measure.nt_case, measure.cases = case, [case]
    return measure


def auto_vs_best(auto, candidates):
    """ntkgp's `implementation='auto'` time over the best of the fixed implementations."""
    def measure(rows):
        us = _median(rows.get(auto), "ntkgp")
        best = [(_median(rows.get(c), "ntkgp"), c) for c in candidates]
        best = [b for b in best if b[0] is not None]
        if us is None or len(best) < len(candidates):
            return None
        t, which = min(best)
        return us / t, rows[auto].get("date"), f"{us:.3g} s / {t:.3g} s ({which.split('_')[3]})"
    measure.cases = [auto, *candidates]
    return measure


def field(case, key, scale=1.0, unit=""):
    """A number the case saved in its ntkgp row (e.g. peak memory, CG's difference to the
    exact solve)."""
    def measure(rows):
        row = rows.get(case) or {}
        v = (row.get("ntkgp") or {}).get(key)
        if v is None or "error" in (row.get("ntkgp") or {}):
            return None
        return v * scale, row.get("date"), f"{v * scale:.3g}{unit}"
    measure.cases = [case]
    return measure


def field_ratio(num, den, key):
    """``num[key] / den[key]`` of two cases' ntkgp rows (e.g. CG iterations without and with
    the preconditioner)."""
    def measure(rows):
        a = ((rows.get(num) or {}).get("ntkgp") or {}).get(key)
        b = ((rows.get(den) or {}).get("ntkgp") or {}).get(key)
        if a is None or not b:
            return None
        return a / b, rows[num].get("date"), f"{a} / {b}"
    measure.cases = [num, den]
    return measure


def key_ratio(case, num, den):
    """``row[num] / row[den]`` of one case's ntkgp row (e.g. two solvers' test errors measured
    in the same process)."""
    def measure(rows):
        row = (rows.get(case) or {}).get("ntkgp") or {}
        a, b = row.get(num), row.get(den)
        if a is None or not b:
            return None
        return a / b, rows[case].get("date"), f"{a:.4g} / {b:.4g}"
    measure.cases = [case]
    return measure


def key_difference(case, a, b):
    """``row[a] - row[b]`` of one case's ntkgp row (e.g. two models' accuracies)."""
    def measure(rows):
        row = (rows.get(case) or {}).get("ntkgp") or {}
        if row.get(a) is None or row.get(b) is None:
            return None
        return row[a] - row[b], rows[case].get("date"), f"{row[a]:.4g} - {row[b]:.4g}"
    measure.cases = [case]
    return measure


def key_ratio_of_median(case, key):
    """ntkgp's median time of one case over a time ``key`` its row saved (a baseline measured
    in the same process)."""
    def measure(rows):
        us = _median(rows.get(case), "ntkgp")
        base = ((rows.get(case) or {}).get("ntkgp") or {}).get(key)
        if us is None or not base:
            return None
        return us / base, rows[case].get("date"), f"{us:.3g} s / {base:.3g} s"
    measure.cases = [case]
    return measure


def time_ratio(num, den):
    """ntkgp median of case ``num`` / ntkgp median of case ``den`` (same run)."""
    def measure(rows):
        a, b = _median(rows.get(num), "ntkgp"), _median(rows.get(den), "ntkgp")
        if a is None or not b:
            return None
        return a / b, rows[num].get("date"), f"{a:.3g} s / {b:.3g} s"
    measure.cases = [num, den]
    return measure


def paired_ratio(case):
    """A case's ``paired_s / paired_relu_s``: its network and the ReLU network timed
    alternately in one process."""
    def measure(rows):
        row = rows.get(case) or {}
        side = row.get("ntkgp") or {}
        a, b = side.get("paired_s"), side.get("paired_relu_s")
        if a is None or not b:
            return None
        return a / b, row.get("date"), f"{a:.3g} s / {b:.3g} s"
    measure.cases = [case]
    return measure


def compile_ratio(case, nt_case=None, relative_to=None):
    """ntkgp's compile time (trace, lowering and XLA, ``jit(f).lower().compile()``) of ``case``
    over neural-tangents' of ``nt_case`` (default the same case), both from one run; with
    ``relative_to``, divided by that case's own ratio between the two venvs (the same plain
    JAX program compiled by each: the JAX/XLA versions' factor)."""
    nt_case = nt_case or case

    def measure(rows):
        us = ((rows.get(case) or {}).get("ntkgp") or {}).get("compile_s")
        nt = ((rows.get(nt_case) or {}).get("nt") or {}).get("compile_s")
        if us is None or not nt:
            return None
        value, detail = us / nt, f"{us:.2f} s / {nt:.2f} s"
        if relative_to is not None:
            factor = _nt_ratio(rows.get(relative_to))
            if factor is None:
                return None
            value, detail = value / factor, f"{us / nt:.2f} / {factor:.2f} ({detail})"
        return value, rows[case].get("date"), detail
    measure.cases = sorted({case, nt_case} | ({relative_to} if relative_to else set()))
    measure.nt_cases = sorted({nt_case} | ({relative_to} if relative_to else set()))
    return measure


def slope(case, name):
    """A log-log slope against width saved by the default `ntkgp compare` sweep."""
    def measure(rows):
        row = rows.get(case) or {}
        v = ((row.get("ntkgp") or {}).get("slopes") or {}).get(name)
        if v is None:
            return None
        return v, row.get("date"), f"{v:.2f}"
    measure.cases = [case]
    return measure


_MLP = "entk_mlp_{}_{}_f32"
_THREE = ("structured", "ntvp", "jacobian")

# (suite, what, measure, (op, bound))
TARGETS = [
    ("kernels", "analytic FC kernel, depth 10, N=4000, f32: time vs neural-tangents",
     nt_ratio("fc10_N4000_f32"), (LE, 0.2)),
    ("kernels", "analytic FC kernel, depth 2, N=8000, f32: time vs neural-tangents",
     nt_ratio("fc2_N8000_f32"), (LE, 0.5)),
    ("kernels", "structured empirical NTK, MLP, full output blocks: vs neural-tangents' "
     "structured derivatives", nt_ratio(_MLP.format("full", "structured")), (LE, 1.0)),
    ("kernels", "structured empirical NTK, MLP, traced outputs: vs neural-tangents' "
     "structured derivatives", nt_ratio(_MLP.format("trace", "structured")), (LE, 1.0)),
] + [
    ("kernels", f"empirical NTK `implementation='auto'`, {net}, {trace}: vs the best of "
     "the three implementations",
     auto_vs_best(f"entk_{net}_{trace}_auto_f32",
                  [_MLP.format(trace, i) for i in (_THREE if net == "mlp" else _THREE[1:])]),
     (LE, 2.0))
    for net in ("mlp", "mlpfn") for trace in ("full", "trace")
] + [
    ("kernels", f"analytic FC kernel, depth {d}, N=4000, f32: compile time (trace + XLA) vs "
     "neural-tangents", compile_ratio(f"fc{d}_N4000_f32"), (LE, 1.0))
    for d in (2, 10)
] + [
    ("kernels", "analytic FC kernel, depth 2, N=4000, f32: compile time vs neural-tangents, "
     "over the same recursion in plain JAX's ratio between the two JAX versions",
     compile_ratio("fc2_N4000_f32", relative_to="plain_jax_fc2_N4000_f32"), (LE, 1.0)),
    ("kernels", "analytic FC kernel, depth 10, N=4000, f32, JAX's persistent compilation "
     "cache warm: compile time vs neural-tangents' (cold)",
     compile_ratio("fc10_cached_N4000_f32", nt_case="fc10_N4000_f32"), (LE, 1.0)),
    ("kernels", "analytic FC kernel of x with itself (`x2=None`), depth 2, N=4000, f32: compile "
     "time vs neural-tangents", compile_ratio("fc2_x2None_N4000_f32"), (LE, 1.0)),
    ("cntk", "CNTK 3 x Conv(64) + GlobalAvgPool, N=200, f32: compile time vs neural-tangents",
     compile_ratio("cnn3_gap_N200_f32"), (LE, 1.0)),
] + [
    ("predict", f"ensemble NTK mean + covariance, N_train={n}, {dt}: time vs "
     "neural-tangents", nt_ratio(f"ensemble_ntk_cov_N{n}_{dt}"), (LE, 0.5))
    for dt in ("f32", "f64") for n in (500, 1000, 2000, 4000, 8000)
] + [
    ("predict", "exact prediction N_train=16000 in float64 within the 24 GiB machine: peak "
     "memory (GiB)", field("ensemble_ntk_cov_N16000_f64", "maxrss_mb", 1 / 1024, " GiB"),
     (LE, 24.0)),
] + [
    ("train", f"default `ntkgp compare`: log-log slope of {label} against width",
     slope("compare_default_f32", name), (IN, (-0.65, -0.35)))
    for name, label in (("dist_net_linearized", "(a) net vs linearization"),
                        ("dist_net_closed_form", "(b) net vs closed form"),
                        ("param_change", "‖dθ‖/‖θ0‖"))
] + [
    ("train", "default `ntkgp compare`: the NTK drift falls with width (slope)",
     slope("compare_default_f32", "ntk_drift"), (LE, 0.0)),
    ("train", "default `ntkgp compare`: widest nets' test outputs vs the closed form (b), "
     "'within a few percent'", field("compare_default_f32", "dist_b_widest"), (LE, 0.05)),
    ("train", "cross-entropy `ntkgp compare` on digits: log-log slope of (b) net vs the "
     "infinite-width ODE", slope("compare_xent_digits_f32", "dist_net_closed_form"),
     (IN, (-0.65, -0.35))),
    ("train", "CNN training loop (lax.scan, 1000 digits): time vs the same steps jitted one "
     "by one", time_ratio("cnn_scan_digits1000_w64_f32", "cnn_jit_digits1000_w64_f32"),
     (LE, 1.5)),
    ("train", "default `ntkgp tickets`: log-log slope of the trained net's distance to its "
     "linearization (the tangent-space ticket)", slope("tickets_default_f32", "linearized"),
     (IN, (-0.65, -0.35))),
    ("train", "default `ntkgp tickets` (3 widths x 2 seeds, 14 trainings each) on 2 cores: "
     "seconds, compile included", field("tickets_default_f32", "median_s", 1.0, " s"),
     (LE, 180.0)),
    ("train", "`ntkgp compare --parameterization ntk,standard,mup`: log-log slope of the "
     "maximal-update nets' NTK drift against width (feature learning: it does not fall)",
     slope("parameterizations_default_f32", "mup_ntk_drift"), (IN, (-0.15, 0.15))),
    ("train", "`ntkgp compare --parameterization ntk,standard,mup`: log-log slope of the "
     "standard-parameterization nets' distance to their linearization (lazy: it falls)",
     slope("parameterizations_default_f32", "standard_dist_net_linearized"), (LE, -0.35)),
    ("train", "`ntkgp compare --parameterization ntk,standard,mup` (3 x 4 widths x 8 seeds) "
     "on 2 cores: seconds, compile included",
     field("parameterizations_default_f32", "median_s", 1.0, " s"), (LE, 120.0)),
] + [
    ("cntk", f"CNTK 3 x Conv(64) + {ro}, N={n}, f32: time vs neural-tangents",
     nt_ratio(f"cnn3_{key}_N{n}_f32"), (LE, 0.1))
    for key, ro in (("gap", "GlobalAvgPool"), ("flatten", "Flatten")) for n in (50, 100, 200)
] + [
    ("cntk", f"CNTK of another shape, {desc}, N={n}, f32: time vs neural-tangents",
     nt_ratio(f"cnn2_{key}_N{n}_f32"), (LE, 0.1))
    for key, desc, ns in (
        ("valid_flatten", "2 x VALID Conv(32) + Flatten on 12x12x3", (50, 100)),
        ("strided_flatten", "2 x Conv(32, strides 2) + Flatten on 16x16x3", (50, 200)),
        ("valid_pool", "VALID Conv + AvgPool + VALID Conv + GlobalAvgPool on 10x10x3",
         (50, 100)),
        ("strided_pool", "Conv + AvgPool(stride 2) + Conv + GlobalAvgPool on 8x8x3",
         (50, 100)),
        ("myrtle5", "Myrtle-5 (4 Conv, 3 AvgPool, GlobalAvgPool) on 8x8x3", (50, 100)),
        ("myrtle7", "Myrtle-7 (6 Conv, 3 AvgPool, GlobalAvgPool) on 16x16x3", (20, 30)),
        ("same_gap", "3 x SAME Conv(64) + GlobalAvgPool on 10x10x3", (30, 50)),
        ("same_gap16", "3 x SAME Conv(64) + GlobalAvgPool on 16x16x3", (20,)),
        ("same_gap32", "3 x SAME Conv(64) + GlobalAvgPool on 32x32x3", (8, 12)),
        ("erf_gap", "3 x SAME Conv(64) + Erf + GlobalAvgPool on 10x10x3", (30,)),
        ("gelu_gap", "3 x SAME Conv(64) + Gelu + GlobalAvgPool on 10x10x3", (30,)),
        ("sin_gap", "3 x SAME Conv(64) + Sin + GlobalAvgPool on 10x10x3", (30,)),
        ("gabor_gap", "3 x SAME Conv(64) + Gabor + GlobalAvgPool on 10x10x3", (30,)))
    for n in ns
] + [
    ("attention", f"transformer kernel (2 blocks, softmax attention, L=16, C=32), N={n}, "
     "f32: time vs neural-tangents", nt_ratio(f"transformer2_N{n}_f32"), (LE, 0.3))
    for n in (100, 400)
] + [
    ("attention", "transformer kernel (2 blocks, softmax attention, L=128, C=32), N=16, f32: "
     "time vs neural-tangents", nt_ratio("transformer2_L128_N16_f32"), (LE, 0.3)),
] + [
    ("activations", f"{act} kernel (3 layers, N=4000, {dt}): time vs the ReLU network's "
     "(timed alternately in one process)", paired_ratio(f"act_{act}_N4000_{dt}"),
     (LE, _ACT_BOUNDS.get(act, (1.5, 0.3))[0]))
    for act, dt in _ACT_CASES
] + [
    ("activations", f"{act} kernel (3 layers, N=4000, {dt}): time vs neural-tangents",
     nt_ratio(f"act_{act}_N4000_{dt}"), (LE, _ACT_BOUNDS.get(act, (1.5, 0.3))[1]))
    for act, dt in _ACT_CASES + [("relu", "f32"), ("relu", "f64")]
] + [
    ("predict", "cross-entropy gradient flow in function space (N=1000, 10 classes, 3 times, "
     "f64): time vs neural-tangents", nt_ratio("gd_xent_N1000_K10_f64"), (LE, 0.5)),
] + [
    ("graphs", f"graph network kernel ({impl} patterns, 2 layers, N=200, V=24, f32): time vs "
     "neural-tangents", nt_ratio(f"gcn2_{impl}_N200_V24_f32"), (LE, 1.0))
    for impl in ("dense", "sparse")
] + [
    ("layers", f"{what} kernel (then GlobalAvgPool, f32): time vs neural-tangents",
     nt_ratio(case), (LE, 1.0))
    for what, case in (("3-D CNN (N=50, 4x4x4 volumes)", "conv3d_gap_N50_f32"),
                       ("ConvTranspose (N=100)", "conv_transpose_gap_N100_f32"),
                       ("ConvLocal (N=100)", "conv_local_gap_N100_f32"),
                       ("ImageResize (N=100)", "image_resize_gap_N100_f32"),
                       ("AvgPool normalize_edges + SumPool CIRCULAR (N=100)",
                        "pool_variants_gap_N100_f32"),
                       ("Index + DotGeneral (N=100)", "index_dot_general_gap_N100_f32"),
                       ("Dropout + FanInProd FC (N=2000, no pooling)",
                        "dropout_faninprod_N2000_f32"))
] + [
    ("scale", f"CG vs exact solve, N={n}, float64: max relative difference of the test "
     "means", field(f"cg_N{n}_f64", "rel_diff_exact"), (LE, 1e-6))
    for n in (2000, 5000, 10000)
] + [
    ("scale", "CG iterations without / with the preconditioner, N=5000 (reported; the "
     "tests ask for ≥3×)", field_ratio("cg_noprec_N5000_f64", "cg_N5000_f64", "iterations"),
     (GE, 3.0)),
    ("scale", "exact solve (Cholesky) at N=30,000 in float64 on this 24 GiB machine: peak "
     "memory (GiB)", field("exact_net_N30000_f64", "maxrss_mb", 1 / 1024, " GiB"), (LE, 24.0)),
    ("scale", "iterative solve at N ≥ 100,000 on this machine (float32): peak memory (GiB)",
     field("cg_synth_N100000_f32", "maxrss_mb", 1 / 1024, " GiB"), (LE, 24.0)),
    ("features", "regression on 2048 NTK random features vs the exact solve, diamonds "
     "(N=20,000): test RMSE ratio", key_ratio("rf_diamonds_N20000_f32", "features", "exact"),
     (LE, 1.02)),
    ("features", "regression on Nystrom features of the exact NTK (2048 landmarks) vs the exact "
     "solve, diamonds (N=20,000): test RMSE ratio", key_ratio("rf_diamonds_N20000_f32",
                                                              "nystrom", "exact"), (LE, 1.02)),
    ("features", "regression on Nystrom features (2048 landmarks) vs the exact solve, 8-d "
     "synthetic sine (N=20,000): test RMSE ratio", key_ratio("rf_synth_N20000_f32", "nystrom",
                                                             "exact"), (LE, 1.02)),
    ("features", "regression on 2048 NTK random features vs the exact solve, 8-d synthetic "
     "sine (N=20,000): test RMSE ratio", key_ratio("rf_synth_N20000_f32", "features",
                                                   "exact"), (LE, 1.02)),
    ("features", "10^6 rows (8-d synthetic) fitted on random features and predicted on this "
     "machine: minutes", field("rf_synth_N1000000_f32", "median_s", 1 / 60, " min"),
     (LE, 10.0)),
    ("features", "10^6 rows (8-d synthetic) fitted on Nystrom features (1024 landmarks) and "
     "predicted on this machine: minutes", field("rf_synth_N1000000_f32", "nystrom_s",
                                                 1 / 60, " min"), (LE, 10.0)),
    ("features", "random features vs scikit-learn's Nystroem + RidgeCV of the same dimension, "
     "10^6 rows: test RMSE ratio", key_ratio("rf_synth_N1000000_f32", "features", "sklearn"),
     (LE, 1.0)),
    ("features", "random features vs Nystroem + RidgeCV of the same dimension, Fashion-MNIST "
     "(60,000 rows): test accuracy ratio", key_ratio("rf_fashion_mnist_f32", "features",
                                                     "sklearn"), (GE, 1.0)),
    ("features", "Nystrom features of the NTK (2048 landmarks) vs scikit-learn's Nystroem + "
     "RidgeCV (4097 components), Fashion-MNIST (60,000 rows): test accuracy ratio",
     key_ratio("rf_fashion_mnist_f32", "nystrom", "sklearn"), (GE, 1.0)),
    ("features", "NTKRegressor(solver='features', activation='auto'), 1024 directions, vs "
     "Nystroem + RidgeCV of the same dimension, 10^6 rows: test RMSE ratio",
     key_ratio("rf_synth_N1000000_f32", "est_features", "sklearn"), (LE, 1.0)),
    ("features", "NTKRegressor(solver='nystrom', activation='auto'), 2048 landmarks, vs "
     "Nystroem + RidgeCV (2049 components), 10^6 rows: test RMSE ratio",
     key_ratio("rf_synth_N1000000_f32", "est_nystrom", "sklearn"), (LE, 1.0)),
    ("features", "10^6 rows fitted on random features from a zarr store through Dask "
     "(read a chunk at a time) vs from memory: time ratio",
     field("rf_synth_N1000000_dask_f32", "dask_over_memory"), (LE, 1.1)),
    ("features", "the same fit from the zarr store through Dask: largest difference of its "
     "test means to the in-memory fit's", field("rf_synth_N1000000_dask_f32", "max_diff"),
     (LE, 0.0)),
    ("estimators", "default NTKClassifier(depth=2) fit on 1,200 digits (float32): seconds",
     field("fit_ntk_classifier_digits1200", "median_s", 1.0, " s"), (LE, 3.0)),
    ("estimators", "the same fit as the first in a process, compilation included: seconds",
     field("fit_ntk_classifier_digits1200", "first_fit_s", 1.0, " s"), (LE, 6.0)),
    ("estimators", "the same fit: test accuracy minus scikit-learn's SVC's (597 held out)",
     key_difference("fit_ntk_classifier_digits1200", "accuracy", "baseline_accuracy"),
     (GE, -0.005)),
    ("estimators", "default NNGPRegressor(depth=2) fit on 300 diabetes rows vs scikit-learn's "
     "GaussianProcessRegressor (ARD RBF): time ratio", key_ratio_of_median(
         "fit_nngp_regressor_diabetes300", "baseline_s"), (LE, 1.0)),
    ("estimators", "the same regressor fitted and predicting with return_std (predictive) on "
     "the 142 other rows vs the GPR doing the same: time ratio", key_ratio_of_median(
         "predict_std_nngp_regressor_diabetes300", "baseline_s"), (LE, 1.0)),
    ("estimators", "scikit-learn's GaussianProcessRegressor with ntkgp's NeuralKernel(depth=2) + "
     "WhiteKernel vs with the ARD RBF kernel (fit + predict with std, diabetes): time ratio",
     key_ratio_of_median("neural_kernel_in_gpr_diabetes300", "baseline_s"), (LE, 1.0)),
    ("estimators", "`ntkgp fit` on the 1,200 digits as a new process vs a Python process "
     "fitting the same pipeline (the CLI's own work: training score, saving): time ratio",
     key_ratio_of_median("cli_fit_digits1200", "baseline_s"), (LE, 1.25)),
    ("estimators", "GridSearchCV(NTKClassifier(), depth 1-4, cv=5) on 1,797 digits: "
     "marginal-likelihood programs compiled (4 depths)", field("gridsearch_ntk_digits",
                                                               "fit_compiles"), (LE, 5)),
    ("sgd_bayes", "P_B by the tilted sampler on the 128-point NNGP orthant (4000 draws): "
     "median standard error of log P (nats; EP's bias there is 0.1-0.3)",
     field("pb_tilted_128", "median_se"), (LE, 0.1)),
    ("sgd_bayes", "P_B by the tilted sampler on the 128-point NNGP orthant: seconds per "
     "function", field("pb_tilted_128", "median_s", 1.0, " s"), (LE, 0.25)),
    ("sgd_bayes", "400 equicorrelated Gaussians (closed form known): tilted sampler's error "
     "in its own standard errors", field("pb_tilted_equicorr_n400", "z"), (LE, 4.0)),
    ("sgd_bayes", "SGD runs on 500 binarized digits (FCN 64-64, batch 16, until S is fitted): "
     "minutes for 10^5 runs on this machine", field("sgdruns_digits500_w64_f32", "minutes_1e5",
                                                     1.0, " min"), (LE, 60.0)),
    ("sgd_bayes", "the image experiment (10^4 runs on 500 digits, 30 held out): repeated "
     "functions without a P_B", field("images_digits500_f32", "pb_missing"), (LE, 0)),
]

NO_TARGETS = {
    "tabular": "accuracy is reported win or lose, with no bound",
}


def nt_ratio_bounds():
    """{case id: bound} of the targets on a time ratio against neural-tangents (for the
    per-suite tables)."""
    return {m.nt_case: bound for _, _, m, (op, bound) in TARGETS
            if hasattr(m, "nt_case") and op == LE}


def _met(value, op, bound):
    if op == LE:
        return value <= bound
    if op == GE:
        return value >= bound
    return bound[0] <= value <= bound[1]


def evaluate(saved):
    """``saved``: {suite: the suite's saved JSON}. One dict per target: suite, what,
    bound, value, detail, date and status ('met', 'missed' or 'not measured')."""
    out = []
    for suite, what, measure, (op, bound) in TARGETS:
        suite_date = ((saved.get(suite) or {}).get("machine") or {}).get("date")
        rows = {r["id"]: dict(r, date=r.get("date") or suite_date)
                for r in (saved.get(suite) or {}).get("rows", [])}
        got = measure(rows)
        bound_s = f"{op} {bound}" if op != IN else f"in [{bound[0]}, {bound[1]}]"
        res = dict(suite=suite, what=what, bound=bound_s, value=None, detail="",
                   date="", status="not measured")
        if got is not None and got[0] is not None and math.isfinite(got[0]):
            res.update(value=got[0], date=got[1] or "", detail=got[2],
                       status="met" if _met(got[0], op, bound) else "missed")
        out.append(res)
    return out


def render(saved):
    """Markdown lines of the targets table (and a count of met / missed / not measured)."""
    res = evaluate(saved)
    counts = {s: sum(r["status"] == s for r in res) for s in ("met", "missed", "not measured")}
    lines = ["## Targets", "",
             f"Every target the project set, from the rows below: **{counts['met']} met, "
             f"{counts['missed']} missed**, {counts['not measured']} not measured. Ratios of "
             "times are ntkgp / the baseline, both medians of the same run (neural-tangents "
             "in its reference venv, case by case alternating with ntkgp). Each row gives the "
             "date of its measurement.", "",
             "| suite | target | bound | measured | | status | measured on |",
             "|---|---|---|---:|---|---|---|"]
    for r in res:
        v = "—" if r["value"] is None else f"{r['value']:.3g}"
        status = {"met": "**met**", "missed": "**missed**"}.get(r["status"], "not measured")
        lines.append(f"| {r['suite']} | {r['what']} | {r['bound']} | {v} | "
                     f"{r['detail']} | {status} | {r['date']} |")
    lines += [""] + [f"- `{s}`: {why}." for s, why in NO_TARGETS.items()]
    return lines
