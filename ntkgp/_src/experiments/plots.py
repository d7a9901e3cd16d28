"""The figures of the experiments (matplotlib: ``pip install 'ntkgp[plot]'``): a width
sweep, SGD against the Bayesian posterior, ensembles against the closed forms, lottery
tickets, and where the tangent-space picture breaks (learning rates, laziness scale,
parameterization)."""

from __future__ import annotations

import math
import re

import numpy as np

_LABELS = {
    "dist_net_linearized": "(a) net vs its linearization",
    "dist_net_closed_form": "(b) net vs closed form from its init",
    "param_change": r"$\|\Delta\theta\| / \|\theta_0\|$",
    "ntk_drift": r"NTK drift $\|\Theta_T-\Theta_0\|/\|\Theta_0\|$",
}


def pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("plotting needs matplotlib: pip install 'ntkgp[plot]' (or pip "
                          "install matplotlib).") from e
    del matplotlib
    import matplotlib.pyplot as plt
    return plt


def plot(result, path=None):
    """Four panels: distances against width (log-log, with a width^-1/2 guide), test RMSE
    against width, training loss over steps (nets solid, closed forms dashed), and seed 0's
    test outputs against the closed form at the smallest and largest width.

    Args:
        result: a `SweepResult`.
        path: where to save the figure (PNG, PDF, ...); ``None`` to only return it.

    Returns:
        The matplotlib ``Figure``.
    """
    plt = pyplot()
    rows = result.rows
    if not rows:
        raise ValueError("the sweep has no finished width to plot.")
    widths = np.array([r.width for r in rows], np.float64)
    fig, ax = plt.subplots(2, 2, figsize=(11, 8.5))
    a = ax[0, 0]
    _distances(a, widths, rows, result.slopes)
    guide = rows[0].dist_net_closed_form * (widths / widths[0]) ** -0.5
    a.loglog(widths, guide, "k:", label=r"width$^{-1/2}$")
    a.set_xlabel("width")
    a.set_title("distances fall with width")
    a.legend(fontsize=7.5)
    a = ax[0, 1]
    a.semilogx(widths, [r.test_rmse_net for r in rows], "o-", label="trained nets")
    a.semilogx(widths, [r.test_rmse_linearized for r in rows], "s--", label="linearized nets")
    if rows[0].test_rmse_ntk is None:
        a.axhline(result.test_rmse_ntk, color="k", ls=":", label="NTK closed form (mean)")
    else:  # standard parameterization: each width has its own kernel
        a.semilogx(widths, [r.test_rmse_ntk for r in rows], "k:",
                   label="NTK closed form at each width (mean)")
    a.axhline(result.test_rmse_nngp, color="gray", ls="-.",
              label="NNGP posterior mean (noise by evidence)")
    a.set_xlabel("width")
    a.set_ylabel("test RMSE")
    a.set_title("test error")
    lo, hi = a.get_ylim()  # headroom above every line, where the legend goes
    a.set_ylim(lo, hi + 0.45 * (hi - lo))
    a.legend(fontsize=7.5, loc="upper center", ncol=2)
    a = ax[1, 0]
    steps = np.asarray(result.curve_steps)
    for r, c in zip(rows, plt.cm.viridis(np.linspace(0, 0.9, len(rows)))):
        a.semilogy(steps, r.train_loss_net, color=c, label=f"width {r.width}")
        a.semilogy(steps, r.train_loss_closed_form, color=c, ls="--")
    a.set_xlabel(f"step ({result.optimizer}, lr {result.learning_rate:.3g})")
    a.set_ylabel("training loss")
    a.set_title("training loss: nets (solid), closed forms (dashed)")
    a.legend(fontsize=8)
    a = ax[1, 1]
    for r, mark in ((rows[0], "x"), (rows[-1], "o")):
        a.plot(r.example_closed_form, r.example_net, mark, ms=4, alpha=0.7,
               label=f"width {r.width}")
    lim = [np.min(rows[-1].example_closed_form), np.max(rows[-1].example_closed_form)]
    a.plot(lim, lim, "k-", lw=0.8)
    a.set_xlabel("closed form from the net's own init")
    a.set_ylabel("trained net")
    a.set_title("test outputs, seed 0")
    a.legend(fontsize=8)
    fig.suptitle(f"finite width vs infinite width: {_sweep_title(result.info, widths)}",
                 fontsize=11)
    fig.tight_layout()
    return save(fig, path)


