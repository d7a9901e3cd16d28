"""``ntkgp compare --lr-factors``: one width, learning rates around the linearization's limit."""

from __future__ import annotations

import os
import sys
import time

from ntkgp._src.cli.common import note, save_figure, write_text


def _f(v, spec="9.4f"):
    return f"{'diverged':>9}" if v is None else format(v, spec)


def summary(res) -> str:
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


def run(args, make_net, xtr, ytr, xte, yte, info) -> int:
    import jax

    from ntkgp._src.experiments.catapult import learning_rate_sweep
    from ntkgp._src.experiments.plots import plot_learning_rates

    if args.loss != "mse" or args.optimizer != "gd":
        raise ValueError("--lr-factors trains with full-batch gradient descent on the squared "
                         "error: drop --loss xent and --optimizer.")
    width = max(args.widths)
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "catapult.json")

    def save(res):
        write_text(json_path, res.to_json())
        if not args.quiet:
            note(f"eta/eta_c {res.rows[-1].factor:g} done")

    t0 = time.perf_counter()
    try:
        res = learning_rate_sweep(make_net, width, xtr, ytr, xte, yte,
                                  factors=args.lr_factors, steps=args.steps,
                                  key=jax.random.PRNGKey(args.seed),
                                  show_progress=not args.quiet, info=info, callback=save)
    except KeyboardInterrupt:
        saved = (f"the learning rates finished so far are in {json_path}"
                 if os.path.exists(json_path) else "no learning rate had finished")
        print(f"\nntkgp compare: interrupted; {saved}.", file=sys.stderr)
        return 130
    print(f"\n{summary(res)}\n\ntook {time.perf_counter() - t0:.0f} s; wrote {json_path}",
          end="")
    save_figure(lambda path: plot_learning_rates(res, path),
                os.path.join(args.out, "catapult.png"))
    return 0
