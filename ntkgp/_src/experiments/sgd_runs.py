r"""Many SGD runs to the first epoch that fits the training set, at full machine use.

Each run has its own initialisation and minibatch stream, both drawn from the key
``fold_in(PRNGKey(seed), run index)``, so what a run finds does not depend on how runs are
scheduled. Runs go through a fixed set of ``vmap``-ed *slots*: one compiled call trains
every slot for one epoch, and a slot whose run has fitted ``S`` (or used up its epochs)
takes the next run at once, so a long run never holds up the others (with runs trained in
fixed groups, the slowest run of a group sets its cost: half the work was wasted on
binarized digits).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkgp._src import checks
from ntkgp._src.empirical.functions import as_apply_fn
from ntkgp._src.experiments.boolean import BooleanProblem, function_frequencies, pack_functions
from ntkgp._src.experiments.journal import Journal
from ntkgp._src.predict.dynamics import max_learning_rate
from ntkgp._src.progress import progress_counter
from ntkgp._src.train.losses import mse_loss
from ntkgp._src.train.models import PlainApply
from ntkgp._src.train.training import make_optimizer


def _where(mask, new, old):
    return jax.tree.map(lambda a, b: jnp.where(mask, a, b), new, old)


@functools.partial(jax.jit, static_argnames=("optimizer", "batch_size"),
                   donate_argnames=("params", "opt_state"))
def _epoch(apply, optimizer, learning_rate, params, opt_state, epochs, fresh, keys, x, y,
           x_test, batch_size, max_epochs):
    """One epoch for every slot (leading axis of ``params``, ``epochs``, ``keys``).

    A slot first checks its run: it *stops* when ``sign f = y`` on every training point
    or after ``max_epochs`` epochs, and then keeps its parameters; otherwise it trains one
    epoch (a permutation from ``fold_in(key, epoch)``, ``n // batch_size`` steps). ``fresh``
    slots hold a new run: its optimizer state and epoch count start at zero.

    Returns:
        ``(params, opt_state, epochs, fitted, stopped, signs)``: ``epochs`` are those trained
        before this call's check, ``signs`` the held-out ``f > 0`` at the check.
    """
    opt = make_optimizer(optimizer, learning_rate)
    n = x.shape[0]
    n_batches = n // batch_size

    def one(p, s, e, new, key):
        s = _where(new, opt.init(p), s)
        e = jnp.where(new, 0, e)
        fitted = jnp.all(apply(p, x)[:, 0] * y > 0)
        stop = fitted | (e >= max_epochs)
        signs = apply(p, x_test)[:, 0] > 0
        order = jax.random.permutation(jax.random.fold_in(key, e), n)

        def step(c, idx):
            q, t = c
            g = jax.grad(lambda r: mse_loss(apply(r, x[idx])[:, 0], y[idx]))(q)
            upd, t = opt.update(g, t, q)
            return (optax.apply_updates(q, upd), t), None

        (p2, s2), _ = jax.lax.scan(step, (p, s),
                                   order[: n_batches * batch_size].reshape(n_batches, -1))
        return (_where(stop, p, p2), _where(stop, s, s2), e + (~stop).astype(e.dtype),
                fitted, stop, signs)

    return jax.vmap(one)(params, opt_state, epochs, fresh, keys)


def _run_keys(seed: int, runs) -> tuple:
    """``(init keys, training keys)`` of the given run indices."""
    base = jax.random.PRNGKey(seed)
    both = jax.vmap(lambda i: jax.random.split(jax.random.fold_in(base, i)))(
        jnp.asarray(runs, jnp.uint32))
    return both[:, 0], both[:, 1]


def _new_runs(net, shape, seed, runs):
    """Initial parameters and training keys of the given run indices (leading axis)."""
    k_init, k_train = _run_keys(seed, runs)
    return jax.vmap(lambda k: net.init(k, shape)[1])(k_init), k_train


def _refill(net, shape, seed):
    """A compiled ``refill(params, keys, runs, new)``: the slots where ``new`` take the
    initial parameters and training keys of run ``runs[slot]`` (all slots at once: one
    program whatever the number of new runs)."""
    def refill(params, keys, runs, new):
        p_new, k_new = _new_runs(net, shape, seed, runs)
        return _where_rows(new, p_new, params), _where_rows(new, k_new, keys)
    return jax.jit(refill, donate_argnums=(0, 1))


def _where_rows(mask, new, old):
    return jax.tree.map(lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
                        new, old)


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


def default_learning_rate(net, x, optimizer: str) -> float:
    """Half the largest stable full-batch step of the analytic NTK on the training inputs
    ``x`` (``'sgd'``; a tenth of that for ``'momentum'``), ``1e-3`` for ``'adam'``."""
    if optimizer == "adam":
        return 1e-3
    x = jnp.asarray(x, jnp.result_type(float))
    rate = 0.5 * float(max_learning_rate(net.kernel(x, None, "ntk")))
    return rate * (0.1 if optimizer == "momentum" else 1.0)


def sample_sgd_functions(net, problem: BooleanProblem, *, runs: int = 1000,
                         optimizer: str = "sgd", batch_size: int = 16,
                         learning_rate: Optional[float] = None, max_epochs: int = 500,
                         seed: int = 0, chunk: Optional[int] = None,
                         journal: Optional[str] = None,
                         show_progress: bool = True) -> SGDSample:
    """Train ``runs`` networks from independent initialisations until they fit ``S`` and
    record the function each finds on the held-out points.

    ``chunk`` runs train at once (``vmap``-ed slots); a slot whose run is done takes the
    next run. Each step streams every slot's parameters through the cache, so the default
    ``chunk`` keeps them near 2.5 MB (64 slots for a 64-64-64-1 ReLU net in float32; on 2
    cores that ran 36 runs a second on 500 binarized digits against 27 with 128 slots).
    Run ``i`` is drawn from ``fold_in(PRNGKey(seed), i)`` alone, so the functions found do
    not depend on ``chunk`` (up to floating-point rounding, which can differ between batch
    shapes). A KeyboardInterrupt propagates. With ``journal``, each group of ``chunk``
    consecutive runs is appended to a checksummed file in that folder once all its runs are
    done, and a later call with the same settings reads the groups back instead of training
    them again: an interrupted or killed call loses only the runs in flight.

    Args:
        net: an ``ntkgp.nn`` network with one output.
        problem: a `BooleanProblem`.
        runs: number of initialisations.
        optimizer: ``'sgd'``, ``'momentum'`` (heavy ball 0.9) or ``'adam'``.
        batch_size: minibatch size (``n_train // batch_size`` steps an epoch).
        learning_rate: default `default_learning_rate`.
        max_epochs: a run that has not fitted ``S`` after this many epochs is dropped.
        seed: seed of initialisations and minibatches.
        chunk: runs trained at once, and runs per journal entry (default: from the size of
            the parameters, a power of two from 8 to 256).
        journal: a folder for the journal of finished runs (``None``: none). The file is
            named by a hash of everything that determines the runs; a changed line raises
            `JournalError`.
        show_progress: show a progress bar of finished runs (with the time left).

    Returns:
        An `SGDSample`.
    """
    checks.check_choice(optimizer, "optimizer", checks.OPTIMIZERS)
    runs = checks.check_positive_int(runs, "runs")
    max_epochs = checks.check_positive_int(max_epochs, "max_epochs")
    batch_size = checks.check_positive_int(batch_size, "batch_size")
    n_train = problem.train.size
    if batch_size > n_train:
        raise ValueError(f"`batch_size` ({batch_size}) exceeds the {n_train} training points.")
    dtype = jnp.result_type(float)
    x = jnp.asarray(problem.x[problem.train], dtype)
    data = (x, jnp.asarray(problem.y[problem.train], dtype),
            jnp.asarray(problem.x[problem.test], dtype))
    if chunk is None:
        size = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(
            jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), x.shape)[1])))
        chunk = int(2 ** np.clip(np.round(np.log2(2.5e6 / size)), 3, 8))
    chunk = checks.check_positive_int(chunk, "chunk")
    if learning_rate is None:
        learning_rate = default_learning_rate(net, x, optimizer)
    elif not (np.isscalar(learning_rate) and np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"`learning_rate` must be a positive number or None; got "
                         f"{learning_rate!r}.")
    book, done = None, {}
    if journal is not None:
        book = Journal(journal, _run_settings(net, problem, optimizer, batch_size,
                                              learning_rate, max_epochs, seed, chunk, dtype))
        done = book.read()    # groups of an earlier call with other `runs` may not fit
    lr = jnp.asarray(learning_rate, dtype)
    opt = make_optimizer(optimizer, lr)
    train = functools.partial(_epoch, PlainApply(as_apply_fn(net)), optimizer, lr,
                              x=data[0], y=data[1], x_test=data[2], batch_size=batch_size,
                              max_epochs=max_epochs)
    bar = progress_counter(runs, desc="SGD runs", enabled=show_progress)
    groups = _Groups(runs, chunk, done, book, bar)
    pending = groups.pending()
    bar.update(runs - len(pending))
    try:
        _train_pending(net, train, opt, x.shape, seed, pending,
                       min(chunk, max(len(pending), 1)), groups)
    finally:
        bar.close()
    names = [f for g in sorted(done) for f in done[g]["names"]]
    epochs = [e for g in sorted(done) for e in done[g]["epochs"]]
    functions, counts = function_frequencies(names)
    return SGDSample(functions, [int(c) for c in counts], runs, len(names),
                     float(np.mean(epochs)) if epochs else float("nan"), float(learning_rate))


def _train_pending(net, train, opt, shape, seed, pending, slots, groups):
    """Push the ``pending`` run indices through ``slots`` slots, handing each run that stops
    to ``groups.stopped``."""
    if not pending:
        return
    queue = iter(pending)
    slot_run = np.array([next(queue) for _ in range(slots)])
    params, keys = _new_runs(net, shape, seed, slot_run)
    refill = _refill(net, shape, seed)
    opt_state, epochs = jax.vmap(opt.init)(params), jnp.zeros(slots, jnp.int32)
    fresh = np.ones(slots, bool)
    while (slot_run >= 0).any():
        params, opt_state, epochs, fitted, stopped, signs = train(
            params=params, opt_state=opt_state, epochs=epochs, fresh=jnp.asarray(fresh),
            keys=keys)
        ended = np.flatnonzero(np.asarray(stopped) & (slot_run >= 0))
        fresh[:] = False
        if not ended.size:
            continue
        fitted, e, s = np.asarray(fitted), np.asarray(epochs), np.asarray(signs)
        for i in ended:
            groups.stopped(int(slot_run[i]), bool(fitted[i]), int(e[i]), s[i])
        slot_run[ended] = [next(queue, -1) for _ in ended]
        fresh[ended[slot_run[ended] >= 0]] = True
        if fresh.any():
            params, keys = refill(params, keys, np.maximum(slot_run, 0), fresh)


class _Groups:
    """Runs in groups of ``chunk`` consecutive indices; a group whose runs have all stopped
    goes into ``done`` (the names and epochs of its fitted runs, in run order) and, with a
    journal, is appended to it."""

    def __init__(self, runs, chunk, done, book, bar):
        self.chunk, self.done, self.book, self.bar = chunk, done, book, bar
        self.size = {g: min(chunk, runs - g * chunk) for g in range(-(-runs // chunk))}
        for g in [g for g in done if self.size.get(g) != done[g]["size"]]:
            del done[g]
        self.left = {g: n for g, n in self.size.items() if g not in done}
        self.results: dict = {}

    def pending(self) -> list:
        return [r for g in self.left for r in range(g * self.chunk, g * self.chunk + self.size[g])]

    def stopped(self, run, fitted, epochs, signs):
        self.bar.update(1)
        self.results[run] = (fitted, epochs, signs)
        g = run // self.chunk
        self.left[g] -= 1
        if self.left[g]:
            return
        del self.left[g]
        got = [self.results.pop(r) for r in range(g * self.chunk, g * self.chunk + self.size[g])]
        fit = [r for r in got if r[0]]
        self.done[g] = {"size": self.size[g], "epochs": [r[1] for r in fit],
                        "names": pack_functions([r[2] for r in fit]) if fit else []}
        if self.book is not None:
            self.book.append(g, self.done[g])


def _run_settings(net, problem, optimizer, batch_size, learning_rate, max_epochs, seed, chunk,
                  dtype):
    """Everything that determines a group's runs, for the journal's fingerprint."""
    data = hashlib.sha256()
    for a in (problem.x, problem.y, problem.train, problem.test):
        data.update(np.ascontiguousarray(a).tobytes())
    return {"problem": data.hexdigest(), "net": repr(net), "optimizer": optimizer,
            "batch_size": batch_size, "learning_rate": float(learning_rate),
            "max_epochs": max_epochs, "seed": seed, "chunk": chunk, "dtype": str(dtype),
            "jax": jax.__version__, "runs": "fold_in(seed, run index), slots"}
