"""`Layer`: the (init, apply, kernel) triple of a network and its infinite-width limit."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional, Tuple

import jax

from ntkgp._src import checks
from ntkgp._src.kernels.kernel import Kernel, input_kernel


@dataclasses.dataclass(frozen=True, eq=False)
class Layer:
    """A network (or layer) with its finite-width functions and infinite-width kernel.

    ``init, apply, kernel = layer`` unpacks it as the stax-style triple.

    Attributes:
        init: ``init(key, input_shape) -> (output_shape, params)``; ``input_shape`` includes the
            batch axis (``-1`` allowed).
        apply: ``apply(params, x, **kwargs) -> y``; ``x`` of shape ``(N, d)`` gives ``y`` of
            shape ``(N, out_dim)``.
        kernel: ``kernel(x1, x2=None, get=None) -> Kernel`` (or an array when ``get`` is a
            string): the NNGP and NTK of this network in the infinite-width limit.
        name: a short description.
        kernel_map: maps the `Kernel` of this layer's inputs to that of its outputs (a list of
            Kernels for multi-branch layers); what the combinators compose.
        structured: ``True`` when every layer with parameters has a structured empirical-NTK
            rule (``ntkgp.empirical`` uses it for ``implementation='structured'``).
    """

    init: Callable
    apply: Callable
    kernel: Callable
    name: str
    kernel_map: Callable
    structured: bool = True

    def __iter__(self):
        return iter((self.init, self.apply, self.kernel))

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return (self.init, self.apply, self.kernel)[i]

    def __repr__(self):
        return f"Layer({self.name})"


def _select(k: Kernel, get: tuple, single: bool):
    if single:
        return getattr(k, get[0])
    return k.replace(nngp=k.nngp if "nngp" in get else None,
                     ntk=k.ntk if "ntk" in get else None)


def make_kernel_fn(kernel_map: Callable, name: str) -> Callable:
    """The public ``kernel(x1, x2=None, get=None)`` of a network from its ``kernel_map``."""

    @functools.partial(jax.jit, static_argnames=("get",))
    def _core(x1, x2, get):
        k = input_kernel(x1, x2, compute_ntk="ntk" in get)
        out = kernel_map(k)
        if isinstance(out, (list, tuple)):
            raise ValueError(f"The network {name} ends with {len(out)} parallel branches; join "
                             "them with FanInSum() or FanInConcat() before taking its kernel.")
        return out

    def kernel(x1, x2=None, get=None) -> Any:
        r"""Infinite-width NNGP and NTK of the network.

        Args:
            x1: array of shape ``(N1, d)``.
            x2: array of shape ``(N2, d)``, or ``None`` for ``x1`` against itself (symmetric).
            get: ``'nngp'`` or ``'ntk'`` (returns that array of shape ``(N1, N2)``), a tuple of
                them, or ``None`` for both (returns a `Kernel`).

        Returns:
            A `Kernel`, or an array of shape ``(N1, N2)`` when ``get`` is a string.

        Raises:
            ValueError: for inputs of the wrong shape, with NaN/inf, empty, or an unknown ``get``.
        """
        names, single = checks.normalize_get(get)
        x1, x2 = checks.check_inputs(x1, x2)
        return _select(_core(x1, x2, names), names, single)

    kernel.__name__ = "kernel"
    return kernel


def make_layer(name: str, init: Callable, apply: Callable, kernel_map: Callable,
               structured: bool = True) -> Layer:
    apply = _tag(apply, name)
    layer = Layer(init=init, apply=apply, kernel=make_kernel_fn(kernel_map, name), name=name,
                  kernel_map=kernel_map, structured=structured)
    apply._ntkgp_layer = layer  # lets ntkgp.empirical find the structure behind `layer.apply`
    return layer


def _tag(apply, name):
    @functools.wraps(apply)
    def tagged(params, x, **kwargs):
        return apply(params, x, **kwargs)

    tagged.__name__ = f"apply[{name}]"
    return tagged


Shape = Tuple[int, ...]
OptFloat = Optional[float]
