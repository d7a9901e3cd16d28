r"""Large learning rates: where the linearized network diverges and the network does not.

Gradient descent on the squared error with step :math:`\eta` is stable for the linearized
network iff :math:`\eta < \eta_c = 2NK/\lambda_{\max}(\hat\Theta_0)` (`max_learning_rate` of
the network's own NTK at initialization). Above it the linearization diverges, while a finite
network can still converge: in the *catapult* phase (Lewkowycz et al. 2020) its loss first
grows, the NTK's top eigenvalue falls until :math:`\eta < 2NK/\lambda_{\max}(\hat\Theta_t)`, and
training settles in a flatter region, out of its tangent space. Beyond a few times
:math:`\eta_c` the network diverges too.

`learning_rate_sweep` trains one network and its linearization from the same
:math:`\theta_0` at steps :math:`c\,\eta_c` for several factors :math:`c`, and records the
training loss, :math:`\lambda_{\max}(\hat\Theta_t)` and the distance between the two on test
points as training goes.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.empirical.empirical import empirical_ntk_fn
from ntkgp._src.experiments.metrics import rel, rmse
from ntkgp._src.predict.dynamics import max_learning_rate
from ntkgp._src.progress import progress_bar
from ntkgp._src.train.losses import mse_loss
from ntkgp._src.train.models import linearize
from ntkgp._src.util import RowsJson


@dataclasses.dataclass
class RateRow:
    """One learning rate (see `learning_rate_sweep`).

    Attributes:
        factor: :math:`c = \\eta / \\eta_c`.
        learning_rate: :math:`\\eta`.
        steps: the steps at which the lists below are recorded.
        loss_net, loss_linearized: training loss at those steps (``None`` once not finite).
        lambda_max: :math:`\\lambda_{\\max}(\\hat\\Theta_t)` of the network at those steps,
            divided by its value at initialization.
        dist_net_linearized: relative distance of test outputs at those steps (``None`` once
            either is not finite).
        diverged_net, diverged_linearized: whether the final loss is not finite or above its
            initial value.
        test_rmse_net: final test RMSE of the network (``None`` if it diverged).
    """

    factor: float
    learning_rate: float
    steps: list
    loss_net: list
    loss_linearized: list
    lambda_max: list
    dist_net_linearized: list
    diverged_net: bool
    diverged_linearized: bool
    test_rmse_net: Optional[float]


@dataclasses.dataclass
class RateResult(RowsJson):
    """Plain data of a learning-rate sweep; ``to_json``/``from_json`` round-trip it.

    Attributes:
        width, steps: the settings.
        critical_learning_rate: :math:`\\eta_c` of the network's NTK at initialization.
        rows: one `RateRow` per factor.
        info: labels set by the caller.
    """

    ROW: ClassVar[type] = RateRow

    width: int
    steps: int
    critical_learning_rate: float
    rows: list
    info: dict = dataclasses.field(default_factory=dict)


def _finite(v):
    v = float(v)
    return v if np.isfinite(v) else None


def learning_rate_sweep(make_net, width: int, x_train, y_train, x_test, y_test, *,
                        factors: Sequence[float] = (0.5, 0.9, 1.2, 1.5, 2.0, 3.0),
                        steps: int = 400, records: int = 20, key=None,
                        show_progress: bool = True, info: Optional[dict] = None,
                        callback=None) -> RateResult:
    r"""Train a network and its linearization at multiples of the critical step
    :math:`\eta_c` of the network's NTK at initialization (squared error, full batch).

    Args:
        make_net: ``make_net(width)`` returns an ``ntkgp.nn`` network.
        width: its hidden width.
        x_train: inputs ``(N, ...)``; y_train: targets ``(N, K)``.
        x_test: inputs ``(M, ...)``; y_test: targets ``(M, K)``.
        factors: :math:`c = \eta / \eta_c`, each > 0.
        steps: gradient-descent steps.
        records: about how many times to record loss, :math:`\lambda_{\max}` and distances
            (geometrically spaced, so that the first steps, where a catapult happens, are
            seen; each record computes an empirical NTK of the training points).
        key: PRNG key of the initialization (one network, the same for every factor).
        show_progress: a progress bar over factors.
        info: labels stored in the result.
        callback: called with the partial result after each factor.

    Returns:
        A `RateResult`.

    References:
        Lewkowycz et al. 2020, "The large learning rate phase of deep learning: the catapult
        mechanism", https://arxiv.org/abs/2003.02218.
    """
    width = checks.check_positive_int(width, "width")
    steps = checks.check_positive_int(steps, "steps")
    records = checks.check_positive_int(records, "records")
    factors = [float(c) for c in factors]
    if not factors or any(not c > 0 for c in factors):
        raise ValueError(f"`factors` must be positive multiples of the critical step, e.g. "
                         f"(0.5, 1.5, 3); got {factors}.")
    x_train, x_test = checks.check_inputs(x_train, x_test, ndim=None)
    y_train = checks.check_targets(y_train, x_train.shape[0])[0].astype(x_train.dtype)
    y_test = checks.check_targets(y_test, x_test.shape[0], "y_test")[0].astype(x_train.dtype)
    key = jax.random.PRNGKey(0) if key is None else key
    net = make_net(width)
    _, p0 = net.init(key, x_train.shape)
    ntk = empirical_ntk_fn(net)
    n_out = y_train.shape[1]

    def lam(p):
        """The top eigenvalue of the network's empirical NTK (exactly symmetric: x2=None)."""
        return float(jnp.linalg.eigvalsh(ntk(x_train, None, p))[-1])

    k0 = ntk(x_train, None, p0)
    lam0 = float(jnp.linalg.eigvalsh(k0)[-1])
    eta_c = float(max_learning_rate(k0, n_outputs=n_out))  # 2 N K / lam0, checked
    lin = linearize(net, p0)

    def stepper(f):
        """One full-batch gradient-descent step of ``f`` (one compiled program for any step
        size; the records fall at uneven steps, which a scan per segment would recompile)."""
        def loss(p):
            return mse_loss(f(p, x_train), y_train)

        @jax.jit
        def step(p, lr):
            return jax.tree.map(lambda a, g: a - lr * g, p, jax.grad(loss)(p))
        return step, jax.jit(loss)

    step_net, loss_net = stepper(net.apply)
    step_lin, loss_lin = stepper(lin)
    marks = np.unique(np.round(np.geomspace(1, steps, records)).astype(int))
    result = RateResult(width=width, steps=steps, critical_learning_rate=eta_c, rows=[],
                        info=dict(info or {}))
    loss0 = float(jnp.mean((net.apply(p0, x_train) - y_train) ** 2)) / 2
    for c in progress_bar(factors, total=len(factors), desc="learning rates",
                          enabled=show_progress):
        lr = c * eta_c
        p, q = p0, p0
        row = RateRow(factor=c, learning_rate=lr, steps=[0], loss_net=[loss0],
                      loss_linearized=[loss0], lambda_max=[1.0],
                      dist_net_linearized=[0.0], diverged_net=False,
                      diverged_linearized=False, test_rmse_net=None)
        done = 0
        lr_arr = jnp.asarray(lr, x_train.dtype)
        for mark in marks:
            while done < mark:
                p, q = step_net(p, lr_arr), step_lin(q, lr_arr)
                done += 1
            ln, ll = _finite(loss_net(p)), _finite(loss_lin(q))
            row.steps.append(done)
            row.loss_net.append(ln)
            row.loss_linearized.append(ll)
            row.lambda_max.append(_finite(lam(p) / lam0) if ln is not None else None)
            fn, fl = net.apply(p, x_test), lin(q, x_test)
            ok = ln is not None and ll is not None and bool(
                jnp.all(jnp.isfinite(fn)) & jnp.all(jnp.isfinite(fl)))
            row.dist_net_linearized.append(rel(fn, fl) if ok else None)
            if ln is None and ll is None:
                break
        row.diverged_net = row.loss_net[-1] is None or row.loss_net[-1] > loss0
        row.diverged_linearized = (row.loss_linearized[-1] is None
                                   or row.loss_linearized[-1] > loss0)
        if not row.diverged_net:
            row.test_rmse_net = rmse(net.apply(p, x_test), y_test)
        result.rows.append(row)
        if callback is not None:
            callback(result)
    return result
