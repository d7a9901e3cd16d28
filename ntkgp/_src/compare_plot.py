"""The figure of a width sweep (matplotlib: ``pip install 'ntkgp[plot]'``)."""

from __future__ import annotations

import numpy as np

_LABELS = {
    "dist_net_linearized": "(a) net vs its linearization",
    "dist_net_closed_form": "(b) net vs closed form from its init",
    "param_change": r"$\|\Delta\theta\| / \|\theta_0\|$",
    "ntk_drift": r"NTK drift $\|\Theta_T-\Theta_0\|/\|\Theta_0\|$",
}


def _pyplot():
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
    plt = _pyplot()
    rows = result.rows
    if not rows:
        raise ValueError("the sweep has no finished width to plot.")
    widths = np.array([r.width for r in rows], np.float64)
    fig, ax = plt.subplots(2, 2, figsize=(11, 8.5))
    a = ax[0, 0]
    for name, label in _LABELS.items():
        v = np.array([getattr(r, name) for r in rows], np.float64)
        s = result.slopes.get(name)
        a.loglog(widths, v, "o-", label=label + ("" if s is None else f"  (slope {s:.2f})"))
    guide = rows[0].dist_net_closed_form * (widths / widths[0]) ** -0.5
    a.loglog(widths, guide, "k:", label=r"width$^{-1/2}$")
    a.set_xlabel("width")
    a.set_title("distances fall with width")
    a.legend(fontsize=7.5)
    a = ax[0, 1]
    a.semilogx(widths, [r.test_rmse_net for r in rows], "o-", label="trained nets")
    a.semilogx(widths, [r.test_rmse_linearized for r in rows], "s--", label="linearized nets")
    a.axhline(result.test_rmse_ntk, color="k", ls=":", label="NTK closed form (mean)")
    a.axhline(result.test_rmse_nngp, color="gray", ls="-.",
              label="NNGP posterior mean (noise by evidence)")
    a.set_xlabel("width")
    a.set_ylabel("test RMSE")
    a.set_title("test error")
    a.legend(fontsize=8)
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
    title = ", ".join(f"{k} {v}" for k, v in result.info.items())
    fig.suptitle(f"finite width vs infinite width{': ' + title if title else ''}", fontsize=11)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
