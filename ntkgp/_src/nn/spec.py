"""Fully connected and small convolutional architectures: the builders `mlp` and `cnn`, and
the short text spec that names their arguments (``relu-512x3``, ``conv-relu-64x2``,
`from_spec`)."""

from __future__ import annotations

import re
from typing import Callable, Optional, Union

from ntkgp._src import checks
from ntkgp._src.nn import layers
from ntkgp._src.nn.combinators import serial
from ntkgp._src.nn.conv import Conv
from ntkgp._src.nn.core import Layer
from ntkgp._src.nn.pooling import Flatten

ACTIVATIONS = {"relu": layers.Relu, "erf": layers.Erf, "gelu": layers.Gelu, "abs": layers.Abs,
               "sin": layers.Sin}
_OPTIONS = {"W_std": 1.5, "b_std": 0.05}
_GRAMMAR = ("[conv-]ACTIVATION-[WIDTH]xDEPTH[,W_std=S][,b_std=S], e.g. relu-512x3, erf-x2, "
            "relu-1024x1,W_std=1.4,b_std=0, conv-relu-64x2 (3x3 convolutions on images); "
            f"ACTIVATION is one of {', '.join(ACTIVATIONS)}")
_PATTERN = re.compile(r"^(?P<conv>conv-)?(?P<act>[a-z_]+)-(?P<width>\d*)x(?P<depth>\d+)"
                      r"(?P<opts>(,[^,]+)*)$")


def parse_spec(spec: str):
    """Parse ``ACTIVATION-[WIDTH]xDEPTH[,W_std=S][,b_std=S]``.

    Args:
        spec: e.g. ``'relu-512x3'``, ``'erf-x2,W_std=1.5'`` (width left to the caller).

    Returns:
        ``(activation, width or None, depth, {'W_std': ..., 'b_std': ..., 'conv': bool})``.

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
    opts["conv"] = m["conv"] is not None
    return act, width, depth, opts


def from_spec(spec: str, width: Optional[int] = None, n_outputs: int = 1,
              parameterization: str = "ntk") -> Layer:
    r"""A fully connected network from a text spec.

    ``ACTIVATION-[WIDTH]xDEPTH[,W_std=S][,b_std=S]``: ``DEPTH`` hidden layers of ``WIDTH``
    units, each ``Dense(WIDTH, W_std, b_std)`` then the activation, and a readout
    ``Dense(n_outputs, W_std, b_std)`` (`mlp`). Defaults: ``W_std=1.5``, ``b_std=0.05``.
    With the prefix ``conv-`` the hidden layers are 3x3 ``'SAME'`` convolutions with
    ``WIDTH`` channels and the readout follows a ``Flatten`` (`cnn`), for ``(N, H, W, C)``
    images.

    Args:
        spec: e.g. ``'relu-512x3'`` (3 hidden ReLU layers of 512), ``'erf-x2'`` (width given
            separately), ``'relu-1024x1,W_std=1.4,b_std=0'``.
        width: overrides the spec's width (required when the spec has none).
        n_outputs: width of the readout layer.
        parameterization: ``'ntk'`` (default) or ``'standard'``.

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
    build = cnn if opts["conv"] else mlp
    return build(depth, width, act, W_std=opts["W_std"], b_std=opts["b_std"],
                 n_outputs=n_outputs, parameterization=parameterization)


def _activation(activation):
    if isinstance(activation, str):
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of "
                             f"{', '.join(ACTIVATIONS)}, or pass a layer such as nn.Relu.")
        return ACTIVATIONS[activation]
    if not callable(activation):
        raise TypeError("`activation` must be a name like 'relu' or a function returning a "
                        f"layer (e.g. nn.Relu); got {type(activation).__name__}.")
    return activation


def mlp(depth: int, width: int = 1, activation: Union[str, Callable[[], Layer]] = "relu", *,
        W_std=1.5, b_std=0.05, n_outputs: int = 1, parameterization: str = "ntk") -> Layer:
    r"""A fully connected network: ``depth`` hidden layers, each ``Dense(width)`` then the
    activation, and a ``Dense(n_outputs)`` readout, all with the same ``W_std``, ``b_std``.

    .. math:: f(x) = W_{L+1}\,\phi(W_L \cdots \phi(W_1 x + b_1) \cdots + b_L) + b_{L+1}

    The width does not change the infinite-width kernels (``width=1`` serves for those).

    Args:
        depth: hidden layers, :math:`\ge 0`.
        width: units per hidden layer.
        activation: a name from ``ACTIVATIONS`` (``'relu'``, ``'erf'``, ``'gelu'``, ``'abs'``,
            ``'sin'``) or a function returning a layer, e.g. ``nn.Relu`` or
            ``lambda: nn.LeakyRelu(0.1)``.
        W_std: weight standard deviation (may be traced, for gradients in it).
        b_std: bias standard deviation.
        n_outputs: width of the readout layer.
        parameterization: ``'ntk'`` or ``'standard'``.

    Returns:
        An ``ntkgp.nn`` network mapping ``(N, d)`` to ``(N, n_outputs)``.

    Example:
        >>> from ntkgp import nn
        >>> net = nn.mlp(2, 512, "erf", W_std=1.2)
        >>> net.kernel([[1.0, 0.0]], None, "nngp").shape
        (1, 1)
    """
    activation = _activation(activation)
    checks.check_int(depth, "depth", 0)
    hidden = []
    for _ in range(depth):
        hidden += [layers.Dense(width, W_std=W_std, b_std=b_std,
                                parameterization=parameterization), activation()]
    return serial(*hidden, layers.Dense(n_outputs, W_std=W_std, b_std=b_std,
                                        parameterization=parameterization))


def cnn(depth: int, width: int = 1, activation: Union[str, Callable[[], Layer]] = "relu", *,
        W_std=1.5, b_std=0.05, n_outputs: int = 1, filter_shape=(3, 3),
        parameterization: str = "ntk") -> Layer:
    r"""A small convolutional network on channels-last images: ``depth`` hidden layers, each
    ``Conv(width, filter_shape, padding='SAME')`` then the activation, then ``Flatten`` and a
    ``Dense(n_outputs)`` readout, all with the same ``W_std``, ``b_std``.

    Args:
        depth: convolutional layers, :math:`\ge 0`.
        width: channels per layer (its infinite-width kernels do not depend on it).
        activation: as in `mlp`.
        W_std: weight standard deviation.
        b_std: bias standard deviation.
        n_outputs: width of the readout layer.
        filter_shape: spatial filter shape (its length is the number of spatial axes).
        parameterization: ``'ntk'`` or ``'standard'``.

    Returns:
        An ``ntkgp.nn`` network mapping ``(N, H, W, C)`` to ``(N, n_outputs)``.

    Example:
        >>> from ntkgp import nn
        >>> net = nn.cnn(2, 64)
        >>> net.kernel([[[[1.0], [0.0]], [[0.5], [0.2]]]], None, "ntk").shape
        (1, 1)
    """
    act = _activation(activation)
    checks.check_int(depth, "depth", 0)
    hidden = []
    for _ in range(depth):
        hidden += [Conv(width, tuple(filter_shape), padding="SAME", W_std=W_std, b_std=b_std,
                        parameterization=parameterization), act()]
    return serial(*hidden, Flatten(), layers.Dense(n_outputs, W_std=W_std, b_std=b_std,
                                                   parameterization=parameterization))
