"""``ntkgp compare``: finite networks of growing width against the infinite-width prediction."""

from __future__ import annotations

import argparse
import os
import sys

from ntkgp._src.cli import breakdown
from ntkgp._src.cli.common import (
    HelpFormatter,
    factors,
    interruptible,
    load_dataset,
    note,
    positive,
    save_figure,
    widths,
    write_text,
)

DEFAULT_ARCH = "relu-4096x1"
ARCH_HELP = ("architecture [conv-]ACTIVATION-[WIDTH]xDEPTH[,W_std=S][,b_std=S]: DEPTH hidden "
             "layers (Dense then ACTIVATION; with conv-, 3x3 SAME convolutions of WIDTH "
             "channels on the dataset's images, then Flatten) and a Dense readout, "
             "defaults W_std=1.5 b_std=0.05; ACTIVATION is relu, erf, gelu, "
             "abs or sin; e.g. relu-512x3, erf-x2,W_std=2, conv-relu-256x2. Without --widths "
             "the sweep is WIDTH/64, WIDTH/16, WIDTH/4, WIDTH "
             f"(default {DEFAULT_ARCH}: 64, 256, 1024, 4096)")


def _parameterizations(text: str):
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in ("ntk", "standard", "mup")]
    if not names or bad or len(set(names)) < len(names):
        raise argparse.ArgumentTypeError(f"expected names from ntk, standard, mup, comma-"
                                         f"separated and each once; got {text!r}")
    return names


def add_parser(sub):
    c = sub.add_parser(
        "compare", help="train networks of growing width and set them against the "
                        "infinite-width (NTK) prediction",
        description="Train networks of several widths (several seeds each) and "
                    "compare each with (a) its own linearization trained identically and (b) "
                    "the closed-form NTK prediction from its own initial outputs; the seed "
                    "ensemble against the predicted Gaussian; test errors against the NTK and "
                    "NNGP. Prints a table and fitted log-log slopes (theory: -1/2), writes "
                    "compare.json and compare.png (with matplotlib) to --out.",
        formatter_class=HelpFormatter)
    c.add_argument("--dataset", default="diabetes",
                   help="diabetes, breast_cancer, wine, iris, digits (bundled with "
                        "scikit-learn; classes become centered one-hot targets), a numeric "
                        "CSV file with a header row (needs --target), or for conv- "
                        "architectures an image set: digits, fashion_mnist, mnist5k")
    c.add_argument("--target", help="the target column of a CSV dataset")
    c.add_argument("--n-train", type=positive(int), default=None,
                   help="training points (default: 300, at most two thirds of the data; the "
                        "rest, up to --n-test, are test points)")
    c.add_argument("--n-test", type=positive(int), default=None,
                   help="test points (default: all the rest)")
    c.add_argument("--arch", default=DEFAULT_ARCH, help=ARCH_HELP)
    c.add_argument("--loss", choices=("mse", "xent"), default="mse",
                   help="squared error (closed form at infinite width) or softmax "
                        "cross-entropy on one-hot classes (the infinite-width ODE), for "
                        "classification data sets")
    c.add_argument("--pool", type=positive(int), default=1,
                   help="average-pool images by this factor first (e.g. 2: 28x28 -> 14x14)")
    c.add_argument("--widths", type=widths, default=None,
                   help="comma-separated hidden widths (overrides the width in --arch)")
    c.add_argument("--seeds", type=positive(int), default=8, help="networks per width")
    c.add_argument("--steps", type=positive(int), default=100, help="optimizer steps")
    c.add_argument("--lr", type=positive(float), default=None,
                   help="learning rate (default: half the largest stable GD step of the NTK; times "
                        "1 - momentum for momentum)")
    c.add_argument("--optimizer", choices=("gd", "sgd", "momentum"), default="gd",
                   help="full-batch gradient descent, minibatch SGD, or heavy-ball momentum")
    c.add_argument("--batch-size", type=positive(int), default=None,
                   help="minibatch size (required for sgd)")
    c.add_argument("--momentum", type=float, default=0.9, help="momentum coefficient")
    c.add_argument("--centered", action="store_true",
                   help="train f(x, theta) - f(x, theta0): each net then approaches the "
                        "deterministic NTK mean")
    c.add_argument("--parameterization", type=_parameterizations, default=["ntk"],
                   metavar="NAMES",
                   help="ntk; standard (per-width kernels and step, about 1/width); mup "
                        "(maximal update / mean-field: output times width^-1/2, step times "
                        "width). Several, e.g. ntk,standard,mup, run the sweep in each and write "
                        "parameterizations.json and .png (distance to the linearization "
                        "against width, slopes for each)")
    c.add_argument("--lr-factors", type=factors, default=None,
                   help="instead of the width sweep: train one network of the largest width "
                        "and its linearization at these multiples of the critical step of its "
                        "NTK at init (above 1 the linearization diverges; the catapult phase), "
                        "e.g. 0.5,1.5,3; writes catapult.json and catapult.png")
    c.add_argument("--alphas", type=factors, default=None,
                   help="instead of the width sweep: at the largest width, train alpha (f - f0) "
                        "on the loss / alpha^2 for each laziness scale alpha (Chizat et al. "
                        "2019; large is lazy), e.g. 0.1,1,10; writes laziness.json")
    c.add_argument("--seed", type=int, default=0, help="seed of inits, minibatches and split")
    c.add_argument("--out", default="ntkgp-compare",
                   help="folder for compare.json and compare.png (created if missing)")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=run)
    return c


