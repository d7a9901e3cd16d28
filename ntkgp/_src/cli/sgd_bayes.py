"""``ntkgp sgd-vs-bayes``: which functions SGD finds against the NNGP posterior."""

from __future__ import annotations

import os

from ntkgp._src.cli.common import (
    HelpFormatter,
    factors,
    interruptible,
    note,
    positive,
    save_figure,
    widths,
    write_text,
)


def _names(text: str):
    return [t for t in text.replace(",", " ").split() if t]


def add_parser(sub):
    c = sub.add_parser(
        "sgd-vs-bayes", help="train thousands of small nets on a Boolean function and set the "
                             "frequency of each function they find against its NNGP posterior "
                             "probability (Mingard et al. 2021)",
        description="All 2^n points of {0,1}^n labelled by a target function (or, with "
                    "--dataset, binarized images: classes 0-4 against 5-9); a training set "
                    "S; many networks trained from random initialisations until they fit S. "
                    "Each run's function on the held-out points is recorded and P_SGD(f|S) "
                    "estimated by frequency; P_B(f|S) is the NNGP posterior of the same "
                    "architecture with thresholded outputs (expectation propagation, or with "
                    "--pb-method tilted an unbiased sampler with error bars). Prints "
                    "a table (one line per setting) and writes sgd_vs_bayes.json and "
                    "sgd_vs_bayes.png (with matplotlib) to --out, with a journal of finished "
                    "runs (runs-*.jsonl): the same command, interrupted or killed, "
                    "resumes from it.",
        formatter_class=HelpFormatter)
    c.add_argument("--bits", type=positive(int), default=7, help="n: inputs are {0,1}^n")
    c.add_argument("--target", default="and_or",
                   help="target function: and_or ((x0 and x1) or x2), majority, parity, "
                        "first_bit")
    c.add_argument("--dataset", choices=("digits", "fashion_mnist", "mnist5k"), default=None,
                   help="binarized images instead of Boolean inputs: classes 0-4 against 5-9, "
                        "--n-train + --n-test images drawn at random (flattened for the fully "
                        "connected networks)")
    c.add_argument("--n-test", type=positive(int), default=50,
                   help="held-out images with --dataset (small, so that functions repeat)")
    c.add_argument("--pool", type=positive(int), default=1,
                   help="average-pool the images by this factor first (with --dataset)")
    c.add_argument("--n-train", type=positive(int), default=None,
                   help="size of S (default: 64 Boolean points, 500 images)")
    c.add_argument("--widths", type=widths, default=[64],
                   help="hidden widths, e.g. 64,256")
    c.add_argument("--depth", type=positive(int), default=2, help="hidden ReLU layers")
    c.add_argument("--arch", choices=("fcn", "cnn"), default="fcn",
                   help="fully connected, or (with --dataset) 3x3 convolutions with --widths "
                        "channels, then Flatten and a dense readout")
    c.add_argument("--optimizers", type=_names, default=["sgd", "adam"],
                   help="sgd, momentum and/or adam, e.g. sgd,adam")
    c.add_argument("--batch-sizes", type=widths, default=[16], help="e.g. 8,32")
    c.add_argument("--runs", type=positive(int), default=4000,
                   help="initialisations per setting")
    c.add_argument("--lr", type=positive(float), default=None,
                   help="learning rate (default: half the largest stable full-batch step of "
                        "the NTK for sgd, a tenth of it for momentum, 1e-3 for adam)")
    c.add_argument("--lr-factors", type=factors, default=[1.0],
                   help="multiples of the learning rate to run, e.g. 0.25,0.5,1 (one setting "
                        "each)")
    c.add_argument("--max-epochs", type=positive(int), default=500,
                   help="runs that have not fitted S by then are dropped")
    c.add_argument("--min-count", type=positive(int), default=2,
                   help="P_B is computed for functions found at least this many times")
    c.add_argument("--pb-method", choices=("ep", "tilted"), default="ep",
                   help="P_B estimator: ep (deterministic, fast, biased low by a few tenths of "
                        "a nat) or tilted (minimax-tilted importance sampling: unbiased, with "
                        "a standard error shown as error bars)")
    c.add_argument("--pb-samples", type=positive(int), default=4000,
                   help="draws per probability for --pb-method tilted")
    c.add_argument("--bayes-baseline", action="store_true",
                   help="add a row of --runs functions drawn from P_B itself, analysed the "
                        "same way: how an exact Bayesian sampler looks after the same "
                        "selection (functions found at least --min-count times)")
    c.add_argument("--moments", action="store_true",
                   help="also the moment-level picture on the same S and held-out points: "
                        "ensembles of 4, 16 and 64 networks of each width trained by "
                        "full-batch gradient descent, their output mean and covariance against "
                        "the NTK closed form and the NNGP posterior (moments.json, "
                        "moments.png)")
    c.add_argument("--seed", type=int, default=0, help="seed of the split and the runs")
    c.add_argument("--out", default="ntkgp-sgd-vs-bayes", help="output directory")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.set_defaults(func=run)


