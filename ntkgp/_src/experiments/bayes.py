r"""The Bayesian side of `sgd_vs_bayes`: :math:`P_B(f \mid S)` of held-out functions under a
network's thresholded NNGP prior, with an error bar.

.. math::
    \log P_B(f \mid S) = \log P(\operatorname{sign} g_{S \cup T} = (y_S, f))
                         - \log P(\operatorname{sign} g_S = y_S),

two Gaussian orthant probabilities (`ntkgp.predict.log_orthant_probability`).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import jax
import numpy as np
from scipy.linalg import solve_triangular

from ntkgp._src import checks
from ntkgp._src.experiments.boolean import (
    BooleanProblem,
    function_frequencies,
    pack_functions,
    unpack_function,
)
from ntkgp._src.predict.orthant import (
    LogProbability,
    check_orthant,
    ep_log_probabilities,
    log_orthant_probability,
    tilted_draws,
)
from ntkgp._src.progress import progress_bar

PB_METHODS = ("ep", "tilted")


def check_net(net, problem):
    """The NNGP kernel of ``net`` on the problem's inputs, float64 ``(2^n, 2^n)``; the
    network must have one output."""
    k = np.asarray(net.kernel(problem.x, None, "nngp"), np.float64)
    out, _ = net.init(jax.random.PRNGKey(0), problem.x.shape)
    if tuple(out)[-1:] != (1,):
        raise ValueError(f"the network must have one output (its sign is the function's "
                         f"value); its output shape is {tuple(out)}. End it with "
                         "nn.Dense(1).")
    return k


def bayes_log_probabilities(net, problem: BooleanProblem, functions: Sequence[str], *,
                            method: str = "ep", samples: int = 4000, seed: int = 0,
                            show_progress: bool = True, block: int = 32) -> LogProbability:
    r""":math:`\log P_B(f \mid S)` under the thresholded NNGP prior of ``net``.

    Args:
        net: an ``ntkgp.nn`` network (only its analytic NNGP kernel is used).
        problem: a `BooleanProblem`.
        functions: hex names of held-out functions (`pack_functions`).
        method: ``'ep'`` (expectation propagation: deterministic and fast, biased low by a
            few tenths of a nat per orthant on problems of this size) or ``'tilted'``
            (Botev's minimax-tilted importance sampler: unbiased for each probability, with a
            standard error).
        samples: draws per orthant probability for ``'tilted'``.
        seed: seed of the sampler.
        show_progress: show a progress bar.
        block: functions per batched EP call (memory against speed; each estimate is the
            same to the last bit whatever the block).

    Returns:
        A `LogProbability` of two arrays of shape ``(len(functions),)``: natural logs and
        their standard errors (0 for EP). A standard error includes that of the shared
        denominator :math:`P(\operatorname{sign} g_S = y_S)`, which moves every function's
        estimate together.

    Raises:
        ValueError: for a bad method or network.
        NotPositiveDefiniteError: when the kernel on the points is singular (repeated
            points), for ``'tilted'``; when it is not positive semi-definite, for both.
    """
    checks.check_choice(method, "method", PB_METHODS)
    k = check_net(net, problem)
    idx = np.concatenate([problem.train, problem.test])
    k_all = k[np.ix_(idx, idx)]
    n_tr = problem.train.size
    k_s, y_s = check_orthant(k_all[:n_tr, :n_tr], problem.y[problem.train])
    k_all, _ = check_orthant(k_all, np.ones(idx.size))
    signs = np.stack([np.concatenate([y_s, unpack_function(f, problem.test.size)])
                      for f in functions]) if len(functions) else np.zeros((0, idx.size))
    if method == "ep":
        log_ps = float(ep_log_probabilities(k_s, y_s[None])[0])
        out = [ep_log_probabilities(k_all, signs[i:i + block])
               for i in progress_bar(range(0, len(functions), block), desc="EP",
                                     enabled=show_progress)]
        joint = np.concatenate(out) if out else np.zeros(0)
        return LogProbability(joint - log_ps, np.zeros_like(joint))
    kw = dict(method="tilted", samples=samples)
    den = log_orthant_probability(k_s, y_s, seed=seed, **kw)
    log_p, err = np.zeros(len(functions)), np.zeros(len(functions))
    for i in progress_bar(range(len(functions)), desc="P_B", enabled=show_progress):
        joint = log_orthant_probability(k_all, signs[i], seed=seed + 1 + i, **kw)
        log_p[i] = joint.log_p - den.log_p
        err[i] = math.hypot(joint.stderr, den.stderr)
    return LogProbability(log_p, err)


def sample_posterior_functions(net, problem: BooleanProblem, runs: int, *,
                               proposals: Optional[int] = None, seed: int = 0):
    r"""Draw held-out functions from :math:`P_B(f \mid S)` itself: the ideal Bayesian sampler
    that `sgd_vs_bayes` sets SGD against, to measure what finite sampling alone does to the
    comparison (a function enters it only if it came up ``min_count`` times).

    :math:`g_S` is drawn from the NNGP prior conditioned on :math:`\operatorname{sign} g_S =
    y_S` (the minimax-tilted proposal of ``proposals`` draws, resampled by its importance
    weights), then :math:`g_T \mid g_S` from the Gaussian conditional, and
    :math:`f = \operatorname{sign} g_T`.

    Args:
        net: an ``ntkgp.nn`` network (its analytic NNGP kernel).
        problem: a `BooleanProblem`.
        runs: functions to draw.
        proposals: tilted draws of :math:`g_S` to resample from (default ``4 * runs``).
        seed: random seed.

    Returns:
        ``(functions, counts, ess)``: distinct functions (hex, most frequent first), their
        counts, and the effective sample size of the weighted proposals (resampling repeats
        a proposal about ``runs / ess`` times; each repeat still gets its own :math:`g_T`).
    """
    runs = checks.check_positive_int(runs, "runs")
    proposals = 4 * runs if proposals is None else checks.check_positive_int(proposals,
                                                                             "proposals")
    k = check_net(net, problem)
    tr, te = problem.train, problem.test
    k_s, y_s = check_orthant(k[np.ix_(tr, tr)], problem.y[tr])
    rng = np.random.default_rng(seed)
    g_s, log_w = tilted_draws(k_s, y_s, proposals, rng)
    w = np.exp(log_w - log_w.max())
    ess = float(w.sum() ** 2 / np.sum(w * w))
    g_s = g_s[rng.choice(proposals, size=runs, p=w / w.sum())]
    # K_SS is positive definite here (tilted_draws factored it, or said why not)
    chol = np.linalg.cholesky(k_s + 1e-10 * float(np.mean(np.diag(k_s))) * np.eye(tr.size))
    a = solve_triangular(chol, k[np.ix_(te, tr)].T, lower=True)      # L^-1 K_ST
    mean = g_s @ solve_triangular(chol.T, a, lower=False)             # (K_TS K_SS^-1 g_S)^T
    # the conditional covariance is only semi-definite when a held-out point repeats a
    # training point (its value is then fixed): a square root by eigh, rounding clipped
    vals, vecs = np.linalg.eigh(k[np.ix_(te, te)] - a.T @ a)
    root = vecs * np.sqrt(np.clip(vals, 0.0, None))
    g_t = mean + rng.standard_normal((runs, te.size)) @ root.T
    functions, counts = function_frequencies(pack_functions(g_t > 0))
    return functions, counts, ess
