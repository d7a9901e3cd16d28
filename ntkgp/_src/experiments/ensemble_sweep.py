r"""Ensembles of trained networks against the infinite-width closed forms, as width and the
number of seeds grow.

For each width, ``S`` networks (``vmap``-ed over seeds) are trained by full-batch gradient
descent for time :math:`t = \eta \times \text{steps}`. The empirical mean :math:`\hat\mu` and
covariance :math:`\hat\Sigma` of their test outputs (over seeds, pooling the ``K`` outputs,
which share one covariance) are compared with

* the ensemble closed form :math:`\mathcal N(\mu_t, \Sigma_t)` of
  `ntkgp.predict.gradient_descent_mse_ensemble` at the same ``t`` (the network's NTK
  dynamics from a random NNGP initial function), and
* the NNGP posterior :math:`\mathcal N(\mu_B, \Sigma_B)` of `ntkgp.predict.gp_inference`
  (noise-free, with ``diag_reg``), which the ensemble approaches only when the readout alone
  trains; it is reported so that a reader sees how far apart the two pictures are.

A finite ensemble has Monte-Carlo error even at infinite width. For ``s`` independent draws
of :math:`\mathcal N(\mu, \Sigma)` (``K`` outputs each),
:math:`E\|\hat\mu - \mu\|^2 = K\operatorname{tr}\Sigma / s` and, for the sample covariance,
:math:`E\|\hat\Sigma - \Sigma\|_F^2 = (\|\Sigma\|_F^2 + (\operatorname{tr}\Sigma)^2)/(K(s-1))`
(Wishart variances). Each error is reported beside this expected Monte-Carlo error, and the
part attributed to finite width is :math:`\sqrt{\max(e^2 - e_{MC}^2, 0)}`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, ClassVar, Optional, Sequence

import jax
import numpy as np

from ntkgp._src import checks
from ntkgp._src.predict.dynamics import max_learning_rate
from ntkgp._src.predict.ensemble import gradient_descent_mse_ensemble
from ntkgp._src.predict.gp import gp_inference
from ntkgp._src.progress import progress_bar
from ntkgp._src.train.training import train
from ntkgp._src.util import RowsJson


@dataclasses.dataclass
class EnsembleRow:
    """Errors of one ensemble (``seeds`` networks of one width).

    Attributes:
        width, seeds: the setting.
        mean_err, cov_err: relative errors :math:`\\|\\hat\\mu - \\mu_t\\| / \\|\\mu_t\\|`
            and :math:`\\|\\hat\\Sigma - \\Sigma_t\\|_F / \\|\\Sigma_t\\|_F` against the closed
            form at time ``t``.
        mean_err_mc, cov_err_mc: the expected errors of ``seeds`` exact draws of
            :math:`\\mathcal N(\\mu_t, \\Sigma_t)` (relative, as above).
        mean_err_width, cov_err_width: :math:`\\sqrt{\\max(e^2 - e_{MC}^2, 0)}`, the part
            attributed to finite width.
        mean_err_nngp, cov_err_nngp: relative errors against the NNGP posterior.
    """

    width: int
    seeds: int
    mean_err: float
    cov_err: float
    mean_err_mc: float
    cov_err_mc: float
    mean_err_width: float
    cov_err_width: float
    mean_err_nngp: float
    cov_err_nngp: float


@dataclasses.dataclass
class EnsembleResult(RowsJson):
    """Plain data of `ensemble_sweep`; ``to_json``/``from_json`` round-trip it.

    Attributes:
        widths, seeds, steps, learning_rate, t: the settings.
        rows: one `EnsembleRow` per (width, number of seeds), the seeds nested (the first
            ``s`` networks of the largest ensemble).
        dist_closed_form_nngp: :math:`\\|\\mu_t - \\mu_B\\| / \\|\\mu_B\\|`, how far the two
            infinite-width pictures are from each other.
        info: free-form labels.
    """

    ROW: ClassVar[type] = EnsembleRow

    widths: list
    seeds: list
    steps: int
    learning_rate: float
    t: float
    rows: list
    dist_closed_form_nngp: float
    info: dict = dataclasses.field(default_factory=dict)

    def table(self) -> str:
        """A fixed-width text table, one line per row."""
        lines = [f"{'width':>6} {'seeds':>5} {'mean err':>9} {'MC':>7} {'width part':>10} "
                 f"{'cov err':>8} {'MC':>7} {'width part':>10} {'vs NNGP mean':>12}"]
        for r in self.rows:
            lines.append(f"{r.width:>6} {r.seeds:>5} {r.mean_err:>9.4f} {r.mean_err_mc:>7.4f} "
                         f"{r.mean_err_width:>10.4f} {r.cov_err:>8.4f} {r.cov_err_mc:>7.4f} "
                         f"{r.cov_err_width:>10.4f} {r.mean_err_nngp:>12.4f}")
        return "\n".join(lines)


def sample_moments(outputs):
    """Sample mean ``(M, K)`` and covariance ``(M, M)`` over seeds, pooling the K outputs."""
    s = outputs.shape[0]
    mean = outputs.mean(0)
    dev = outputs - mean
    cov = np.einsum("smk,snk->mn", dev, dev) / ((s - 1) * outputs.shape[2])
    return mean, cov


def relative_errors(mean, cov, mu, sigma):
    return (float(np.linalg.norm(mean - mu) / np.linalg.norm(mu)),
            float(np.linalg.norm(cov - sigma) / np.linalg.norm(sigma)))


def ensemble_sweep(make_net: Callable[[int], object], widths: Sequence[int], x_train, y_train,
                   x_test, *, seeds: Sequence[int] = (4, 16, 64), steps: int = 500,
                   learning_rate: Optional[float] = None, diag_reg: float = 1e-6, key=None,
                   show_progress: bool = True,
                   callback: Optional[Callable[[EnsembleResult], None]] = None
                   ) -> EnsembleResult:
    r"""Train ``max(seeds)`` networks of each width by full-batch gradient descent and compare
    the mean and covariance of their test outputs with the closed forms.

    Args:
        make_net: ``make_net(width)`` returns an ``ntkgp.nn`` network in the NTK
            parameterization (its analytic kernels must not depend on the width).
        widths: hidden widths.
        x_train: inputs ``(N, d)`` (or images ``(N, H, W, C)`` for convolutional networks);
            y_train: targets ``(N, K)`` or ``(N,)``.
        x_test: inputs ``(M, d)``.
        seeds: ensemble sizes to report (each at least 2); the first ``s`` of the
            ``max(seeds)`` networks form each.
        steps: gradient-descent steps.
        learning_rate: default half the largest stable step of the analytic NTK.
        diag_reg: relative diagonal regularization of the closed forms' solves.
        key: PRNG key of the initialisations (default ``PRNGKey(0)``).
        show_progress: show a progress bar over widths.
        callback: called with the partial result after each width.

    Returns:
        An `EnsembleResult`.

    Example:
        >>> import numpy as np
        >>> from ntkgp import nn
        >>> from ntkgp.experiments import ensemble_sweep
        >>> x = np.random.default_rng(0).normal(size=(12, 2)); y = np.sin(x[:, :1])
        >>> r = ensemble_sweep(lambda w: nn.serial(nn.Dense(w), nn.Relu(), nn.Dense(1)),
        ...                    [32], x[:8], y[:8], x[8:], seeds=[2, 4], steps=20,
        ...                    show_progress=False)
        >>> [(row.width, row.seeds) for row in r.rows]
        [(32, 2), (32, 4)]
    """
    widths = [checks.check_positive_int(w, "width") for w in widths]
    seeds = sorted(checks.check_positive_int(s, "seeds") for s in seeds)
    if not seeds or seeds[0] < 2:
        raise ValueError(f"`seeds` must be ensemble sizes of at least 2 (a covariance needs "
                         f"two draws); got {seeds}.")
    steps = checks.check_positive_int(steps, "steps")
    x_train, x_test = checks.check_inputs(x_train, x_test, ndim=None)   # images too
    y, _ = checks.check_targets(y_train, x_train.shape[0])
    key = jax.random.PRNGKey(0) if key is None else key
    net0 = make_net(widths[0])
    k_dd = net0.kernel(x_train, None)
    k_td = net0.kernel(x_test, x_train)
    k_tt = net0.kernel(x_test, None, "nngp")
    if len(widths) > 1 and not np.allclose(
            np.asarray(k_dd.ntk), np.asarray(make_net(widths[-1]).kernel(x_train, None).ntk),
            rtol=1e-4):
        raise ValueError("the analytic NTK of `make_net(width)` changes with the width: use "
                         "the NTK parameterization (the default of nn.Dense).")
    lr = learning_rate or 0.5 * float(max_learning_rate(k_dd.ntk, n_outputs=y.shape[1]))
    t = lr * steps
    ens = gradient_descent_mse_ensemble(net0, x_train, y, learning_rate=lr, diag_reg=diag_reg)
    mu, sigma = (np.asarray(a, np.float64) for a in ens(t, x_test, "ntk", compute_cov=True))
    post = gp_inference(k_dd.nngp, y, diag_reg=diag_reg)
    mu_b, sigma_b = (np.asarray(a, np.float64)
                     for a in post.predict(k_td.nngp, k_tt, get="nngp"))
    n_out = y.shape[1]
    tr, fro2 = float(np.trace(sigma)), float(np.sum(sigma ** 2))
    result = EnsembleResult(widths, seeds, steps, lr, t, [],
                            float(np.linalg.norm(mu - mu_b) / np.linalg.norm(mu_b)))
    keys = jax.random.split(key, seeds[-1])
    for width in progress_bar(widths, desc="widths", enabled=show_progress):
        net = make_net(width)

        def one(k, net=net):
            _, p0 = net.init(k, x_train.shape)
            p, _ = train(net, p0, x_train, y, steps=steps, learning_rate=lr,
                         record_every=steps)
            return net.apply(p, x_test)

        out = np.asarray(jax.jit(jax.vmap(one))(keys), np.float64)
        for s in seeds:
            mean, cov = sample_moments(out[:s])
            e_mean, e_cov = relative_errors(mean, cov, mu, sigma)
            mc_mean = math.sqrt(n_out * tr / s) / float(np.linalg.norm(mu))
            mc_cov = math.sqrt((fro2 + tr ** 2) / (n_out * (s - 1))) / math.sqrt(fro2)
            b_mean, b_cov = relative_errors(mean, cov, mu_b, sigma_b)
            result.rows.append(EnsembleRow(
                width, s, e_mean, e_cov, mc_mean, mc_cov,
                math.sqrt(max(e_mean ** 2 - mc_mean ** 2, 0.0)),
                math.sqrt(max(e_cov ** 2 - mc_cov ** 2, 0.0)), b_mean, b_cov))
        if callback is not None:
            callback(result)
    return result
