"""Fully connected architectures from a short text spec such as ``relu-512x3``."""

from __future__ import annotations

import re
from typing import Optional

from ntkgp._src.nn import layers
from ntkgp._src.nn.combinators import serial
from ntkgp._src.nn.core import Layer

ACTIVATIONS = {"relu": layers.Relu, "erf": layers.Erf, "gelu": layers.Gelu, "abs": layers.Abs,
               "sin": layers.Sin}
_OPTIONS = {"W_std": 1.5, "b_std": 0.05}
_GRAMMAR = ("ACTIVATION-[WIDTH]xDEPTH[,W_std=S][,b_std=S], e.g. relu-512x3, erf-x2, "
            f"relu-1024x1,W_std=1.4,b_std=0; ACTIVATION is one of {', '.join(ACTIVATIONS)}")
_PATTERN = re.compile(r"^(?P<act>[a-z_]+)-(?P<width>\d*)x(?P<depth>\d+)(?P<opts>(,[^,]+)*)$")


def parse_spec(spec: str):
    """Parse ``ACTIVATION-[WIDTH]xDEPTH[,W_std=S][,b_std=S]``.

    Args:
        spec: e.g. ``'relu-512x3'``, ``'erf-x2,W_std=1.5'`` (width left to the caller).

    Returns:
        ``(activation, width or None, depth, {'W_std': ..., 'b_std': ...})``.

    Raises:
        ValueError: naming the part that does not fit the grammar.
    """
    if not isinstance(spec, str):
        raise TypeError(f"an architecture spec must be a string like 'relu-512x3'; got "
                        f"{type(spec).__name__}.")
    m = _PATTERN.match(spec.strip())
    if m is None:
        raise ValueError(f"malformed architecture {spec!r}; expected {_GRAMMAR}.")
    act = m["act"]
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r} in {spec!r}; choose one of "
                         f"{', '.join(ACTIVATIONS)}.")
    width = int(m["width"]) if m["width"] else None
    depth = int(m["depth"])
    if depth < 1 or (width is not None and width < 1):
        raise ValueError(f"width and depth must be >= 1 in {spec!r}; expected {_GRAMMAR}.")
    opts = dict(_OPTIONS)
    for item in filter(None, m["opts"].split(",")):
        key, _, value = item.partition("=")
        if key not in _OPTIONS or not value:
            raise ValueError(f"unknown option {item!r} in {spec!r}; options are W_std=S and "
                             "b_std=S.")
        try:
            opts[key] = float(value)
        except ValueError:
            raise ValueError(f"option {key} in {spec!r} must be a number; got {value!r}.") \
                from None
        if not opts[key] >= 0:
            raise ValueError(f"option {key} in {spec!r} must be >= 0; got {value!r}.")
    return act, width, depth, opts


def from_spec(spec: str, width: Optional[int] = None, n_outputs: int = 1) -> Layer:
    r"""A fully connected network in the NTK parameterization from a text spec.

    ``ACTIVATION-[WIDTH]xDEPTH[,W_std=S][,b_std=S]``: ``DEPTH`` hidden layers of ``WIDTH``
    units, each ``Dense(WIDTH, W_std, b_std)`` then the activation, and a readout
    ``Dense(n_outputs, W_std, b_std)``. Defaults: ``W_std=1.5``, ``b_std=0.05``.

    Args:
        spec: e.g. ``'relu-512x3'`` (3 hidden ReLU layers of 512), ``'erf-x2'`` (width given
            separately), ``'relu-1024x1,W_std=1.4,b_std=0'``.
        width: overrides the spec's width (required when the spec has none).
        n_outputs: width of the readout layer.

    Returns:
        An ``ntkgp.nn`` network.

    Example:
        >>> from ntkgp import nn
        >>> net = nn.from_spec("relu-512x3")
        >>> net.kernel([[1.0, 0.0]], None, "ntk").shape
        (1, 1)
    """
    act, w, depth, opts = parse_spec(spec)
    width = width if width is not None else w
    if width is None:
        raise ValueError(f"{spec!r} gives no width; pass width= or write e.g. "
                         f"'{act}-512x{depth}'.")
    hidden = []
    for _ in range(depth):
        hidden += [layers.Dense(width, W_std=opts["W_std"], b_std=opts["b_std"]),
                   ACTIVATIONS[act]()]
    return serial(*hidden, layers.Dense(n_outputs, W_std=opts["W_std"], b_std=opts["b_std"]))
