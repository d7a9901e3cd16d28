"""The main benchmark figures, drawn from the saved rows (needs matplotlib: the `plot` extra).

- ``figures/ratios.png``: every case with a neural-tangents counterpart, ntkgp's time over
  neural-tangents' (log scale), with the targets marked.
- ``figures/scale.png``: time and peak memory against N for the exact and CG solves.
"""

import os
import re

from _common import nt_ratio
from targets import nt_ratio_bounds


def _ratio_rows(saved):
    out = []
    for suite in ("kernels", "predict", "cntk"):
        for r in (saved.get(suite) or {}).get("rows", []):
            if nt_ratio(r) is not None:
                out.append((suite, r["id"], nt_ratio(r)))
    return out


def plot_ratios(saved, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = _ratio_rows(saved)
    if not rows:
        return False
    tgt = nt_ratio_bounds()
    fig, ax = plt.subplots(figsize=(7.5, 0.22 * len(rows) + 1.2))
    colors = {"kernels": "C0", "predict": "C1", "cntk": "C2"}
    y = range(len(rows))[::-1]
    ax.barh(list(y), [r[2] for r in rows], color=[colors[r[0]] for r in rows])
    for yi, (_, case, _) in zip(y, rows):
        if case in tgt:
            ax.plot([tgt[case]] * 2, [yi - 0.4, yi + 0.4], "k-", lw=2)
    ax.set_yticks(list(y), [r[1] for r in rows], fontsize=7)
    ax.set_xscale("log")
    ax.axvline(1.0, color="0.4", ls="--", lw=1)
    ax.set_xlabel("time ntkgp / neural-tangents (same session; black tick = target, "
                  "below it = met)", fontsize=8)
    for s, c in colors.items():
        ax.bar(0, 0, color=c, label=s)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_scale(saved, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = (saved.get("scale") or {}).get("rows", [])
    series = {}
    for r in rows:
        m = re.match(r"^(exact|cg|cg_synth)_N(\d+)_(f32|f64)$", r["id"])
        us = r.get("ntkgp") or {}
        if not m or us.get("median_s") is None:
            continue
        how = "cg" if m.group(1).startswith("cg") else "exact"
        series.setdefault(f"{how} {m.group(3)}", []).append(
            (int(m.group(2)), us["median_s"], us["maxrss_mb"] / 1024))
    if not series:
        return False
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, pts in sorted(series.items()):
        pts.sort()
        n, t, mem = zip(*pts)
        style = "o-" if name.startswith("exact") else "s--"
        a1.plot(n, t, style, label=name)
        a2.plot(n, mem, style, label=name)
    for a, lab in ((a1, "time end to end, s"), (a2, "peak memory, GiB")):
        a.set_xscale("log")
        a.set_yscale("log")
        a.set_xlabel("training points N")
        a.set_ylabel(lab)
        a.grid(alpha=0.3, which="both")
    a1.legend(fontsize=8)
    fig.suptitle("FC NTK kernel regression: exact (Cholesky) vs matrix-free CG", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_all(saved, outdir):
    """Draw the figures that have data; returns their paths relative to ``outdir``'s parent.
    Without matplotlib, draws nothing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return []
    os.makedirs(outdir, exist_ok=True)
    made = []
    for name, fn in (("ratios.png", plot_ratios), ("scale.png", plot_scale)):
        if fn(saved, os.path.join(outdir, name)):
            made.append(f"{os.path.basename(outdir)}/{name}")
    return made
