"""Figures of the experiments (matplotlib: ``pip install 'ntkgp[plot]'``)."""

from __future__ import annotations

import math

import numpy as np

from ntkgp._src.compare_plot import _pyplot


def _save(fig, path):
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
    plt = _pyplot()
    rows = result.rows
    n = max(len(rows), 1)
    cols = min(n, 3)
    fig, axes = plt.subplots(math.ceil(n / cols), cols, figsize=(4.2 * cols,
                                                                 3.8 * math.ceil(n / cols)),
                             squeeze=False)
    for ax, row in zip(axes.ravel(), rows):
        pts = [(c / row.fitted, b, e) for c, b, e in zip(row.counts, row.log_p_b, row.errors)
               if b is not None]
        if pts:
            p_sgd, log_pb, err = (np.asarray(v, float) for v in zip(*pts))
            sc = ax.scatter(log_pb / math.log(10), np.log10(p_sgd), c=err, cmap="viridis",
                            s=14, vmin=0, vmax=max(0.5, float(err.max())))
            lo = min(float(np.log10(p_sgd).min()), float((log_pb / math.log(10)).min()))
            hi = max(float(np.log10(p_sgd).max()), float((log_pb / math.log(10)).max()))
            ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="$P_{SGD} = P_B$")
            fig.colorbar(sc, ax=ax, label="held-out error")
        corr = "n/a" if row.correlation is None else f"{row.correlation:.2f}"
        ax.set_title(f"width {row.width}, {row.optimizer}, batch {row.batch_size}\n"
                     f"{row.fitted} runs, corr {corr}", fontsize=9)
        ax.set_xlabel(r"$\log_{10} P_B(f\mid S)$ (NNGP, EP)")
        ax.set_ylabel(r"$\log_{10} P_{SGD}(f\mid S)$")
        ax.legend(fontsize=8, loc="lower right")
    for ax in axes.ravel()[len(rows):]:
        ax.axis("off")
    fig.suptitle(f"{result.n_bits}-bit {result.target}, |S| = {result.n_train}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_ensemble(result, path=None):
    """Two panels: errors of the ensemble mean and covariance against the number of seeds,
    one line per width, with the expected Monte-Carlo error of exact draws dashed.

    Args:
        result: an `EnsembleResult`.
        path: where to save the figure, or ``None``.

    Returns:
        The matplotlib figure.
    """
    plt = _pyplot()
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
    return _save(fig, path)
