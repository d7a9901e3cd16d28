"""Maximizing the evidence over an estimator's hyperparameters: L-BFGS-B in log space on the
closed-form gradients of `network.lml_function`, on rows padded to `padding.padded_rows`."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import scipy.optimize

from ntkgp._src.estimator.padding import pad_rows
from ntkgp._src.progress import progress_counter
from ntkgp._src.util import check_fits_in_memory

BOUNDS = {"W_std": (0.1, 10.0), "b_std": (1e-4, 10.0), "diag_reg": (1e-8, 10.0)}


def fit_bounds(name, dtype):
    """``BOUNDS[name]``; the noise floor rises to ``1000 eps`` in float32, below which the
    training kernel cannot be factorized reliably (inside the fit there is no jitter)."""
    low, high = BOUNDS[name]
    if name == "diag_reg":
        low = max(low, 1e3 * float(np.finfo(dtype).eps))
    return low, high


class EvidenceProgram:
    """The fit's compiled program (`network.lml_function`'s ``value_and_grad``) on one set of
    rows, padded to `padding.padded_rows`; it keeps what its best evaluation computed (the
    training kernels and the factor), from which the posterior at the fitted hyperparameters
    is built without computing them again.

    Args:
        value_and_grad: ``(theta, fixed, x, y, mask) -> (log p, gradient, kernels, factor)``.
        fixed: the hyperparameters ``[W_std, b_std, diag_reg]`` that are not fitted.
        x, y: the rows, ``(N, d)`` and ``(N, K)``.
    """

    def __init__(self, value_and_grad, fixed, x, y):
        self.value_and_grad, self.fixed = value_and_grad, fixed
        self.dtype, self.size = x.dtype, y.size  # size: the number of targets
        self.padded = pad_rows(x, y)
        self.best = None  # (log p, theta as evaluated, kernels, factor)

    def _theta(self, theta):
        return jnp.asarray(theta, self.dtype)

    def __call__(self, theta):
        """``(log p, gradient)`` at the logs ``theta`` (NaN where the kernel cannot be
        factorized); float, float64 array."""
        t = self._theta(theta)
        v, g, kernels, factor = self.value_and_grad(t, self.fixed, *self.padded)
        v = float(v)
        if np.isfinite(v) and (self.best is None or v > self.best[0]):
            self.best = (v, np.asarray(t), kernels, factor)
        return v, np.asarray(g, np.float64)

    def solved_at(self, theta):
        """``(log p, kernels, factor)`` at ``theta``: the best evaluation's when it was at
        ``theta`` (in the program's precision), else a new evaluation's (the same numbers for a
        model rebuilt from its saved hyperparameters)."""
        t = np.asarray(self._theta(theta))
        if self.best is None or not np.array_equal(t, self.best[1]):
            v, _, kernels, factor = self.value_and_grad(jnp.asarray(t), self.fixed,
                                                        *self.padded)
            return float(v), kernels, factor
        return self.best[0], self.best[2], self.best[3]


def evidence_at(program, values):
    """The log evidence at the hyperparameters ``values`` (in the order of the fitted names),
    from the fit's own program."""
    return program(np.log(values))[0]


def maximize_evidence(program, names, values, n_restarts, rng, desc):
    """Maximize ``log p(y)`` over ``log(names)`` from ``values`` and ``n_restarts`` starts drawn
    log-uniformly in the bounds (``rng``).

    Args:
        program: the `EvidenceProgram` on the rows to fit.
        names: the fitted hyperparameters; ``values``: their starting values.
        n_restarts: further random starts; ``rng``: a ``RandomState``.
        desc: the progress bar's title.

    Returns:
        ``(theta, log p)`` of the best start (``theta`` the logs, ``(len(names),)``), or
        ``None`` when the kernel could not be factorized at any point tried.
    """
    dtype = program.dtype
    # held at once in an evaluation: the kernel, its derivatives in W_std and b_std, the
    # regularized kernel, its factor, its inverse, the gradient in the kernel; and the best
    # evaluation's two kernels and factor (with its transpose), kept
    check_fits_in_memory(program.padded[0].shape[0], dtype, 11, "the marginal-likelihood fit's "
                         "kernel, its derivatives and inverse (at most `max_fit_samples` rows)")
    bounds = np.log([fit_bounds(n, dtype) for n in names])
    last, first = {}, {}

    def evidence(theta):
        """``(-log p(y), -gradient)``, or ``None`` where the kernel cannot be factorized."""
        if first and np.array_equal(theta, first["theta"]):  # the start, evaluated below
            return first.pop("out")
        v, g = program(theta)
        bar.update()
        v, g = -v, -g
        return (v, g) if np.isfinite(v) and np.all(np.isfinite(g)) else None

    def loss(theta):
        out = evidence(theta)
        if out is not None:
            v, g = out[0] * scale, out[1] * scale
            last.update(theta=np.array(theta), v=v)
            return v, g
        if not last:
            return np.inf, np.zeros_like(theta)
        # The kernel could not be factorized here (NaN inside jit): a smooth wall around
        # the last good point lets the line search step back instead of stopping.
        d = np.asarray(theta) - last["theta"]
        return last["v"] + 1.0 + 100.0 * d @ d, 200.0 * d

    start = np.clip(np.log([max(v, 1e-300) for v in values]), *bounds.T)
    starts = [start] + [rng.uniform(bounds[:, 0], bounds[:, 1]) for _ in range(n_restarts)]
    # a bar of likelihood evaluations once the fit has taken 2 s (NTKGP_PROGRESS=0: none)
    bar = progress_counter(None, desc=desc)
    # The loss is -log p(y) / s. L-BFGS-B's first step is minus the gradient (an identity
    # Hessian), so s makes its largest component 0.5 in log space: per entry of y
    # (s = N K) the gradient in a scale parameter such as W_std can still be ~3 and the
    # first step left the data's scale by a factor of 20, costing a line search (a third
    # of a digits fit's evaluations). It stops when a step gains less than
    # 0.1 max(1, |loss|) nat of evidence (scipy's relative ftol): far below what tells
    # hyperparameters apart (differences under ~1 nat are noise; the loss is about the
    # log evidence per entry of y, of order 1); or less than the loss's rounding (10 eps).
    best = None
    try:
        out = evidence(start)
        scale = 1.0 / program.size
        if out is not None:
            first.update(theta=start, out=out)
            scale = 1.0 / max(program.size, 2.0 * np.max(np.abs(out[1])))
        ftol = max(0.1 * scale, 10 * float(np.finfo(dtype).eps))
        for s in starts:
            res = scipy.optimize.minimize(loss, s, jac=True, method="L-BFGS-B",
                                          bounds=bounds, options={"ftol": ftol})
            if best is None or res.fun < best.fun:
                best = res
    finally:
        bar.close()
    if not last:
        return None
    return best.x, -float(best.fun) / scale
