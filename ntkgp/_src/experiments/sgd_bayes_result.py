r"""The results of `sgd_vs_bayes`: one row per setting, and the analysis that turns a sample
of functions and their :math:`P_B` into correlation, slope (with bootstrap intervals),
top-ten masses and held-out errors."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Optional

import numpy as np

from ntkgp._src.experiments.boolean import unpack_function
from ntkgp._src.util import RowsJson


@dataclasses.dataclass
class SGDBayesRow:
    r"""One training setting of `sgd_vs_bayes`.

    Attributes:
        width, optimizer, batch_size, learning_rate: the setting (optimizer ``'posterior'``:
            functions drawn from :math:`P_B` itself, batch size and step 0).
        runs, fitted, mean_epochs: runs started, runs that fitted S, their mean epochs.
        functions, counts: distinct functions found (hex) and their counts, most frequent first.
        log_p_b: :math:`\log P_B(f \mid S)` for the functions with ``counts >= min_count``
            (``None`` for the others).
        log_p_b_stderr: the standard error of each ``log_p_b`` (0 for EP; ``None`` where
            ``log_p_b`` is).
        correlation: Pearson correlation of :math:`\log P_{SGD}` and :math:`\log P_B` over the
            functions found at least ``min_count`` times (``None`` with fewer than 3).
        slope: least-squares slope of :math:`\log P_{SGD}` against :math:`\log P_B` over the
            same functions (1 for a sampler of :math:`P_B` without selection).
        correlation_ci, slope_ci: 95% bootstrap intervals ``[low, high]`` over the functions
            (selection and the noise of the counts are not resampled: compare with the
            ``bayes_baseline`` row).
        top_mass_sgd, top_mass_b: the share of fitted runs that found the ``top`` most
            frequent functions, and the posterior probability :math:`\sum P_B` of the same
            functions.
        errors: held-out error of each function (fraction of points it gets wrong).
    """

    width: int
    optimizer: str
    batch_size: int
    learning_rate: float
    runs: int
    fitted: int
    mean_epochs: float
    functions: list
    counts: list
    log_p_b: list
    correlation: Optional[float]
    top_mass_sgd: float
    top_mass_b: float
    errors: list
    log_p_b_stderr: list = dataclasses.field(default_factory=list)
    slope: Optional[float] = None
    correlation_ci: Optional[list] = None
    slope_ci: Optional[list] = None


@dataclasses.dataclass
class SGDBayesResult(RowsJson):
    r"""Plain data of `sgd_vs_bayes`; ``to_json``/``from_json`` round-trip it.

    Attributes:
        n_bits, target, n_train, seed: the problem.
        min_count, top, pb_method: analysis settings.
        rows: one `SGDBayesRow` per setting.
        info: free-form labels (architecture).
    """

    ROW: ClassVar[type] = SGDBayesRow

    n_bits: int
    target: str
    n_train: int
    seed: int
    min_count: int
    top: int
    rows: list
    info: dict = dataclasses.field(default_factory=dict)
    pb_method: str = "ep"

    def table(self) -> str:
        """A fixed-width text table, one line per setting (``decades``: the span of
        :math:`\\log_{10} P_{SGD}` over the functions found at least ``min_count`` times)."""
        runs = max([len(f"{r.fitted}/{r.runs}") for r in self.rows] + [9])
        head = (f"{'width':>6} {'optimizer':>9} {'batch':>5} {'lr':>8} {'fitted':>{runs}} "
                f"{'epochs':>7} {'distinct':>8} {'decades':>7} {'corr [95% CI]':>17} "
                f"{'slope [95% CI]':>17} {'top-mass SGD':>12} {'top-mass B':>10} "
                f"{'test err':>8}")
        lines = [head]
        for r in self.rows:
            err = float(np.average(r.errors, weights=r.counts)) if r.counts else float("nan")
            seen = [c for c in r.counts if c >= self.min_count]
            span = np.log10(max(seen) / min(seen)) if seen else float("nan")
            lines.append(f"{r.width:>6} {r.optimizer:>9} {r.batch_size:>5} "
                         f"{r.learning_rate:>8.3g} {f'{r.fitted}/{r.runs}':>{runs}} "
                         f"{r.mean_epochs:>7.1f} {len(r.functions):>8} {span:>7.1f} "
                         f"{_with_ci(r.correlation, r.correlation_ci)} "
                         f"{_with_ci(r.slope, r.slope_ci)} {r.top_mass_sgd:>12.3f} "
                         f"{r.top_mass_b:>10.3f} {err:>8.3f}")
        return "\n".join(lines)


def _with_ci(value, ci):
    if value is None:
        return f"{'n/a':>17}"
    text = f"{value:.2f}" + (f" [{ci[0]:.2f},{ci[1]:.2f}]" if ci else "")
    return f"{text:>17}"


def analyse(sample, log_pb_of, problem, min_count, top):
    """``(log_p_b, correlation, top_mass_sgd, top_mass_b, errors, fit)`` of a sample of
    functions (``fit``: slope and intervals, or ``None``)."""
    counts = np.asarray(sample.counts, float)
    p_sgd = counts / max(sample.fitted, 1)
    lpb = [log_pb_of.get(f) if c >= min_count else None
           for f, c in zip(sample.functions, sample.counts)]
    have = [i for i, v in enumerate(lpb) if v is not None]
    corr = fit = None
    if len(have) >= 3:
        a, b = np.log(p_sgd[have]), np.asarray([lpb[i] for i in have])
        if np.std(a) > 0 and np.std(b) > 0:
            corr = float(np.corrcoef(a, b)[0, 1])
            fit = _slope_and_intervals(a, b)
    top_idx = list(range(min(top, len(sample.functions))))
    top_b = [lpb[i] for i in top_idx]
    truth = problem.y[problem.test]
    errors = [float(np.mean(unpack_function(f, truth.size) != truth)) for f in sample.functions]
    return lpb, corr, float(p_sgd[top_idx].sum()), float(
        sum(math.exp(v) for v in top_b if v is not None)), errors, fit


def _slope_and_intervals(log_sgd, log_b, resamples=1000):
    """Least-squares slope of ``log_sgd`` on ``log_b``, and 95% bootstrap intervals (over the
    functions, fixed seed) of the correlation and the slope."""
    rng = np.random.default_rng(0)
    corrs, slopes = [], []
    for _ in range(resamples):
        i = rng.integers(0, log_b.size, log_b.size)
        a, b = log_sgd[i], log_b[i]
        if np.std(a) > 0 and np.std(b) > 0:
            corrs.append(np.corrcoef(a, b)[0, 1])
            slopes.append(np.polyfit(b, a, 1)[0])
    ci = (lambda v: [float(q) for q in np.percentile(v, [2.5, 97.5])] if v else None)
    return float(np.polyfit(log_b, log_sgd, 1)[0]), ci(corrs), ci(slopes)


def diagnose(row: SGDBayesRow, min_count: int, n_test: int, max_epochs: int) -> list:
    """What a reader of ``row`` must know before trusting it, as sentences that say what to
    change: runs that never fitted ``S``, no function found ``min_count`` times (the held-out
    set is too large for the number of runs), :math:`P_B` with large standard errors."""
    out = []
    what = f"{row.optimizer}, batch {row.batch_size}, lr {row.learning_rate:.3g}"
    if row.runs and row.fitted < row.runs:
        out.append(f"{what}: {row.runs - row.fitted} of {row.runs} runs did not fit S within "
                   f"{max_epochs} epochs and were dropped; raise max_epochs or change the "
                   "learning rate if that is many.")
    repeated = sum(c >= min_count for c in row.counts)
    if row.fitted and repeated < 3:
        out.append(f"{what}: only {repeated} of {len(row.functions)} distinct functions were "
                   f"found at least {min_count} times in {row.fitted} runs, too few to compare "
                   f"with P_B: the {n_test} held-out points allow too many functions; use "
                   f"about {max(1, n_test // 2)} or fewer, or more runs.")
    noisy = [e for e in row.log_p_b_stderr if e is not None and e > 0.5]
    if noisy:
        out.append(f"{what}: {len(noisy)} values of log P_B have a standard error above 0.5 "
                   f"nats (largest {max(noisy):.2f}); raise the number of P_B samples.")
    return out
