"""What the commands share: argument types, atomic result files and figures, progress notes."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ntkgp._src.util import write_atomic


def widths(text: str):
    """``'64,256'`` as ``[64, 256]`` (an argparse type)."""
    try:
        values = [int(w) for w in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"widths must be whole numbers like 64,256,1024; got "
                                         f"{text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"widths must be positive, like 64,256,1024; got "
                                         f"{text!r}")
    return values


def number_list(text: str, example: str):
    """``'0.5,1.5'`` as ``[0.5, 1.5]`` (for argparse types; ``example`` goes in the error)."""
    try:
        values = [float(v) for v in text.replace(",", " ").split()]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"expected numbers like {example}; got {text!r}")
    return values


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default said once: not where the help text already
    says it, nor for flags and options without one; lists as they are written (``64,256``
    or ``64 256``)."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if ("default" in text or d is None or d is argparse.SUPPRESS or isinstance(d, bool)
                or action.option_strings == []):
            return text
        sep = " " if action.nargs in ("+", "*") else ","     # as the option is written
        shown = sep.join(f"{v:g}" if isinstance(v, float) else str(v) for v in d) \
            if isinstance(d, (list, tuple)) else d
        return f"{text} (default: {shown})"


def factors(text: str):
    """``'0.5,1.5,3'`` as ``[0.5, 1.5, 3.0]``, all positive (an argparse type)."""
    values = number_list(text, "0.5,1.5,3")
    if min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers, like 0.5,1.5,3; got "
                                         f"{text!r}")
    return values


def positive(kind):
    """An argparse type: ``kind(text)``, which must be > 0."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}; got {text!r}") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"must be > 0; got {text!r}")
        return v
    return parse


def write_text(path, text: str) -> None:
    """Write ``text`` atomically: a reader (or an interrupt) never sees half a file."""
    write_atomic(path, lambda fh: fh.write(text.encode()))


def save_figure(plot, png) -> None:
    """The figure ``plot(None)`` returns, written atomically to ``png``; prints where it went,
    or why there is no figure (matplotlib missing)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"\nno {os.path.basename(png)}: plotting needs matplotlib (pip install "
              "'ntkgp[plot]').")
        return
    fig = plot(None)
    try:
        write_atomic(png, lambda fh: fig.savefig(fh, format="png", dpi=110))
    finally:
        plt.close(fig)
    print(f" and {png}")


def interruptible(compute, json_path: str, command: str, unit: str, more: str = ""):
    """``(compute(), seconds)``, or ``(None, None)`` after Ctrl-C, having said on stderr what
    was kept (``compute`` saves each finished ``unit`` to ``json_path`` as it goes; ``more``
    adds a sentence)."""
    t0 = time.perf_counter()
    try:
        return compute(), time.perf_counter() - t0
    except KeyboardInterrupt:
        saved = (f"the {unit}s finished so far are in {json_path}" if os.path.exists(json_path)
                 else f"no {unit} had finished")
        print(f"\n{command}: interrupted; {saved}.{' ' + more if more else ''}",
              file=sys.stderr)
        return None, None


def note(text: str) -> None:
    """A line on stderr that does not break the progress bar."""
    from tqdm.auto import tqdm
    tqdm.write(text, file=sys.stderr)


def load_dataset(args, conv: bool):
    """``(x, y, name)`` of ``--dataset`` (and ``--target``, ``--pool``, ``--loss``): a bundled
    table, a CSV file, or for convolutional architectures an image set; class labels become
    one-hot targets for cross-entropy and centered one-hot ones for the squared error."""
    from ntkgp._src import data
    if conv:
        if args.dataset not in data.IMAGE_SETS:
            raise ValueError(f"a conv- architecture needs an image dataset "
                             f"({', '.join(data.IMAGE_SETS)}); got --dataset {args.dataset}.")
        x, y = data.load_images(args.dataset, pool=args.pool)
        return x, class_targets(y, args.loss), args.dataset
    if args.loss == "xent" and (args.dataset in data.REGRESSION or
                                args.dataset not in data.DATASETS):
        raise ValueError(f"--loss xent needs a classification dataset (breast_cancer, wine, "
                         f"iris, digits or an image set); got --dataset {args.dataset}.")
    if os.path.splitext(args.dataset)[1].lower() == ".csv" or os.path.sep in args.dataset:
        if not args.target:
            raise ValueError("a CSV dataset needs --target COLUMN (the column to predict).")
        x, y = data.load_csv(args.dataset, args.target)
        return x, y[:, None], os.path.basename(args.dataset)
    if args.target:
        raise ValueError("--target is only for CSV datasets.")
    x, y = data.load(args.dataset)
    if args.dataset not in data.REGRESSION:
        y = class_targets(y, args.loss)
    return x, (y if y.ndim == 2 else y[:, None]), args.dataset


def class_targets(labels, loss: str):
    """Targets of class labels: one-hot for cross-entropy, centered one-hot for MSE."""
    from ntkgp._src import data
    return data.onehot_targets(labels) if loss == "xent" else data.mse_targets(labels)
