"""``ntkgp compare --lr-factors``, ``--alphas`` and several ``--parameterization``: where the
tangent-space picture breaks (large learning rates and the laziness scale at one width; the
parameterization across widths)."""

from __future__ import annotations

import os

from ntkgp._src.cli.common import interruptible, note, save_figure, write_text


def _f(v, spec="9.4f"):
    return f"{'diverged':>9}" if v is None else format(v, spec)


def rates_summary(res) -> str:
    """One line per learning rate, and a plain reading."""
    lines = [f"critical step of the net's NTK at init eta_c = {res.critical_learning_rate:.4g} "
             f"(width {res.width}, {res.steps} steps)",
             f"{'eta/eta_c':>9} {'peak loss':>9} {'end loss':>9} {'lin loss':>9} "
             f"{'min λmax':>9} {'end λmax':>9} {'net-lin':>9} {'RMSE net':>9}"]
    for r in res.rows:
        finite = [v for v in r.loss_net if v is not None]
        lam = [v for v in r.lambda_max if v is not None]
        dist = r.dist_net_linearized[-1]
        min_lam = None if r.diverged_net else min(lam)
        lines.append(f"{r.factor:9.2f} {max(finite):9.3g} {_f(r.loss_net[-1])} "
                     f"{_f(r.loss_linearized[-1])} {_f(min_lam, '9.3f')} "
                     f"{_f(r.lambda_max[-1], '9.3f')} {_f(dist)} {_f(r.test_rmse_net)}")
    cat = [r for r in res.rows if r.diverged_linearized and not r.diverged_net]
    if cat:
        lo, hi = min(r.factor for r in cat), max(r.factor for r in cat)
        drop = min(min(v for v in r.lambda_max if v is not None) for r in cat)
        lines.append(f"catapult: from {lo:g} to {hi:g} x eta_c the linearized net diverges and "
                     f"the net converges, its NTK's top eigenvalue falling to {drop:.2f} of its "
                     "initial value (λmax columns: relative to init).")
    return "\n".join(lines)


def alphas_summary(res) -> str:
    """One line per laziness scale, and the slopes against it."""
    lines = [f"laziness scale alpha at width {res.width} ({res.steps} steps, {res.seeds} "
             "seeds, centered nets trained as alpha (f - f0) on the loss / alpha^2)",
             f"{'alpha':>7} {'RMSE net':>9} {'(a) net-lin':>11} {'(b) net-NTK':>11} "
             f"{'|dθ|/|θ0|':>10} {'NTK drift':>10}"]
    for a, r in zip(res.alphas, res.rows):
        lines.append(f"{a:7.3g} {r.test_rmse_net:9.4f} {r.dist_net_linearized:11.4f} "
                     f"{r.dist_net_closed_form:11.4f} {r.param_change:10.4f} "
                     f"{r.ntk_drift:10.4f}")
    if len(res.rows) > 1:
        s = res.slopes
        lines.append("log-log slopes vs alpha (lazy: (a) and the drift like 1/alpha): "
                     f"(a) {_slope(s['dist_net_linearized'])}, (b) "
                     f"{_slope(s['dist_net_closed_form'])}, |dθ|/|θ0| "
                     f"{_slope(s['param_change'])}, NTK drift {_slope(s['ntk_drift'])}")
    return "\n".join(lines)


def _slope(v):
    return "-" if v is None else f"{v:.2f}"


def parameterizations_summary(sweeps: dict) -> str:
    """One line per parameterization: the largest width's distances and the slopes."""
    lines = [f"{'param':>8} {'width':>6} {'RMSE net':>9} {'(a) net-lin':>11} "
             f"{'(b) net-NTK':>11} {'NTK drift':>10}   slopes vs width: (a) (b) drift"]
    for p, res in sweeps.items():
        r, s = res.rows[-1], res.slopes
        lines.append(f"{p:>8} {r.width:6d} {r.test_rmse_net:9.4f} "
                     f"{r.dist_net_linearized:11.4g} {r.dist_net_closed_form:11.4g} "
                     f"{r.ntk_drift:10.4g}   {_slope(s.get('dist_net_linearized'))} "
                     f"{_slope(s.get('dist_net_closed_form'))} {_slope(s.get('ntk_drift'))}")
    lines.append("kernel regime: (a) and (b) fall like width^-1/2 (slope -0.5); a slope near 0 "
                 "means the network keeps learning features as it widens.")
    return "\n".join(lines)


def run(args, make_net, xtr, ytr, xte, yte, info) -> int:
    """``--lr-factors`` (`learning_rate_sweep`, catapult.json/.png), ``--alphas``
    (`laziness_sweep` at the largest width, laziness.json/.png) or several
    ``--parameterization`` (`parameterization_sweep`, parameterizations.json/.png); the
    first two train with full-batch gradient descent on the squared error."""
    import jax

    from ntkgp._src.experiments import plots
    from ntkgp._src.experiments.catapult import learning_rate_sweep
    from ntkgp._src.experiments.laziness import (
        laziness_sweep,
        parameterization_sweep,
        sweeps_to_json,
    )

    mode = "rates" if args.lr_factors else "alphas" if args.alphas else "params"
    flag = {"rates": "--lr-factors", "alphas": "--alphas"}.get(mode)
    if flag and (args.loss != "mse" or args.optimizer != "gd"):
        raise ValueError(f"{flag} trains with full-batch gradient descent on the squared "
                         "error: drop --loss xent and --optimizer.")
    width, key = max(args.widths), jax.random.PRNGKey(args.seed)
    name = {"rates": "catapult", "alphas": "laziness", "params": "parameterizations"}[mode]
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, f"{name}.json")

    def save(res):
        write_text(json_path, sweeps_to_json(res) if mode == "params" else res.to_json())
        if not args.quiet:
            if mode == "params":
                p, last = list(res.items())[-1]
                done = f"{p} width {last.rows[-1].width}"
            else:
                done = (f"eta/eta_c {res.rows[-1].factor:g}" if mode == "rates"
                        else f"alpha {res.alphas[-1]:g}")
            note(f"{done} done")

    common = dict(key=key, show_progress=not args.quiet, info=info, callback=save)
    if mode == "rates":
        def compute():
            return learning_rate_sweep(make_net, width, xtr, ytr, xte, yte,
                                       factors=args.lr_factors, steps=args.steps, **common)
    elif mode == "alphas":
        def compute():
            return laziness_sweep(make_net, width, xtr, ytr, xte, yte, alphas=args.alphas,
                                  seeds=args.seeds, steps=args.steps, learning_rate=args.lr,
                                  **common)
    else:
        def compute():
            return parameterization_sweep(
                make_net, args.widths, xtr, ytr, xte, yte,
                parameterizations=args.parameterization, seeds=args.seeds, steps=args.steps,
                learning_rate=args.lr, optimizer=args.optimizer, batch_size=args.batch_size,
                momentum=args.momentum, centered=args.centered, loss=args.loss, **common)

    unit = {"rates": "learning rate", "alphas": "scale", "params": "width"}[mode]
    res, took = interruptible(compute, json_path, "ntkgp compare", unit)
    if res is None:
        return 130
    text = {"rates": rates_summary, "alphas": alphas_summary,
            "params": parameterizations_summary}[mode](res)
    print(f"\n{text}\n\ntook {took:.0f} s; wrote {json_path}", end="")
    plot = {"rates": plots.plot_learning_rates, "alphas": plots.plot_laziness,
            "params": plots.plot_parameterizations}[mode]
    save_figure(lambda path: plot(res, path), os.path.join(args.out, f"{name}.png"))
    return 0
