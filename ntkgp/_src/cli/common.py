"""What the commands share: argument types, atomic result files and figures, progress notes."""

from __future__ import annotations

import argparse
import os
import sys

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


def note(text: str) -> None:
    """A line on stderr that does not break the progress bar."""
    from tqdm.auto import tqdm
    tqdm.write(text, file=sys.stderr)