def _sweep_title(info: dict, widths) -> str:
    """What a width sweep ran: its info items, the architecture's own width shown as W (each
    net has its width from the sweep), and the widths."""
    parts = []
    for k, v in info.items():
        if k == "arch":
            v = re.sub(r"-\d+x", "-Wx", str(v))
        parts.append(f"{k} {v}")
    ws = ", ".join(f"{w:g}" for w in widths)
    return ", ".join(parts + [f"widths W = {ws}"])


def save(fig, path):
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig


def plot_sgd_vs_bayes(result, path=None):
    r"""One scatter panel per setting: :math:`\log_{10} P_{SGD}(f\mid S)` against
    :math:`\log_{10} P_B(f\mid S)` for the functions found at least ``min_count`` times,
    coloured by their held-out error, with the line :math:`P_{SGD} = P_B`.

    Args:
        result: an `SGDBayesResult`.
        path: where to save the figure (any format matplotlib writes), or ``None``.

    Returns:
        The matplotlib figure.
    """
    plt = pyplot()
    rows = result.rows
    n = max(len(rows), 1)
    cols = min(n, 3)
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(4.2 * cols,
                                                                 3.8 * math.ceil(n / cols)),
                             squeeze=False)
    for ax, row in zip(axes.ravel(), rows):
        se = row.log_p_b_stderr or [0.0] * len(row.counts)
        pts = [(c / row.fitted, b, e, d or 0.0)
               for c, b, e, d in zip(row.counts, row.log_p_b, row.errors, se) if b is not None]
        if pts:
            p_sgd, log_pb, err, d = (np.asarray(v, float) for v in zip(*pts))
            if np.any(d > 0):  # the P_B estimator's standard errors (sampling)
                ax.errorbar(log_pb / math.log(10), np.log10(p_sgd), xerr=d / math.log(10),
                            fmt="none", ecolor="0.6", elinewidth=0.8, zorder=1)
            sc = ax.scatter(log_pb / math.log(10), np.log10(p_sgd), c=err, cmap="viridis",
                            s=14, vmin=0, vmax=max(0.5, float(err.max())), zorder=2)
            lo = min(float(np.log10(p_sgd).min()), float((log_pb / math.log(10)).min()))
            hi = max(float(np.log10(p_sgd).max()), float((log_pb / math.log(10)).max()))
            ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="$P_{SGD} = P_B$")
            fig.colorbar(sc, ax=ax, label="held-out error")
            ax.legend(fontsize=8, loc="lower right")
        else:
            ax.text(0.5, 0.5, "no function found twice:\nmore runs needed", ha="center",
                    va="center", transform=ax.transAxes, fontsize=9)
        corr = "n/a" if row.correlation is None else f"{row.correlation:.2f}"
        what = (f"drawn from P_B itself (width {row.width})" if row.optimizer == "posterior"
                else f"width {row.width}, {row.optimizer}, batch {row.batch_size}")
        ax.set_title(f"{what}\n{row.fitted} runs, corr {corr}", fontsize=9)
        method = "EP" if result.pb_method == "ep" else "tilted sampler, ±1 s.e."
        ax.set_xlabel(rf"$\log_{{10}} P_B(f\mid S)$ (NNGP, {method})")
        ax.set_ylabel(r"$\log_{10} P_{SGD}(f\mid S)$")
    for ax in axes.ravel()[len(rows):]:
        ax.axis("off")
    what = result.target if " vs " in result.target else f"{result.n_bits}-bit {result.target}"
    fig.suptitle(f"{what}, |S| = {result.n_train}", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


def plot_ensemble(result, path=None):
    """Two panels: errors of the ensemble mean and covariance against the number of seeds,
    one line per width, with the expected Monte-Carlo error of exact draws dashed.

    Args:
        result: an `EnsembleResult`.
        path: where to save the figure, or ``None``.

    Returns:
        The matplotlib figure.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for ax, (err, mc, title) in zip(axes, (("mean_err", "mean_err_mc", "mean"),
                                           ("cov_err", "cov_err_mc", "covariance"))):
        for width in result.widths:
            rows = [r for r in result.rows if r.width == width]
            ax.loglog([r.seeds for r in rows], [getattr(r, err) for r in rows], "o-",
                      label=f"width {width}")
        rows = [r for r in result.rows if r.width == result.widths[0]]
        ax.loglog([r.seeds for r in rows], [getattr(r, mc) for r in rows], "k--",
                  label="Monte-Carlo error alone")
        ax.set_xlabel("networks in the ensemble")
        ax.set_ylabel(f"relative error of the {title}")
        ax.set_title(f"ensemble {title} vs the closed form at t = {result.t:.3g}", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save(fig, path)


def plot_tickets(result, path=None):
    """Two panels against width (log-log): each candidate's distance to the trained net's
    test outputs (sub-network tickets at their highest and lowest sparsity) and its test
    error.

    Args:
        result: a `TicketResult`.
        path: where to save the figure; ``None`` to only return it.

    Returns:
        The matplotlib ``Figure``.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    w = [r.width for r in result.rows]
    sp = result.sparsities
    lines = [("linearized", None, "C0", "-", "linearized at θ0"),
             ("closed_form", None, "C1", "-", "NTK prediction (own init)"),
             ("init", None, "0.5", ":", "initial net")]
    for i, ls in ((0, "--"), (len(sp) - 1, "-.")):
        lines += [("ticket", i, "C2", ls, f"ticket θ0, {sp[i]:.0%} pruned"),
                  ("ticket_k", i, "C3", ls, f"ticket θk, {sp[i]:.0%} pruned"),
                  ("random", i, "C4", ls, f"random mask, {sp[i]:.0%} pruned")]
    for key, i, color, ls, label in lines:
        def get(r, field):
            v = getattr(r, field)[key]
            return v if i is None else v[i]
        axes[0].plot(w, [get(r, "dist") for r in result.rows], ls, color=color, marker="o",
                     label=label)
        axes[1].plot(w, [get(r, "error") for r in result.rows], ls, color=color, marker="o",
                     label=label)
    axes[1].plot(w, [r.error["net"] for r in result.rows], "k-", marker="s",
                 label="trained net")
    err = "test error rate" if result.loss == "xent" else "test RMSE"
    for ax, title in ((axes[0], "distance to the trained net's test outputs"),
                      (axes[1], err)):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("width")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"Lottery tickets: {result.info.get('dataset', '')}, "
                 f"{result.info.get('arch', '')}, {result.steps} steps, {result.seeds} seeds")
    fig.tight_layout()
    return save(fig, path)


