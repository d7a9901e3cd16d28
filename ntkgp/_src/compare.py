r"""Finite networks against their infinite-width predictions, as width grows.

For each width and seed, one network is trained (`ntkgp.train.train`) and compared with
(a) its own linearized model trained identically, and
(b) the closed form from *its own* initial outputs with the analytic NTK at the same time
    :math:`t = \eta \times \text{steps}` (`ntkgp.predict.gradient_descent_mse`), so that the
    random initial function cancels;
(c) the ensemble over seeds is compared with `ntkgp.predict.gradient_descent_mse_ensemble`:
    ``ensemble_chi2`` is the mean of :math:`(\bar f - \mu_t)^2 / (\sigma_t^2 / S)` over test
    points and outputs (about 1 when the S networks are draws of the predicted Gaussian: the
    random initial function does not average out over a few seeds, so raw distances would not
    shrink), and ``ensemble_var_ratio`` the mean variance over seeds divided by the predicted
    :math:`\sigma_t^2`;
(d) test errors of trained nets, linearized nets, the NTK ensemble mean and the NNGP posterior.
Distances are relative: :math:`\|f - g\| / \|g\|` over test points and outputs, averaged over
seeds as a root mean square. In the kernel regime (a) and (b) fall like
:math:`\text{width}^{-1/2}`.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.predict.common import check_targets
from ntkgp._src.predict.dynamics import gradient_descent_mse, max_learning_rate
from ntkgp._src.predict.ensemble import gradient_descent_mse_ensemble
from ntkgp._src.predict.gp import gp_inference
from ntkgp._src.progress import progress_bar
from ntkgp._src.train import linearize, ntk_drift, train


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def _rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


@dataclasses.dataclass
class WidthResult:
    """Averages over seeds at one width (see `width_sweep`)."""

    width: int
    dist_net_linearized: float
    dist_net_closed_form: float
    param_change: float
    ntk_drift: float
    test_rmse_net: float
    test_rmse_linearized: float
    ensemble_chi2: float
    ensemble_var_ratio: float


@dataclasses.dataclass
class SweepResult:
    """Plain data of a width sweep; ``to_json``/``from_json`` round-trip it.

    Attributes:
        widths, seeds, steps, learning_rate, t: the settings (``t = learning_rate * steps``).
        rows: one `WidthResult` per width.
        test_rmse_ntk: test RMSE of the infinite-width NTK ensemble mean at time ``t``.
        test_rmse_nngp: test RMSE of the NNGP posterior mean.
        slopes: log-log slope against width of each distance, fitted by least squares.
    """

    widths: list
    seeds: int
    steps: int
    learning_rate: float
    t: float
    rows: list
    test_rmse_ntk: float
    test_rmse_nngp: float
    slopes: dict

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> SweepResult:
        d = json.loads(text)
        d["rows"] = [WidthResult(**r) for r in d["rows"]]
        return cls(**d)


def _slope(widths, values):
    w, v = np.log(np.asarray(widths, np.float64)), np.asarray(values, np.float64)
    if len(w) < 2 or np.any(v <= 0):
        return float("nan")
    return float(np.polyfit(w, np.log(v), 1)[0])


def width_sweep(make_net: Callable[[int], object], widths: Sequence[int], x_train, y_train,
                x_test, y_test, *, seeds: int = 4, steps: int = 500,
                learning_rate: Optional[float] = None, diag_reg: float = 0.0,
                key=None, show_progress: bool = True) -> SweepResult:
    r"""Train networks of several widths by full-batch gradient descent and compare them with
    their linearizations and the infinite-width closed forms.

    Args:
        make_net: ``make_net(width)`` returns an ``ntkgp.nn`` network in the NTK
            parameterization (its analytic kernel must not depend on the width).
        widths: hidden widths, e.g. ``[64, 256, 1024]``.
        x_train: inputs of shape ``(N, d)``; y_train: targets ``(N, K)``.
        x_test: inputs ``(M, d)``; y_test: targets ``(M, K)``.
        seeds: networks per width; initializations are ``vmap``-ed.
        steps: gradient-descent steps.
        learning_rate: :math:`\eta`; default half of `max_learning_rate` of the analytic NTK.
        diag_reg: regularization of the closed forms (0: exact).
        key: PRNG key of the initializations.
        show_progress: a progress bar over widths.

    Returns:
        A `SweepResult`.
    """
    widths = [checks.check_positive_int(w, "widths") for w in widths]
    seeds = checks.check_positive_int(seeds, "seeds")
    steps = checks.check_positive_int(steps, "steps")
    x_train, x_test = checks.check_inputs(x_train, x_test)
    y_train = check_targets(y_train, x_train.shape[0])[0].astype(x_train.dtype)
    y_test = check_targets(y_test, x_test.shape[0], "y_test")[0].astype(x_train.dtype)
    key = jax.random.PRNGKey(0) if key is None else key
    analytic = make_net(widths[0]).kernel
    k_dd, k_td = analytic(x_train, None), analytic(x_test, x_train)
    lr = learning_rate or 0.5 * float(max_learning_rate(k_dd.ntk, n_outputs=y_train.shape[1]))
    t = lr * steps
    ens = gradient_descent_mse_ensemble(make_net(widths[0]), x_train, y_train,
                                        learning_rate=lr, diag_reg=diag_reg)
    ens_mean, ens_cov = ens(t, x_test, "ntk", compute_cov=True)
    ens_var = np.asarray(jnp.diagonal(ens_cov), np.float64)[:, None]
    nngp_mean = gp_inference(k_dd, y_train, diag_reg=max(diag_reg, 1e-6), get="nngp").predict(
        k_td, get="nngp")
    closed = gradient_descent_mse(k_dd.ntk, y_train, learning_rate=lr, diag_reg=diag_reg)
    rows = []
    keys = jax.random.split(key, seeds)
    for width in progress_bar(widths, total=len(widths), desc="widths", enabled=show_progress):
        net = make_net(width)

        def one(k, net=net):
            _, p0 = net.init(k, x_train.shape)
            p, hist = train(net, p0, x_train, y_train, steps=steps, learning_rate=lr,
                            x_test=x_test, record_every=steps)
            lin = linearize(net, p0)
            p_lin, _ = train(lin, p0, x_train, y_train, steps=steps, learning_rate=lr,
                             record_every=steps)
            return (net.apply(p0, x_train), net.apply(p0, x_test), net.apply(p, x_test),
                    lin(p_lin, x_test), hist.param_change[-1], p0, p)

        f0_tr, f0_te, f_net, f_lin, change, p0s, ps = jax.vmap(one)(keys)
        f_closed = jnp.stack([closed(t, f0_tr[s], f0_te[s], k_td.ntk)[1] for s in range(seeds)])
        drift = [float(ntk_drift(net, jax.tree.map(lambda a: a[s], p0s),
                                 jax.tree.map(lambda a: a[s], ps), x_train[:64]))
                 for s in range(seeds)]
        rms = lambda v: float(np.sqrt(np.mean(np.square(v))))  # noqa: E731
        rows.append(WidthResult(
            width=width,
            dist_net_linearized=rms([_rel(f_net[s], f_lin[s]) for s in range(seeds)]),
            dist_net_closed_form=rms([_rel(f_net[s], f_closed[s]) for s in range(seeds)]),
            param_change=float(np.mean(np.asarray(change))),
            ntk_drift=float(np.mean(drift)),
            test_rmse_net=float(np.mean([_rmse(f_net[s], y_test) for s in range(seeds)])),
            test_rmse_linearized=float(np.mean([_rmse(f_lin[s], y_test) for s in range(seeds)])),
            ensemble_chi2=float(np.mean((np.mean(np.asarray(f_net, np.float64), 0) - np.asarray(
                ens_mean, np.float64)) ** 2 / (ens_var / seeds))),
            ensemble_var_ratio=float(np.mean(np.var(np.asarray(f_net, np.float64), 0, ddof=1))
                                     / np.mean(ens_var)) if seeds > 1 else float("nan")))
    slopes = {name: _slope(widths, [getattr(r, name) for r in rows])
              for name in ("dist_net_linearized", "dist_net_closed_form", "param_change",
                           "ntk_drift")}
    return SweepResult(widths=widths, seeds=seeds, steps=steps, learning_rate=lr, t=t,
                       rows=rows, test_rmse_ntk=_rmse(ens_mean, y_test),
                       test_rmse_nngp=_rmse(nngp_mean, y_test), slopes=slopes)
