r"""Does SGD sample the Bayesian posterior? The function-level experiment of Mingard et al.

Inputs are all :math:`2^n` points of :math:`\{0,1\}^n`; a target Boolean function labels them
:math:`\pm 1`; a training set ``S`` of ``n_train`` points is drawn and the rest is held out.

* :math:`P_{SGD}(f \mid S)`: many networks, each from its own random initialisation and
  minibatch stream (``vmap``-ed, in chunks), are trained on MSE until the sign of their
  output is right on every point of ``S`` (checked after each epoch); the function a run
  found is the sign pattern of its outputs on the held-out points, and its probability is
  estimated by its frequency among the runs that fitted ``S``.
* :math:`P_B(f \mid S)`: the NNGP prior of the same architecture with thresholded outputs,
  :math:`P(\operatorname{sign} g_S = y_S, \operatorname{sign} g_T = f) /
  P(\operatorname{sign} g_S = y_S)`, both orthant probabilities by expectation propagation
  (`ntkgp.predict.log_orthant_probability`).

Mingard et al. 2021, "Is SGD a Bayesian sampler? Well, almost", JMLR 22(79),
https://arxiv.org/abs/2006.15191.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkgp._src import checks
from ntkgp._src.empirical.empirical import as_apply_fn
from ntkgp._src.experiments.bayes import (
    PB_METHODS,
    bayes_log_probabilities,
    check_net,
    sample_posterior_functions,
)
from ntkgp._src.experiments.boolean import (
    BooleanProblem,
    boolean_problem,
    default_net,
    function_frequencies,
    pack_functions,
)
from ntkgp._src.experiments.journal import Journal
from ntkgp._src.experiments.sgd_bayes_result import SGDBayesResult, SGDBayesRow, analyse
from ntkgp._src.predict.dynamics import max_learning_rate
from ntkgp._src.progress import progress_bar
from ntkgp._src.train.losses import mse_loss
from ntkgp._src.train.models import PlainApply
from ntkgp._src.train.training import make_optimizer


@functools.partial(jax.jit, static_argnames=("optimizer", "batch_size", "max_epochs"))
def _fit_until_correct(apply, optimizer, learning_rate, params0, keys, x, y, x_test,
                       batch_size, max_epochs):
    """For each seed: SGD epochs (a fresh permutation each, ``n // batch_size`` steps) until
    ``sign f = y`` on every training point or ``max_epochs``; returns the held-out signs
    (``f > 0``), the epochs used and whether the run fitted."""
    opt = make_optimizer(optimizer, learning_rate)
    n = x.shape[0]
    n_batches = n // batch_size

    def fits(p):
        return jnp.all(apply(p, x)[:, 0] * y > 0)

    def one(p0, key):
        def epoch(carry):
            p, s, k, e, _ = carry
            k, sub = jax.random.split(k)
            order = jax.random.permutation(sub, n)[: n_batches * batch_size]

            def step(c, idx):
                p, s = c
                g = jax.grad(lambda q: mse_loss(apply(q, x[idx])[:, 0], y[idx]))(p)
                upd, s = opt.update(g, s, p)
                return (optax.apply_updates(p, upd), s), None

            (p, s), _ = jax.lax.scan(step, (p, s), order.reshape(n_batches, batch_size))
            return p, s, k, e + 1, fits(p)

        def going(carry):
            return (~carry[4]) & (carry[3] < max_epochs)

        init = (p0, opt.init(p0), key, jnp.int32(0), fits(p0))
        p, _, _, e, done = jax.lax.while_loop(going, epoch, init)
        return apply(p, x_test)[:, 0] > 0, e, done

    return jax.vmap(one)(params0, keys)


POSTERIOR = "posterior"  # the optimizer name of the row drawn from P_B itself


@dataclasses.dataclass
class SGDSample:
    """Functions found by SGD runs (see `sample_sgd_functions`).

    Attributes:
        functions: distinct held-out functions (hex names), most frequent first.
        counts: how many fitted runs found each.
        runs: runs started; fitted: runs that fitted ``S`` within ``max_epochs``.
        mean_epochs: mean epochs of the fitted runs.
        learning_rate: the step size used.
    """

    functions: list
    counts: list
    runs: int
    fitted: int
    mean_epochs: float
    learning_rate: float


def sample_sgd_functions(net, problem: BooleanProblem, *, runs: int = 1000,
                         optimizer: str = "sgd", batch_size: int = 16,
                         learning_rate: Optional[float] = None, max_epochs: int = 500,
                         seed: int = 0, chunk: int = 500, journal: Optional[str] = None,
                         show_progress: bool = True) -> SGDSample:
    """Train ``runs`` networks from independent initialisations until they fit ``S`` and
    record the function each finds on the held-out points.

    Runs go in ``vmap``-ed chunks of ``chunk``; a KeyboardInterrupt propagates. With
    ``journal`` each finished chunk is appended to a checksummed file in that folder, and a
    later call with the same settings reads the chunks back instead of training them again:
    an interrupted or killed run loses at most one chunk.

    Args:
        net: an ``ntkgp.nn`` network with one output.
        problem: a `BooleanProblem`.
        runs: number of initialisations.
        optimizer: ``'sgd'``, ``'momentum'`` (heavy ball 0.9) or ``'adam'``.
        batch_size: minibatch size (``n_train // batch_size`` steps an epoch).
        learning_rate: default half the largest stable full-batch step of the analytic NTK
            (``'sgd'``; a tenth of it for ``'momentum'``), ``1e-3`` for ``'adam'``.
        max_epochs: a run that has not fitted ``S`` after this many epochs is dropped.
        seed: seed of initialisations and minibatches.
        chunk: runs per compiled call.
        journal: a folder for the journal of finished chunks (``None``: none). The file is
            named by a hash of everything that determines the runs; a changed line raises
            `JournalError`.
        show_progress: show a progress bar (with the time left).

    Returns:
        An `SGDSample`.
    """
    checks.check_choice(optimizer, "optimizer", checks.OPTIMIZERS)
    runs = checks.check_positive_int(runs, "runs")
    chunk = checks.check_positive_int(chunk, "chunk")
    max_epochs = checks.check_positive_int(max_epochs, "max_epochs")
    batch_size = checks.check_positive_int(batch_size, "batch_size")
    n_train = problem.train.size
    if batch_size > n_train:
        raise ValueError(f"`batch_size` ({batch_size}) exceeds the {n_train} training points.")
    dtype = jnp.result_type(float)
    x = jnp.asarray(problem.x[problem.train], dtype)
    y = jnp.asarray(problem.y[problem.train], dtype)
    x_test = jnp.asarray(problem.x[problem.test], dtype)
    if learning_rate is None:
        if optimizer == "adam":
            learning_rate = 1e-3
        else:
            ntk = net.kernel(x, None, "ntk")
            learning_rate = 0.5 * float(max_learning_rate(ntk))
            learning_rate *= 0.1 if optimizer == "momentum" else 1.0
    elif not (np.isscalar(learning_rate) and np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"`learning_rate` must be a positive number or None; got "
                         f"{learning_rate!r}.")
    apply = PlainApply(as_apply_fn(net))
    names, epochs = [], []
    started = 0
    key = jax.random.PRNGKey(seed)
    sizes = [min(chunk, runs - i) for i in range(0, runs, chunk)]
    book = finished = None
    if journal is not None:
        book = Journal(journal, _run_settings(net, problem, optimizer, batch_size,
                                              learning_rate, max_epochs, seed, chunk, dtype))
        finished = book.read()
    for i, size in enumerate(progress_bar(sizes, desc="SGD runs", enabled=show_progress)):
        key, k_init, k_train = jax.random.split(key, 3)
        got = (finished or {}).get(i)
        if got is None or got["size"] != size:
            p0 = jax.vmap(lambda k: net.init(k, x.shape)[1])(jax.random.split(k_init, size))
            signs, e, done = _fit_until_correct(
                apply, optimizer, jnp.asarray(learning_rate, dtype), p0,
                jax.random.split(k_train, size), x, y, x_test, batch_size, max_epochs)
            done = np.asarray(done)
            got = {"size": size, "names": pack_functions(np.asarray(signs)[done]),
                   "epochs": [int(v) for v in np.asarray(e)[done]]}
            if book is not None:
                book.append(i, got)
        names += got["names"]
        epochs += got["epochs"]
        started += size
    functions, counts = function_frequencies(names)
    return SGDSample(functions, [int(c) for c in counts], started, len(names),
                     float(np.mean(epochs)) if epochs else float("nan"), float(learning_rate))


def _run_settings(net, problem, optimizer, batch_size, learning_rate, max_epochs, seed, chunk,
                  dtype):
    """Everything that determines a chunk's runs, for the journal's fingerprint."""
    data = hashlib.sha256()
    for a in (problem.x, problem.y, problem.train, problem.test):
        data.update(np.ascontiguousarray(a).tobytes())
    return {"problem": data.hexdigest(), "net": repr(net), "optimizer": optimizer,
            "batch_size": batch_size, "learning_rate": float(learning_rate),
            "max_epochs": max_epochs, "seed": seed, "chunk": chunk, "dtype": str(dtype),
            "jax": jax.__version__}


def sgd_vs_bayes(problem: Optional[BooleanProblem] = None, *,
                 make_net: Optional[Callable[[int], object]] = None,
                 widths: Sequence[int] = (64,), optimizers: Sequence[str] = ("sgd",),
                 batch_sizes: Sequence[int] = (16,), runs: int = 2000,
                 learning_rate: Optional[float] = None, max_epochs: int = 500,
                 min_count: int = 2, top: int = 10, seed: int = 0, chunk: int = 500,
                 pb_method: str = "ep", pb_samples: int = 4000,
                 bayes_baseline: bool = False, journal: Optional[str] = None,
                 show_progress: bool = True,
                 callback: Optional[Callable[[SGDBayesResult], None]] = None) -> SGDBayesResult:
    r"""Set :math:`P_{SGD}(f \mid S)` against :math:`P_B(f \mid S)` for every combination of
    width, optimizer and batch size.

    The NNGP kernel of ``make_net(width)`` must not depend on the width (NTK
    parameterization), so :math:`P_B` is computed once per distinct function and shared.

    Args:
        problem: a `BooleanProblem` (default ``boolean_problem()``: 7 bits, majority,
            64 training points).
        make_net: ``make_net(width)`` returns a network with one output (default
            `default_net`: two hidden ReLU layers).
        widths, optimizers, batch_sizes: the settings to run.
        runs: initialisations per setting.
        learning_rate: see `sample_sgd_functions`.
        max_epochs: runs that have not fitted ``S`` by then are dropped (and counted).
        min_count: :math:`P_B` is computed, and the correlation taken, for functions found
            at least this many times (a frequency of one run says little).
        top: how many of the most frequent functions ``top_mass_*`` covers.
        seed: seed of the runs (each setting uses the same seed).
        chunk: runs per compiled call.
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
    settings = list(itertools.product(widths, optimizers, batch_sizes))
    if bayes_baseline:
        settings.append((widths[0], POSTERIOR, 0))
    for width, opt, bs in settings:
        net = make_net(width)
        if opt == POSTERIOR:
            funcs, counts, _ = sample_posterior_functions(net, problem, runs, seed=seed)
            sample = SGDSample(funcs, counts.tolist(), runs, runs, 0.0, 0.0)
        else:
            sample = sample_sgd_functions(net, problem, runs=runs, optimizer=opt,
                                          batch_size=bs, learning_rate=learning_rate,
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
        if callback is not None:
            callback(result)
    return result