def _fmt(v, spec=".4f"):
    return "     -" if v is None else format(v, spec)


HEADER = (f"{'width':>6} {'RMSE net':>9} {'RMSE lin':>9} {'(a) net-lin':>11} "
          f"{'(b) net-NTK':>11} {'|dθ|/|θ0|':>10} {'NTK drift':>10} {'chi2':>6}")
HEADER_XENT = (f"{'width':>6} {'acc net':>9} {'acc lin':>9} {'(a) net-lin':>11} "
               f"{'(b) net-ODE':>11} {'|dθ|/|θ0|':>10} {'NTK drift':>10} {'acc ODE':>8}")


def _header(res):
    return HEADER_XENT if res.loss == "xent" else HEADER


def _row(r):
    if r.test_acc_net is not None:
        return (f"{r.width:6d} {r.test_acc_net:9.4f} {r.test_acc_linearized:9.4f} "
                f"{r.dist_net_linearized:11.4f} {r.dist_net_closed_form:11.4f} "
                f"{r.param_change:10.4f} {r.ntk_drift:10.4f} {r.test_acc_closed_form:8.4f}")
    return (f"{r.width:6d} {r.test_rmse_net:9.4f} {r.test_rmse_linearized:9.4f} "
            f"{r.dist_net_linearized:11.4f} {r.dist_net_closed_form:11.4f} "
            f"{r.param_change:10.4f} {r.ntk_drift:10.4f} {_fmt(r.ensemble_chi2, '6.2f'):>6}")


def summary(res, table: bool = True) -> str:
    """The table (unless ``table=False``), slopes and a plain reading of a `SweepResult`."""
    lines = [_header(res)] + [_row(r) for r in res.rows] if table else []
    if res.loss == "xent":
        lines.append(f"infinite width: cross-entropy ODE from zero outputs test accuracy "
                     f"{res.test_acc_ntk:.4f} (t = {res.t:.4g}), NNGP posterior mean "
                     f"{res.test_acc_nngp:.4f}; the ODE is within "
                     f"{100 * res.closed_form_floor:.2f}% of the discrete steps (the floor "
                     "of (b))")
    else:
        lines.append(f"infinite width: NTK mean test RMSE {res.test_rmse_ntk:.4f} (t = "
                     f"{res.t:.4g}), NNGP posterior mean {res.test_rmse_nngp:.4f} (noise "
                     f"{res.nngp_noise:.2g} by marginal likelihood)")
    names = {"dist_net_linearized": "(a)", "dist_net_closed_form": "(b)",
             "param_change": "|dθ|/|θ0|", "ntk_drift": "NTK drift"}
    if len(res.rows) > 1:
        lines.append("log-log slopes vs width (kernel regime: about -0.5, the drift faster): "
                     + ", ".join(f"{names[k]} {_fmt(v, '.2f')}" for k, v in res.slopes.items()))
        last = res.rows[-1]
        target = "cross-entropy ODE" if res.loss == "xent" else "closed form"
        lines.append(f"at width {last.width} the trained nets' test outputs are within "
                     f"{100 * last.dist_net_closed_form:.1f}% of the {target} from their "
                     f"own init, and {100 * last.dist_net_linearized:.1f}% of their "
                     "linearization.")
    if res.optimizer == "sgd" or res.batch_size:
        lines.append("note: the closed form (b) is full-batch; minibatch noise keeps (b) from "
                     "vanishing with width, while (a) uses the same minibatches.")
    return "\n".join(lines)


