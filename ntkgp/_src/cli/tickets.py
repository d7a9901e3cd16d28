"""``ntkgp tickets``: sub-network lottery tickets against tangent-space tickets."""

from __future__ import annotations

import argparse
import os

from ntkgp._src.cli.common import (
    HelpFormatter,
    interruptible,
    load_dataset,
    note,
    number_list,
    positive,
    save_figure,
    widths,
    write_text,
)

NAMES = {"linearized": "linearized", "closed_form": "NTK (t)", "ticket": "ticket θ0",
         "ticket_k": "ticket θk", "random": "random mask", "masked_init": "mask on θ0",
         "init": "init θ0"}


def _fractions(text: str):
    values = number_list(text, "0.5,0.8,0.9")
    if any(not 0 < v < 1 for v in values) or sorted(set(values)) != values:
        raise argparse.ArgumentTypeError(f"sparsities must be increasing fractions in (0, 1), "
                                         f"like 0.5,0.8,0.9; got {text!r}")
    return values


def add_parser(sub):
    c = sub.add_parser(
        "tickets", help="sub-network lottery tickets (pruned, rewound, retrained) against "
                        "tangent-space tickets (the linearized net, the NTK prediction)",
        description="For each width and seed: train a network; find sub-network tickets by "
                    "iterative magnitude pruning, rewound to the initial weights θ0 and to an "
                    "early iterate θk and retrained, with a random mask of the same sparsity "
                    "as the control and the masked initial network untrained; train the "
                    "linearization at θ0 identically and compute the infinite-width "
                    "prediction from the net's own initial outputs. Prints each candidate's "
                    "distance to the trained network's test outputs and its test error, with "
                    "log-log slopes against width; writes tickets.json and tickets.png (with "
                    "matplotlib) to --out.",
        formatter_class=HelpFormatter)
    c.add_argument("--dataset", default="digits",
                   help="diabetes, breast_cancer, wine, iris, digits (scikit-learn), or a "
                        "numeric CSV file with --target")
    c.add_argument("--target", help="the target column of a CSV dataset")
    c.add_argument("--n-train", type=positive(int), default=500, help="training points")
    c.add_argument("--n-test", type=positive(int), default=500,
                   help="test points (at most the rest)")
    c.add_argument("--arch", default="relu-1024x1",
                   help="ACTIVATION-[WIDTH]xDEPTH as for `ntkgp compare`; without --widths "
                        "the sweep is WIDTH/16, WIDTH/4, WIDTH")
    c.add_argument("--widths", type=widths, default=None, help="comma-separated widths")
    c.add_argument("--loss", choices=("mse", "xent"), default="mse",
                   help="squared error (closed form) or cross-entropy (the NTK ODE)")
    c.add_argument("--sparsities", type=_fractions, default=[0.5, 0.8, 0.9, 0.95],
                   help="fractions of weights pruned, one magnitude-pruning round each")
    c.add_argument("--rewind-step", type=positive(int), default=None,
                   help="k of the late-rewinding tickets (default: steps / 20)")
    c.add_argument("--seeds", type=positive(int), default=2, help="networks per width")
    c.add_argument("--steps", type=positive(int), default=1000,
                   help="full-batch gradient-descent steps of every training")
    c.add_argument("--lr", type=positive(float), default=None,
                   help="learning rate (default: half the largest stable step of the NTK)")
    c.add_argument("--seed", type=int, default=0, help="seed of inits, masks and split")
    c.add_argument("--out", default="ntkgp-tickets",
                   help="folder for tickets.json and tickets.png (created if missing)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=run, pool=1)
    return c


def _v(v, i=None):
    return v if i is None else v[i]


def table(res) -> str:
    """One line per candidate (and sparsity); per width its distance to the trained net's
    test outputs, its test error and, for classes, its test accuracy."""
    err = "err" if res.loss == "xent" else "RMSE"
    acc = bool(res.rows and res.rows[0].accuracy)
    cols = ["dist", err] + (["acc"] if acc else [])
    lines = [f"{'':<14}{'':>6} " + " ".join(f"{'width ' + str(r.width):^{7 * len(cols)}}"
                                              for r in res.rows),
             f"{'candidate':<14}{'pruned':>6} " + " ".join(
                 "".join(f"{c:>7}" for c in cols) for _ in res.rows)]
    rows = [("net", "trained net", None)]
    for name, label in NAMES.items():
        sparse = isinstance(res.rows[0].dist[name], list) if res.rows else False
        rows += [(name, label, i) for i in range(len(res.sparsities))] if sparse \
            else [(name, label, None)]
    for name, label, i in rows:
        sp = "-" if i is None else f"{res.sparsities[i]:.0%}"
        cells = []
        for r in res.rows:
            d = 0.0 if name == "net" else _v(r.dist[name], i)
            vals = [d, _v(r.error[name], i)] + ([_v(r.accuracy[name], i)] if acc else [])
            cells.append("".join(f"{v:7.3f}" for v in vals))
        lines.append(f"{label:<14}{sp:>6} " + " ".join(cells))
    return "\n".join(lines)


def summary(res) -> str:
    """The table, slopes and a plain reading of a `TicketResult`."""
    lines = [table(res)]
    if len(res.rows) > 1:
        sl = res.slopes
        hi = len(res.sparsities) - 1
        lines.append("log-log slopes of the distance to the trained net vs width: "
                     f"linearized {_f(sl['linearized'])}, NTK {_f(sl['closed_form'])}, "
                     f"ticket θ0 at sparsity {res.sparsities[0]:.2f} "
                     f"{_f(sl['ticket'][0])} and {res.sparsities[hi]:.2f} "
                     f"{_f(sl['ticket'][hi])}, init {_f(sl['init'])}")
        last = res.rows[-1]
        lines.append(
            f"at width {last.width} the trained nets are {100 * last.dist['linearized']:.1f}% "
            f"from their linearization and {100 * last.dist['closed_form']:.1f}% from the NTK "
            f"prediction; the θ0 tickets are {100 * min(last.dist['ticket']):.1f}%-"
            f"{100 * max(last.dist['ticket']):.1f}% away, random masks "
            f"{100 * min(last.dist['random']):.1f}%-{100 * max(last.dist['random']):.1f}%, "
            f"the untrained masked nets {100 * min(last.dist['masked_init']):.0f}%-"
            f"{100 * max(last.dist['masked_init']):.0f}%.")
    return "\n".join(lines)


def _f(v):
    return "     -" if v is None else f"{v:.2f}"


def run(args) -> int:
    import jax
    import numpy as np

    from ntkgp._src import data
    from ntkgp._src.experiments.plots import plot_tickets
    from ntkgp._src.experiments.tickets import lottery_tickets
    from ntkgp._src.nn import spec

    act, arch_width, depth, opts = spec.parse_spec(args.arch)
    if opts["conv"]:
        raise ValueError("`ntkgp tickets` takes fully connected architectures "
                         "(ACTIVATION-WIDTHxDEPTH); got --arch " + args.arch)
    ws = args.widths
    if ws is None and arch_width is not None:
        ws = sorted({max(1, arch_width // f) for f in (16, 4, 1)})
    if ws is None:
        raise ValueError(f"--arch {args.arch!r} gives no width: pass --widths, e.g. "
                         "--widths 64,256,1024.")
    x, y, name = load_dataset(args, False)
    if args.n_train >= len(x):
        raise ValueError(f"--n-train {args.n_train} leaves no test points: {name} has "
                         f"{len(x)} points.")
    xtr, ytr, xte, yte = data.split(x, y, args.n_train, args.n_test, seed=args.seed)
    if args.rewind_step is not None and args.rewind_step >= args.steps:
        raise ValueError(f"--rewind-step {args.rewind_step} must be below --steps "
                         f"{args.steps}.")
    dtype = np.float64 if args.x64 else np.float32
    xtr, ytr, xte, yte = (a.astype(dtype) for a in (xtr, ytr, xte, yte))
    k = ytr.shape[1]
    print(f"ntkgp tickets: {name} ({len(xtr)} train / {len(xte)} test, {k} output"
          f"{'s' * (k > 1)}, {args.loss}), {depth} hidden {act} layer{'s' * (depth > 1)}, "
          f"widths {', '.join(map(str, ws))}, {args.seeds} seeds, {args.steps} gd steps, "
          f"sparsities {', '.join(f'{s:g}' for s in args.sparsities)}, "
          f"{np.dtype(dtype).name}", flush=True)
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "tickets.json")
    info = {"dataset": name, "arch": args.arch}

    def save(res):
        write_text(json_path, res.to_json())
        if not args.quiet:
            note(f"width {res.rows[-1].width} done")

    def compute():
        return lottery_tickets(
            lambda w: spec.from_spec(args.arch, width=w, n_outputs=k), ws, xtr, ytr, xte, yte,
            seeds=args.seeds, steps=args.steps, sparsities=args.sparsities,
            rewind_step=args.rewind_step, learning_rate=args.lr, loss=args.loss,
            key=jax.random.PRNGKey(args.seed), show_progress=not args.quiet, info=info,
            callback=save)

    res, took = interruptible(compute, json_path, "ntkgp tickets", "width")
    if res is None:
        return 130
    print(f"\n{summary(res)}\n\ntook {took:.0f} s (lr "
          f"{res.learning_rate:.4g}, rewind step {res.rewind_step}); wrote {json_path}", end="")
    save_figure(lambda path: plot_tickets(res, path), os.path.join(args.out, "tickets.png"))
    return 0