def plot_learning_rates(result, path=None):
    """Three panels over training steps, one line per learning rate: the training loss (net
    solid, linearization dashed), the NTK's top eigenvalue relative to initialization, and
    the distance between net and linearization.

    Args:
        result: a `RateResult`.
        path: where to save the figure; ``None`` to only return it.

    Returns:
        The matplotlib ``Figure``.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for i, r in enumerate(result.rows):
        color = f"C{i % 10}"

        def pts(values):
            keep = [(s, v) for s, v in zip(r.steps, values) if v is not None and v > 0]
            return [s for s, _ in keep], [v for _, v in keep]

        axes[0].plot(*pts(r.loss_net), "-", color=color, label=f"η = {r.factor:g} η_c")
        axes[0].plot(*pts(r.loss_linearized), "--", color=color)
        axes[1].plot(*pts(r.lambda_max), "-", color=color)
        axes[2].plot(*pts(r.dist_net_linearized), "-", color=color)
    titles = ("training loss (dashed: linearized)", r"$\lambda_{\max}(\Theta_t) / "
              r"\lambda_{\max}(\Theta_0)$", "net vs linearization (test outputs)")
    for ax, title in zip(axes, titles):
        ax.set_yscale("log")
        ax.set_xscale("symlog", linthresh=1.0)  # the catapult happens in the first steps
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Learning rates around the linearization's limit η_c = "
                 f"{result.critical_learning_rate:.3g} (width {result.width})")
    fig.tight_layout()
    return save(fig, path)


def _distances(ax, x, rows, slopes, names=("dist_net_linearized", "dist_net_closed_form",
                                           "param_change", "ntk_drift")):
    for name in names:
        v = np.array([getattr(r, name) for r in rows], np.float64)
        s = slopes.get(name)
        ax.loglog(x, v, "o-", label=_LABELS[name] + ("" if s is None else f"  (slope {s:.2f})"))
    ax.grid(alpha=0.3, which="both")


def plot_laziness(result, path=None):
    r"""Distances against the laziness scale :math:`\alpha` at one width (log-log, with an
    :math:`\alpha^{-1}` guide: the lazy regime), and the test RMSE of nets and their
    linearizations.

    Args:
        result: a `LazinessResult`.
        path: where to save the figure; ``None`` to only return it.

    Returns:
        The matplotlib ``Figure``.
    """
    plt = pyplot()
    rows, alphas = result.rows, np.asarray(result.alphas, np.float64)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    _distances(axes[0], alphas, rows, result.slopes)
    axes[0].loglog(alphas, rows[0].dist_net_linearized * alphas[0] / alphas, "k:",
                   label=r"$\alpha^{-1}$")
    axes[0].set_xlabel(r"laziness scale $\alpha$")
    axes[0].set_title(r"$\alpha\,(f - f_0)$ trained on loss $/ \alpha^2$")
    axes[0].legend(fontsize=7.5)
    axes[1].semilogx(alphas, [r.test_rmse_net for r in rows], "o-", label="trained nets")
    axes[1].semilogx(alphas, [r.test_rmse_linearized for r in rows], "s--",
                     label="linearized nets")
    axes[1].set_xlabel(r"laziness scale $\alpha$")
    axes[1].set_ylabel("test RMSE")
    axes[1].legend(fontsize=8)
    axes[1].grid(alpha=0.3, which="both")
    fig.suptitle(f"The laziness scale at width {result.width} ({result.steps} steps, "
                 f"{result.seeds} seeds)", fontsize=11)
    fig.tight_layout()
    return save(fig, path)


def plot_parameterizations(sweeps, path=None):
    """Width sweeps in several parameterizations side by side: the distance of each net to
    its linearization and its NTK drift against width (log-log, slopes in the legend, a
    width^-1/2 guide), and the test RMSE.

    Args:
        sweeps: a dict from parameterization to `SweepResult` (`parameterization_sweep`).
        path: where to save the figure; ``None`` to only return it.

    Returns:
        The matplotlib ``Figure``.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4))
    names = {"ntk": "NTK", "standard": "standard", "mup": "μP / mean-field"}
    for i, (p, res) in enumerate(sweeps.items()):
        if not res.rows:
            continue
        w = np.array([r.width for r in res.rows], np.float64)
        for ax, key in zip(axes[:2], ("dist_net_linearized", "ntk_drift")):
            s = res.slopes.get(key)
            ax.loglog(w, [getattr(r, key) for r in res.rows], "o-", color=f"C{i}",
                      label=names.get(p, p) + ("" if s is None else f" (slope {s:.2f})"))
        axes[2].semilogx(w, [r.test_rmse_net for r in res.rows], "o-", color=f"C{i}",
                         label=names.get(p, p))
    first = next(iter(sweeps.values()))
    if first.rows:
        w = np.array([r.width for r in first.rows], np.float64)
        axes[0].loglog(w, first.rows[0].dist_net_linearized * (w / w[0]) ** -0.5, "k:",
                       label=r"width$^{-1/2}$")
        axes[2].axhline(first.test_rmse_ntk, color="k", ls=":", label="NTK closed form")
    titles = ("(a) net vs its linearization", _LABELS["ntk_drift"], "test RMSE of the nets")
    for ax, title in zip(axes, titles):
        ax.set_xlabel("width")
        ax.set_title(title)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("Lazy or not: the same networks in three parameterizations", fontsize=11)
    fig.tight_layout()
    return save(fig, path)
