r"""The Bayesian side of `sgd_vs_bayes`: :math:`P_B(f \mid S)` of held-out functions under a
network's thresholded NNGP prior, with an error bar.

.. math::
    \log P_B(f \mid S) = \log P(\operatorname{sign} g_{S \cup T} = (y_S, f))
                         - \log P(\operatorname{sign} g_S = y_S),

two Gaussian orthant probabilities (`ntkgp.predict.log_orthant_probability`).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import numpy as np

from ntkgp._src import checks
from ntkgp._src.experiments.boolean import BooleanProblem, unpack_function
from ntkgp._src.predict.orthant import (
    LogProbability,
    check_orthant,
    ep_log_probabilities,
    log_orthant_probability,
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
        block: functions per batched EP call.

    Returns:
        A `LogProbability` of two arrays of shape ``(len(functions),)``: natural logs and
        their standard errors (0 for EP). A standard error includes that of the shared
        denominator :math:`P(\operatorname{sign} g_S = y_S)`, which moves every function's
        estimate together.

    Raises:
        ValueError: for a bad method or network.
        NotPositiveDefiniteError: when the kernel on the points is singular (repeated
            points), for ``'tilted'``.
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