def run(args) -> int:
    import jax
    import numpy as np

    from ntkgp._src import data
    from ntkgp._src.experiments.compare import width_sweep
    from ntkgp._src.experiments.plots import plot
    from ntkgp._src.nn import spec

    act, arch_width, depth, opts = spec.parse_spec(args.arch)
    widths = args.widths
    if widths is None and arch_width is not None:
        widths = sorted({max(1, arch_width // f) for f in (64, 16, 4, 1)})
    if widths is None:
        raise ValueError(f"--arch {args.arch!r} gives no width: pass --widths, e.g. "
                         "--widths 64,256,1024.")
    if not 0 <= args.momentum < 1:
        raise ValueError(f"--momentum must be in [0, 1); got {args.momentum}.")
    if args.optimizer == "sgd" and args.batch_size is None:
        raise ValueError("--optimizer sgd needs --batch-size, e.g. --batch-size 32.")
    if args.loss == "xent" and args.optimizer == "momentum":
        raise ValueError("--loss xent is compared with gradient flow: use --optimizer gd or "
                         "sgd.")
    x, y, name = load_dataset(args, opts["conv"])
    if args.n_train is None:
        args.n_train = min(300, (2 * len(x)) // 3)
    if args.n_train >= len(x):
        raise ValueError(f"--n-train {args.n_train} leaves no test points: {name} has "
                         f"{len(x)} points.")
    xtr, ytr, xte, yte = data.split(x, y, args.n_train, args.n_test, seed=args.seed)
    if args.batch_size and args.batch_size > len(xtr):
        raise ValueError(f"--batch-size {args.batch_size} exceeds the {len(xtr)} training "
                         "points.")
    dtype = np.float64 if args.x64 else np.float32
    xtr, ytr, xte, yte = (a.astype(dtype) for a in (xtr, ytr, xte, yte))
    k = ytr.shape[1]
    shape = "x".join(map(str, x.shape[1:])) if opts["conv"] else f"d={x.shape[1]}"
    kind = f"{'conv ' if opts['conv'] else ''}{act}"
    print(f"ntkgp compare: {name} ({len(xtr)} train / {len(xte)} test, {shape}, "
          f"{k} output{'s' * (k > 1)}, {args.loss}), {depth} hidden {kind} "
          f"layer{'s' * (depth > 1)}, widths "
          f"{', '.join(map(str, widths))}, {args.seeds} seeds, {args.steps} {args.optimizer} "
          f"steps{', centered' if args.centered else ''}, "
          f"{'/'.join(args.parameterization)} parameterization, {np.dtype(dtype).name}",
          flush=True)
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "compare.json")
    info = {"dataset": name, "arch": args.arch, "loss": args.loss}

    def save(res):  # after each width: finished work survives an interrupt
        write_text(json_path, res.to_json())
        if not args.quiet:
            note(("" if len(res.rows) > 1 else _header(res) + "\n") + _row(res.rows[-1]))

    def make_net(w, parameterization="ntk"):
        return spec.from_spec(args.arch, width=w, n_outputs=k,
                              parameterization=parameterization)

    chosen = [f for f, v in (("--lr-factors", args.lr_factors), ("--alphas", args.alphas),
                             ("several --parameterization", len(args.parameterization) > 1))
              if v]
    if len(chosen) > 1:
        raise ValueError(f"pass one of {' and '.join(chosen)}: each replaces the width sweep.")
    if (args.lr_factors or args.alphas) and args.parameterization != ["ntk"]:
        raise ValueError(f"{chosen[0]} trains NTK-parameterized networks: drop "
                         "--parameterization.")
    args.widths = widths
    if chosen:
        return breakdown.run(args, make_net, xtr, ytr, xte, yte, info)
    (param,) = args.parameterization
    info["parameterization"] = param

    def compute():
        return width_sweep(
            lambda w: make_net(w, "standard" if param == "standard" else "ntk"), widths, xtr,
            ytr, xte, yte, seeds=args.seeds, steps=args.steps, learning_rate=args.lr,
            optimizer=args.optimizer, batch_size=args.batch_size, momentum=args.momentum,
            centered=args.centered, loss=args.loss, parameterization=param,
            key=jax.random.PRNGKey(args.seed), show_progress=not args.quiet, info=info,
            callback=save)

    res, took = interruptible(compute, json_path, "ntkgp compare", "width")
    if res is None:
        return 130
    # in a terminal the rows were shown as each width finished (stderr): not again
    shown = not args.quiet and sys.stdout.isatty() and sys.stderr.isatty()
    lead = "" if shown else "\n"
    print(f"{lead}{summary(res, table=not shown)}\n\ntook {took:.0f} s "
          f"(lr {res.learning_rate:.4g}); wrote {json_path}", end="")
    save_figure(lambda path: plot(res, path), os.path.join(args.out, "compare.png"))
    return 0
