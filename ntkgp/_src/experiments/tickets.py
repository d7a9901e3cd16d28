r"""Two kinds of lottery ticket on the same networks, as width grows.

A *sub-network ticket* (Frankle & Carbin 2019) is found by iterative magnitude pruning: train
the dense network, remove the smallest weights (globally over all weight matrices, biases
kept), rewind the survivors to their initial values :math:`\theta_0` (or to an early iterate
:math:`\theta_k`, Frankle et al. 2020) and train again; repeat to each sparsity. A *tangent-space
ticket* is the function the linearized network reaches,
:math:`f(x, \theta_0) + J(x, \theta_0)\,\Delta\theta`, trained identically, and its
infinite-width closed form (the ODE for cross-entropy) from the same initial outputs.

For each width and seed, on test points, every candidate is set against the *trained dense
network's* function by the relative distance :math:`\|f - f_\text{net}\| / \|f_\text{net}\|`
(as in `width_sweep`), and by its own test error: the tangent-space tickets, the sub-network
tickets rewound to :math:`\theta_0` and to :math:`\theta_k`, a random mask of the same sparsity
retrained from :math:`\theta_0` (the control), the masked initial network before any training
(the strong hypothesis: is the ticket already good at initialization?) and the initial
network itself (the distance training covers).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.experiments.metrics import accuracy, rel, rms, rmse, slope
from ntkgp._src.experiments.reference import check_width_independent, default_step
from ntkgp._src.predict.dynamics import gradient_descent_mse
from ntkgp._src.predict.ode import gradient_descent
from ntkgp._src.progress import progress_bar
from ntkgp._src.train.losses import get_loss
from ntkgp._src.train.models import linearize
from ntkgp._src.train.training import train
from ntkgp._src.util import RowsJson

# candidates, in table order: (name, what it is)
CANDIDATES = {
    "linearized": "the linearization at θ0, trained identically",
    "closed_form": "the infinite-width prediction from the net's own initial outputs",
    "ticket": "IMP sub-network rewound to θ0, retrained",
    "ticket_k": "IMP sub-network rewound to θk, retrained",
    "random": "random mask of the same sparsity from θ0, retrained",
    "masked_init": "the θ0 ticket's mask on θ0, untrained",
    "init": "the initial network, untrained",
}
SPARSE = ("ticket", "ticket_k", "random", "masked_init")


def prunable(params):
    """A pytree of bools: which leaves are weight matrices (named ``'W'``), pruned; biases
    and other parameters are kept."""
    def is_weight(path, _):
        last = path[-1] if path else None
        return getattr(last, "key", None) == "W"
    return jax.tree_util.tree_map_with_path(is_weight, params)


def magnitude_mask(params, mask, density: float):
    """Global magnitude pruning: of the prunable weights, keep the ``density`` fraction of
    largest magnitude among those ``mask`` still keeps (pruned weights stay pruned).

    Args:
        params: the trained parameters (a pytree).
        mask: the current mask (same structure, 0/1 entries).
        density: fraction of all prunable weights to keep, in (0, 1].

    Returns:
        The new mask (non-prunable leaves all ones).
    """
    which = jax.tree.leaves(prunable(params))
    leaves, tree = jax.tree.flatten(params)
    masks = jax.tree.leaves(mask)
    scores = [jnp.where(m > 0, jnp.abs(p), -1.0).ravel()
              for p, m, w in zip(leaves, masks, which) if w]
    flat = jnp.concatenate(scores)
    keep = max(1, int(round(density * flat.shape[0])))
    threshold = jnp.sort(flat)[flat.shape[0] - keep]
    new = [jnp.where(jnp.abs(p) >= threshold, 1.0, 0.0).astype(p.dtype) * m if w
           else jnp.ones_like(p) for p, m, w in zip(leaves, masks, which)]
    return jax.tree.unflatten(tree, new)


def random_mask(params, density: float, key):
    """A random mask: each prunable weight kept with probability ``density``.

    Args:
        params: a pytree of parameters (only shapes and names are used).
        density: the probability of keeping a weight, in (0, 1].
        key: a ``jax.random`` key.

    Returns:
        A mask of the structure of ``params`` (0/1 weights; other leaves all ones).
    """
    leaves, tree = jax.tree.flatten(params)
    which = jax.tree.leaves(prunable(params))
    keys = jax.random.split(key, len(leaves))
    new = [jax.random.bernoulli(k, density, p.shape).astype(p.dtype) if w else jnp.ones_like(p)
           for p, w, k in zip(leaves, which, keys)]
    return jax.tree.unflatten(tree, new)


def _masked(apply, mask):
    def f(p, x):
        return apply(jax.tree.map(jnp.multiply, p, mask), x)
    return f


@dataclasses.dataclass
class TicketRow:
    """Averages over seeds at one width (see `lottery_tickets`).

    Attributes:
        width: the hidden width.
        dist: candidate name -> relative distance to the trained dense net's test outputs
            (root mean square over seeds); the sparse candidates hold one value per
            sparsity.
        error: candidate name (and ``'net'``) -> mean test error over seeds (RMSE, or for
            ``loss='xent'`` the error rate); sparse candidates per sparsity.
        accuracy: the same as test accuracies, for classification targets (else empty).
    """

    width: int
    dist: dict
    error: dict
    accuracy: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class TicketResult(RowsJson):
    """Plain data of a tickets experiment; ``to_json``/``from_json`` round-trip it.

    Attributes:
        widths, seeds, steps, learning_rate, rewind_step, sparsities, loss: the settings.
        rows: one `TicketRow` per finished width.
        slopes: log-log slope against width of each distance (sparse ones at each
            sparsity), ``None`` with fewer than two widths.
        info: free-form labels set by the caller.
    """

    ROW: ClassVar[type] = TicketRow

    widths: list
    seeds: int
    steps: int
    learning_rate: float
    rewind_step: int
    sparsities: list
    loss: str
    rows: list
    slopes: dict = dataclasses.field(default_factory=dict)
    info: dict = dataclasses.field(default_factory=dict)


def lottery_tickets(make_net: Callable[[int], object], widths: Sequence[int], x_train, y_train,
                    x_test, y_test, *, seeds: int = 2, steps: int = 1000,
                    sparsities: Sequence[float] = (0.5, 0.8, 0.9, 0.95),
                    rewind_step: Optional[int] = None, learning_rate: Optional[float] = None,
                    loss: str = "mse", key=None, show_progress: bool = True,
                    info: Optional[dict] = None,
                    callback: Optional[Callable[[TicketResult], None]] = None) -> TicketResult:
    r"""Sub-network tickets against tangent-space tickets at several widths.

    Every network is trained by full-batch gradient descent for ``steps`` steps (the
    closed form's dynamics). Iterative magnitude pruning reaches the sparsities in order, one
    round each, pruning the previous round's retrained ticket; two chains run, rewinding to
    :math:`\theta_0` and to :math:`\theta_k` (``rewind_step`` :math:`k`, retrained for the
    remaining ``steps - k``).

    Args:
        make_net: ``make_net(width)`` returns an ``ntkgp.nn`` network in the NTK
            parameterization.
        widths: hidden widths, e.g. ``[64, 256, 1024]``.
        x_train: inputs ``(N, ...)``; y_train: targets ``(N, K)``.
        x_test: inputs ``(M, ...)``; y_test: targets ``(M, K)``.
        seeds: networks per width (one compiled program runs them one after another).
        steps: gradient-descent steps of every training.
        sparsities: fractions of weights removed, increasing, each in (0, 1).
        rewind_step: :math:`k` of the late-rewinding chain (default ``steps // 20``).
        learning_rate: default half the largest stable step of the analytic NTK
            (`width_sweep`'s rule).
        loss: ``'mse'`` or ``'xent'`` (one-hot targets; the closed form is then the ODE).
        key: PRNG key of the initializations and random masks.
        show_progress: a progress bar over widths.
        info: labels stored in the result.
        callback: called with the partial result after each width.

    Returns:
        A `TicketResult`.

    Raises:
        ValueError: bad shapes or options.

    References:
        Frankle & Carbin 2019, https://arxiv.org/abs/1803.03635; Frankle et al. 2020,
        https://arxiv.org/abs/1912.05671; Lee et al. 2019, https://arxiv.org/abs/1902.06720.
    """
    widths = [checks.check_positive_int(w, "widths") for w in widths]
    if not widths:
        raise ValueError("`widths` must list at least one width, e.g. [64, 256, 1024].")
    seeds = checks.check_positive_int(seeds, "seeds")
    steps = checks.check_positive_int(steps, "steps")
    sparsities = [float(s) for s in sparsities]
    if not sparsities or any(not 0 < s < 1 for s in sparsities) or sorted(set(sparsities)) \
            != sparsities:
        raise ValueError(f"`sparsities` must be increasing fractions in (0, 1), e.g. "
                         f"(0.5, 0.8, 0.9); got {sparsities}.")
    k_rewind = max(1, steps // 20) if rewind_step is None else int(rewind_step)
    if not 0 < k_rewind < steps:
        raise ValueError(f"`rewind_step` must be in 1..steps-1 ({steps - 1}); got "
                         f"{rewind_step}.")
    checks.check_choice(loss, "loss", ("mse", "xent"))
    loss_fn = get_loss(loss)
    x_train, x_test = checks.check_inputs(x_train, x_test, ndim=None)
    y_train = checks.check_targets(y_train, x_train.shape[0])[0].astype(x_train.dtype)
    y_test = checks.check_targets(y_test, x_test.shape[0], "y_test")[0].astype(x_train.dtype)
    key = jax.random.PRNGKey(0) if key is None else key
    check_width_independent(make_net, widths, x_train[:4])
    analytic = make_net(widths[0]).kernel
    k_dd, k_td = analytic(x_train, None, "ntk"), analytic(x_test, x_train, "ntk")
    lr = learning_rate or default_step(k_dd, y_train.shape, loss)
    t = lr * steps
    if loss == "xent":
        closed = gradient_descent(loss_fn, k_dd, y_train)
    else:
        closed = gradient_descent_mse(k_dd, y_train, learning_rate=lr)
    kw = dict(learning_rate=lr, optimizer="gd", loss=loss)
    result = TicketResult(widths=widths, seeds=seeds, steps=steps, learning_rate=lr,
                          rewind_step=k_rewind, sparsities=sparsities, loss=loss, rows=[],
                          info=dict(info or {}))
    classes = y_train.shape[1] > 1

    def score(f):
        if loss == "xent":
            return 1.0 - accuracy(f, y_test)
        return rmse(f, y_test)

    keys = jax.random.split(key, seeds)
    for width in progress_bar(widths, total=len(widths), desc="widths", enabled=show_progress):
        net = make_net(width)

        def one(k, net=net):
            k_init, k_rand = jax.random.split(k)
            _, p0 = net.init(k_init, x_train.shape)
            p_k, _ = train(net.apply, p0, x_train, y_train, steps=k_rewind, **kw)
            p_t, _ = train(net.apply, p_k, x_train, y_train, steps=steps - k_rewind, **kw)
            p_lin, _ = train(linearize(net, p0), p0, x_train, y_train, steps=steps, **kw)
            out = {"net": net.apply(p_t, x_test), "init": net.apply(p0, x_test),
                   "linearized": linearize(net, p0)(p_lin, x_test),
                   "f0_train": net.apply(p0, x_train)}
            ones = jax.tree.map(jnp.ones_like, p0)
            chains = {"ticket": (p0, steps), "ticket_k": (p_k, steps - k_rewind)}
            for name, (rewind, n_steps) in chains.items():
                mask, current, outs, inits = ones, p_t, [], []
                for s in sparsities:
                    mask = magnitude_mask(current, mask, 1.0 - s)
                    model = _masked(net.apply, mask)
                    current, _ = train(model, rewind, x_train, y_train, steps=n_steps, **kw)
                    outs.append(model(current, x_test))
                    inits.append(model(p0, x_test))
                out[name] = jnp.stack(outs)
                if name == "ticket":
                    out["masked_init"] = jnp.stack(inits)
            rand = []
            for i, s in enumerate(sparsities):
                model = _masked(net.apply, random_mask(p0, 1.0 - s, jax.random.fold_in(k_rand, i)))
                p_r, _ = train(model, p0, x_train, y_train, steps=steps, **kw)
                rand.append(model(p_r, x_test))
            out["random"] = jnp.stack(rand)
            return out

        outs = jax.jit(lambda ks: jax.lax.map(one, ks))(keys)
        outs = {name: np.asarray(v, np.float64) for name, v in outs.items()}
        outs["closed_form"] = np.stack([
            np.asarray(closed(t, outs["f0_train"][s], outs["init"][s], k_td)[1], np.float64)
            for s in range(seeds)])
        net_f = outs["net"]
        dist, error, acc = {}, {"net": float(np.mean([score(f) for f in net_f]))}, {}
        if classes:
            acc["net"] = float(np.mean([accuracy(f, y_test) for f in net_f]))
        for name in CANDIDATES:
            f = outs[name]
            if name in SPARSE:  # (seeds, sparsities, M, K)
                dist[name] = [rms([rel(f[s, i], net_f[s]) for s in range(seeds)])
                              for i in range(len(sparsities))]
                error[name] = [float(np.mean([score(f[s, i]) for s in range(seeds)]))
                               for i in range(len(sparsities))]
                if classes:
                    acc[name] = [float(np.mean([accuracy(f[s, i], y_test)
                                                for s in range(seeds)]))
                                 for i in range(len(sparsities))]
            else:
                dist[name] = rms([rel(f[s], net_f[s]) for s in range(seeds)])
                error[name] = float(np.mean([score(f[s]) for s in range(seeds)]))
                if classes:
                    acc[name] = float(np.mean([accuracy(f[s], y_test) for s in range(seeds)]))
        result.rows.append(TicketRow(width=width, dist=dist, error=error, accuracy=acc))
        done = [r.width for r in result.rows]
        result.slopes = {}
        for name in CANDIDATES:
            if name in SPARSE:
                result.slopes[name] = [slope(done, [r.dist[name][i] for r in result.rows])
                                       for i in range(len(sparsities))]
            else:
                result.slopes[name] = slope(done, [r.dist[name] for r in result.rows])
        if callback is not None:
            callback(result)
    return result