def run(args) -> int:
    from ntkgp._src.experiments.boolean import boolean_problem, default_net, image_problem
    from ntkgp._src.experiments.plots import plot_sgd_vs_bayes
    from ntkgp._src.experiments.sgd_bayes import sgd_vs_bayes

    if args.dataset is None:
        if args.arch == "cnn":
            raise ValueError("--arch cnn needs images: pass --dataset digits (or "
                             "fashion_mnist, mnist5k).")
        args.n_train = args.n_train or 64
        problem = boolean_problem(args.bits, args.target, args.n_train, seed=args.seed)
        what = f"{args.bits}-bit {problem.target}"
    else:
        args.n_train = args.n_train or 500
        problem = image_problem(args.dataset, args.n_train, args.n_test, pool=args.pool,
                                seed=args.seed, flatten=args.arch == "fcn")
        what = f"{problem.target} ({'x'.join(map(str, problem.x.shape[1:]))} inputs)"
    print(f"ntkgp sgd-vs-bayes: {what}, |S| = {args.n_train}, "
          f"{problem.test.size} held-out points; {args.depth} hidden ReLU "
          f"{'convolutions' if args.arch == 'cnn' else 'layers'}, widths "
          f"{', '.join(map(str, args.widths))}; optimizers {', '.join(args.optimizers)}; "
          f"batch sizes {', '.join(map(str, args.batch_sizes))}"
          + (f"; learning rate x {', '.join(f'{f:g}' for f in args.lr_factors)}"
             if args.lr_factors != [1.0] else "") + f"; {args.runs} runs each",
          flush=True)
    os.makedirs(args.out, exist_ok=True)
    json_path = os.path.join(args.out, "sgd_vs_bayes.json")

    def save(res):  # after each setting: finished work survives an interrupt
        write_text(json_path, res.to_json())
        if not args.quiet:
            lines = res.table().splitlines()     # the header with the first row
            note("\n".join(lines if len(res.rows) == 1 else lines[-1:]))

    def compute():
        return sgd_vs_bayes(
            problem, make_net=lambda w: default_net(w, args.depth, arch=args.arch),
            widths=args.widths, optimizers=args.optimizers, batch_sizes=args.batch_sizes,
            runs=args.runs, learning_rate=args.lr, lr_factors=args.lr_factors,
            max_epochs=args.max_epochs,
            min_count=args.min_count, seed=args.seed, pb_method=args.pb_method,
            pb_samples=args.pb_samples, bayes_baseline=args.bayes_baseline,
            journal=args.out, show_progress=not args.quiet, callback=save)

    res, took = interruptible(compute, json_path, "ntkgp sgd-vs-bayes", "setting",
                              "Finished runs are journaled in runs-*.jsonl there: "
                              "the same command resumes from them.")
    if res is None:
        return 130
    write_text(json_path, res.to_json())
    print("\n" + res.table())
    print(f"\ncorr: Pearson correlation of log P_SGD and log P_B over functions found at least "
          f"{res.min_count} times; slope: least-squares slope of log P_SGD on log P_B (1 for a "
          "sampler of P_B without selection); [95% CI]: bootstrap over those functions; "
          f"top-mass: share of runs (SGD) and posterior probability (B) of the {res.top} most "
          "frequent functions; test err: mean held-out error of the runs.")
    print(f"took {took:.0f} s; wrote {json_path}", end="")
    save_figure(lambda path: plot_sgd_vs_bayes(res, path),
                os.path.join(args.out, "sgd_vs_bayes.png"))
    return _moments(args, problem) if args.moments else 0


def _moments(args, problem) -> int:
    """``--moments``: `ensemble_sweep` on the same training and held-out points."""
    import jax.numpy as jnp

    from ntkgp._src.experiments.boolean import default_net
    from ntkgp._src.experiments.ensemble_sweep import ensemble_sweep
    from ntkgp._src.experiments.plots import plot_ensemble

    path = os.path.join(args.out, "moments.json")
    dtype = jnp.result_type(float)
    x, y = problem.x.astype(dtype), problem.y.astype(dtype)
    res, took = interruptible(
        lambda: ensemble_sweep(lambda w: default_net(w, args.depth, arch=args.arch), args.widths,
                               x[problem.train], y[problem.train], x[problem.test],
                               show_progress=not args.quiet,
                               callback=lambda r: write_text(path, r.to_json())),
        path, "ntkgp sgd-vs-bayes --moments", "width")
    if res is None:
        return 130
    write_text(path, res.to_json())
    print(f"\nmoments: ensembles trained by full-batch gradient descent for {res.steps} steps "
          f"(t = {res.t:.3g}) on the same S; relative errors of their held-out mean and "
          "covariance against the NTK closed form at t (MC: expected error of that many exact "
          "draws; width part: the rest), and of the mean against the NNGP posterior mean\n"
          + res.table())
    print(f"took {took:.0f} s; wrote {path}", end="")
    save_figure(lambda p: plot_ensemble(res, p), os.path.join(args.out, "moments.png"))
    return 0
