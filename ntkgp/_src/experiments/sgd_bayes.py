r"""Does SGD sample the Bayesian posterior? The function-level experiment of Mingard et al.

Inputs are all :math:`2^n` points of :math:`\{0,1\}^n`; a target Boolean function labels them
:math:`\pm 1`; a training set ``S`` of ``n_train`` points is drawn and the rest is held out.

* :math:`P_{SGD}(f \mid S)`: many networks, each from its own random initialisation and
  minibatch stream (``vmap``-ed, `sample_sgd_functions`), are trained on MSE until the sign of their
  output is right on every point of ``S`` (checked after each epoch); the function a run
  found is the sign pattern of its outputs on the held-out points, and its probability is
  estimated by its frequency among the runs that fitted ``S``.
* :math:`P_B(f \mid S)`: the NNGP prior of the same architecture with thresholded outputs,
  :math:`P(\operatorname{sign} g_S = y_S, \operatorname{sign} g_T = f) /
  P(\operatorname{sign} g_S = y_S)`, both orthant probabilities by expectation propagation
  or minimax-tilted sampling (`ntkgp.predict.log_orthant_probability`).

Mingard et al. 2021, "Is SGD a Bayesian sampler? Well, almost", JMLR 22(79),
https://arxiv.org/abs/2006.15191.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Callable, Optional, Sequence

import numpy as np

from ntkgp._src import checks
from ntkgp._src.experiments.bayes import (
    PB_METHODS,
    bayes_log_probabilities,
    check_net,
    sample_posterior_functions,
)
from ntkgp._src.experiments.boolean import BooleanProblem, boolean_problem, default_net
from ntkgp._src.experiments.sgd_bayes_result import (
    SGDBayesResult,
    SGDBayesRow,
    analyse,
    diagnose,
)
from ntkgp._src.experiments.sgd_runs import (
    SGDSample,
    default_learning_rate,
    sample_sgd_functions,
)

POSTERIOR = "posterior"  # the optimizer name of the row drawn from P_B itself


def sgd_vs_bayes(problem: Optional[BooleanProblem] = None, *,
                 make_net: Optional[Callable[[int], object]] = None,
                 widths: Sequence[int] = (64,), optimizers: Sequence[str] = ("sgd",),
                 batch_sizes: Sequence[int] = (16,), runs: int = 2000,
                 learning_rate: Optional[float] = None, lr_factors: Sequence[float] = (1.0,),
                 max_epochs: int = 500,
                 min_count: int = 2, top: int = 10, seed: int = 0, chunk: Optional[int] = None,
                 pb_method: str = "ep", pb_samples: int = 4000,
                 bayes_baseline: bool = False, journal: Optional[str] = None,
                 show_progress: bool = True,
                 callback: Optional[Callable[[SGDBayesResult], None]] = None) -> SGDBayesResult:
    r"""Set :math:`P_{SGD}(f \mid S)` against :math:`P_B(f \mid S)` for every combination of
    width, optimizer, batch size and learning-rate factor.

    The NNGP kernel of ``make_net(width)`` must not depend on the width (NTK
    parameterization), so :math:`P_B` is computed once per distinct function and shared.

    Args:
        problem: a `BooleanProblem` (default ``boolean_problem()``: 7 bits, majority,
            64 training points).
        make_net: ``make_net(width)`` returns a network with one output (default
            `default_net`: two hidden ReLU layers).
        widths, optimizers, batch_sizes: the settings to run.
        runs: initialisations per setting.
        learning_rate: see `sample_sgd_functions` (default: `default_learning_rate` of
            each optimizer).
        lr_factors: multiples of ``learning_rate`` to run (the second-order effect of the
            step size; factors above 2 leave the stable range of plain SGD).
        max_epochs: runs that have not fitted ``S`` by then are dropped (and counted).
        min_count: :math:`P_B` is computed, and the correlation taken, for functions found
            at least this many times (a frequency of one run says little).
        top: how many of the most frequent functions ``top_mass_*`` covers.
        seed: seed of the runs (each setting uses the same seed).
        chunk: runs trained at once (see `sample_sgd_functions`).
        pb_method: ``'ep'`` or ``'tilted'`` (unbiased, with standard errors), see
            `bayes_log_probabilities`.
        pb_samples: draws per probability for ``'tilted'``.
        bayes_baseline: add a last row (optimizer ``'posterior'``) whose ``runs`` functions
            are drawn from :math:`P_B` itself (`sample_posterior_functions`), analysed in the
            same way: what an exact Bayesian sampler looks like with the same number of
            runs and the same ``min_count`` selection.
        journal: a folder for the journals of finished chunks of runs (`sample_sgd_functions`):
            a second call with the same settings resumes where the first stopped.
        show_progress: show progress bars.
        callback: called with the partial result after each setting (e.g. to save it).

    Warns:
        RuntimeWarning: runs that did not fit ``S``, too few repeated functions (the
            held-out set is too large), :math:`P_B` with standard errors above 0.5 nats.

    Returns:
        An `SGDBayesResult`. A KeyboardInterrupt propagates; ``callback`` has by then
        received every finished setting (the CLI saves them after each).

    Example:
        >>> from ntkgp.experiments import boolean_problem, sgd_vs_bayes
        >>> r = sgd_vs_bayes(boolean_problem(4, "first_bit", n_train=10), widths=[16],
        ...                  batch_sizes=[5], runs=40, show_progress=False)
        >>> row = r.rows[0]
        >>> row.runs, sum(row.counts) == row.fitted
        (40, True)
    """
    problem = boolean_problem() if problem is None else problem
    make_net = default_net if make_net is None else make_net
    widths = [checks.check_positive_int(w, "width") for w in widths]
    for o in optimizers:
        checks.check_choice(o, "optimizer", checks.OPTIMIZERS)
    checks.check_choice(pb_method, "pb_method", PB_METHODS)
    pb_samples = checks.check_positive_int(pb_samples, "pb_samples")
    min_count = checks.check_positive_int(min_count, "min_count")
    top = checks.check_positive_int(top, "top")
    k0 = check_net(make_net(widths[0]), problem)
    if len(widths) > 1 and not np.allclose(k0, check_net(make_net(widths[-1]), problem),
                                           rtol=1e-4):
        raise ValueError("the NNGP kernel of `make_net(width)` changes with the width: use "
                         "the NTK parameterization (the default of nn.Dense).")
    result = SGDBayesResult(problem.n_bits, problem.target, int(problem.train.size), seed,
                            min_count, top, [], {"architecture": repr(make_net(widths[0]))},
                            pb_method=pb_method)
    log_pb_of: dict = {}
    stderr_of: dict = {}
    factors = [float(f) for f in lr_factors]
    if not factors or not all(np.isfinite(f) and f > 0 for f in factors):
        raise ValueError(f"`lr_factors` must be positive numbers; got {lr_factors!r}.")
    settings = list(itertools.product(widths, optimizers, batch_sizes, factors))
    if bayes_baseline:
        settings.append((widths[0], POSTERIOR, 0, 1.0))
    for width, opt, bs, factor in settings:
        net = make_net(width)
        rate = learning_rate
        if opt != POSTERIOR and (factor != 1.0 or rate is None):
            rate = factor * (default_learning_rate(net, problem.x[problem.train], opt)
                             if rate is None else rate)
        if opt == POSTERIOR:
            funcs, counts, _ = sample_posterior_functions(net, problem, runs, seed=seed)
            sample = SGDSample(funcs, counts.tolist(), runs, runs, 0.0, 0.0)
        else:
            sample = sample_sgd_functions(net, problem, runs=runs, optimizer=opt,
                                          batch_size=bs, learning_rate=rate,
                                          max_epochs=max_epochs, seed=seed, chunk=chunk,
                                          journal=journal, show_progress=show_progress)
        need = [f for f, c in zip(sample.functions, sample.counts)
                if c >= min_count and f not in log_pb_of]
        found = bayes_log_probabilities(net, problem, need, method=pb_method,
                                        samples=pb_samples, seed=seed,
                                        show_progress=show_progress)
        for f, v, e in zip(need, found.log_p, found.stderr):
            log_pb_of[f], stderr_of[f] = float(v), float(e)
        lpb, corr, mass_sgd, mass_b, errors, fit = analyse(sample, log_pb_of, problem,
                                                            min_count, top)
        slope_, corr_ci, slope_ci = fit or (None, None, None)
        result.rows.append(SGDBayesRow(width, opt, bs, sample.learning_rate, sample.runs,
                                       sample.fitted, sample.mean_epochs,
                                       sample.functions, sample.counts, lpb, corr,
                                       mass_sgd, mass_b, errors,
                                       [stderr_of.get(f) if v is not None else None
                                        for f, v in zip(sample.functions, lpb)],
                                       slope_, corr_ci, slope_ci))
        for message in diagnose(result.rows[-1], min_count, problem.test.size, max_epochs):
            warnings.warn(message, RuntimeWarning, stacklevel=2)
        if callback is not None:
            callback(result)
    return result

