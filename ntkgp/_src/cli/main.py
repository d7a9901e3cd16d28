"""``ntkgp`` command line: ``compare``, ``sgd-vs-bayes``, ``tickets``, ``fit``/``predict``
and ``kernel`` (public API only)."""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time
import warnings

import numpy as np

from ntkgp._src.cli import compare as cli_compare
from ntkgp._src.cli import fit as cli_fit
from ntkgp._src.cli import sgd_bayes as cli_sgd_bayes
from ntkgp._src.cli import tickets as cli_tickets
from ntkgp._src.cli.common import HelpFormatter
from ntkgp._src.nn import spec as nn_spec
from ntkgp._src.scale.buffers import reuse_large_buffers


def cmd_kernel(args) -> int:
    """Infinite-width NNGP/NTK of a deep net on a bundled dataset, and finite nets converging."""
    import jax
    import numpy as np

    from ntkgp._src import data
    from ntkgp._src.empirical.empirical import empirical_nngp_fn, empirical_ntk_fn
    from ntkgp._src.nn.spec import mlp

    x, _ = data.load(args.dataset)
    x = x[: args.n]
    dtype = np.float64 if args.x64 else np.float32
    x = x.astype(dtype)
    print(f"ntkgp kernel: {args.depth}-hidden-layer {args.activation} network, W_std="
          f"{args.W_std}, b_std={args.b_std}; {len(x)} points of '{args.dataset}' "
          f"(d={x.shape[1]}), {np.dtype(dtype).name}")
    net = mlp(args.depth, 1, args.activation, W_std=args.W_std, b_std=args.b_std)
    t0 = time.perf_counter()
    k = net.kernel(x, None)
    jax.block_until_ready(k.ntk)
    t1 = time.perf_counter()
    k = net.kernel(x, None)
    jax.block_until_ready(k.ntk)
    t2 = time.perf_counter()
    ntk, nngp = np.asarray(k.ntk, np.float64), np.asarray(k.nngp, np.float64)
    eig = np.linalg.eigvalsh(ntk)
    print(f"analytic kernel {ntk.shape}: first call {t1 - t0:.2f} s (compiles), then "
          f"{t2 - t1:.3f} s")
    print(f"  mean diag: NNGP {np.mean(np.diag(nngp)):.4g}, NTK {np.mean(np.diag(ntk)):.4g}; "
          f"NTK eigenvalues {eig[0]:.3g} .. {eig[-1]:.3g} (condition {eig[-1] / eig[0]:.3g})")
    m = min(args.mc_points, len(x))
    xs = x[:m]
    print(f"\nfinite networks vs the analytic kernel on {m} points "
          f"(relative Frobenius error of one network's empirical kernel, RMS over "
          f"{args.mc_samples} initializations):")
    print(f"  {'width':>6s} {'NNGP err':>9s} {'NTK err':>9s}")
    ref = net.kernel(xs, None)
    prev, prev_w = None, None
    for width in args.widths:
        # a readout as wide as the hidden layers: its outputs average into a finer estimate
        fin = mlp(args.depth, width, args.activation, W_std=args.W_std, b_std=args.b_std,
                     n_outputs=width)
        nngp_fn, ntk_fn = empirical_nngp_fn(fin), empirical_ntk_fn(fin)
        init = jax.jit(lambda key: fin.init(key, xs.shape)[1])
        se = np.zeros(2)
        for s in range(args.mc_samples):
            p = init(jax.random.PRNGKey(s))
            for i, (f, r) in enumerate(((nngp_fn, ref.nngp), (ntk_fn, ref.ntk))):
                d = np.asarray(f(xs, None, p), np.float64) - np.asarray(r, np.float64)
                se[i] += np.sum(d * d) / np.sum(np.asarray(r, np.float64) ** 2)
        err = np.sqrt(se / args.mc_samples)
        note = ("" if prev is None else
                f"   x{err[1] / prev[1]:.2f} (theory: x{(prev_w / width) ** 0.5:.2f})")
        print(f"  {width:6d} {err[0]:9.4f} {err[1]:9.4f}{note}")
        prev, prev_w = err, width
    print("\nErrors shrink like width^-1/2: wide networks are governed by these kernels.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ntkgp", description="Neural tangent kernels and NNGPs: infinite-width "
        "predictions set against real finite networks. Start with `ntkgp compare`.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_compare.add_parser(sub)
    cli_sgd_bayes.add_parser(sub)
    cli_tickets.add_parser(sub)
    cli_fit.add_parsers(sub)
    k = sub.add_parser(
        "kernel", help="analytic NNGP/NTK of a deep net on a bundled dataset, and finite "
                       "networks converging to it",
        description="The analytic NNGP and NTK of a fully connected network on a bundled "
                    "dataset (timed, with the kernel's spectrum), then the empirical kernels "
                    "of finite networks of growing width on --mc-points of its points: their "
                    "relative error shrinks like width^-1/2.",
        formatter_class=HelpFormatter)
    k.add_argument("--dataset", default="diabetes", help="bundled dataset")
    k.add_argument("--n", type=int, default=442, help="number of points (442: all of diabetes)")
    k.add_argument("--depth", type=int, default=3, help="hidden layers")
    k.add_argument("--activation", default="relu", choices=tuple(nn_spec.ACTIVATIONS),
                   help="activation of every hidden layer")
    k.add_argument("--W-std", dest="W_std", type=float, default=1.5,
                   help="weight standard deviation")
    k.add_argument("--b-std", dest="b_std", type=float, default=0.05,
                   help="bias standard deviation")
    k.add_argument("--widths", type=int, nargs="+", default=[64, 256, 1024],
                   help="widths of the finite networks")
    k.add_argument("--mc-points", type=int, default=32,
                   help="points on which the finite networks' kernels are compared")
    k.add_argument("--mc-samples", type=int, default=8,
                   help="initialisations averaged per width")
    k.set_defaults(func=cmd_kernel)
    for command in sub.choices.values():  # one --x64, the same for every command
        command.add_argument("--x64", action="store_true",
                             help="compute in float64 (JAX's x64 mode; default float32)")
    return p


def _show_warning(command, message, category, filename, lineno, file=None, line=None):
    """A warning as one line naming the command (and, for precision, the CLI's option)."""
    text = str(message).strip().split("\n")[0]
    if category.__name__ == "PrecisionWarning":
        text = ("the data are float64 but JAX computes in float32; pass --x64 to compute in "
                "float64.")
    print(f"ntkgp {command}: warning: {text}", file=sys.stderr)


def main(argv=None) -> int:
    """Run the ``ntkgp`` command with arguments ``argv`` (default ``sys.argv[1:]``).

    Args:
        argv: the command line after ``ntkgp``.

    Returns:
        The exit status: 0, 2 for an error (one line on stderr), 130 when interrupted.
    """
    args = build_parser().parse_args(argv)
    if args.x64:
        import jax
        jax.config.update("jax_enable_x64", True)
    with warnings.catch_warnings():
        warnings.showwarning = functools.partial(_show_warning, args.command)
        try:
            return args.func(args)
        except KeyboardInterrupt:
            print(f"\nntkgp {args.command}: interrupted.", file=sys.stderr)
            return 130
        except (ValueError, TypeError, OSError, ImportError, np.linalg.LinAlgError) as e:
            print(f"ntkgp {args.command}: error: {e}", file=sys.stderr)
            return 2


def run() -> None:
    """The console entry point: exits with `main`'s status. The process is the command's own,
    so it keeps large freed buffers for reuse (`ntkgp.batching.reuse_large_buffers`: kernels
    and factors of thousands of points are not faulted in again on every call). An interrupted
    run (130) ends at once after flushing its output, without the interpreter's teardown: with
    XLA's threads still busy that teardown could crash (a segfault after the results were
    saved)."""
    reuse_large_buffers()
    code = main()
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)
