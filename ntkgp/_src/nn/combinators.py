"""Combinators: serial, parallel, FanOut, FanInSum, FanInConcat, repeat."""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import numpy as np

from ntkgp._src import checks
from ntkgp._src.features import rules
from ntkgp._src.kernels.kernel import Kernel
from ntkgp._src.kernels.spatial import kernel_to_diagonal
from ntkgp._src.kernels.stored import materialized
from ntkgp._src.nn.blocking import same_positions_next
from ntkgp._src.nn.core import Layer, make_layer


def _check_layers(layers, who):
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise TypeError(f"{who} takes ntkgp.nn layers; argument {i} is "
                            f"{type(layer).__name__}. Build layers with ntkgp.nn (e.g. "
                            "`nn.Dense(512)`), not raw (init, apply) pairs.")


def serial(*layers: Layer) -> Layer:
    """Compose layers one after the other; params are a tuple, one entry per layer.

    Args:
        *layers: `Layer` objects, applied first to last.

    Returns:
        A `Layer` whose ``init``, ``apply`` and ``kernel`` chain those of ``layers``; its
        output shape is the last layer's.
    """
    _check_layers(layers, "serial")
    if not layers:
        raise ValueError("serial() needs at least one layer.")

    def init(key, input_shape):
        params = []
        shape = input_shape
        for layer, k in zip(layers, jax.random.split(key, len(layers))):
            shape, p = layer.init(k, shape)
            params.append(p)
        return shape, tuple(params)

    def apply(params, x, mask=None, **kwargs):
        if len(params) != len(layers):
            raise ValueError(f"serial of {len(layers)} layers got {len(params)} parameter "
                             "entries; pass the params returned by this network's `init`.")
        for i, (layer, p) in enumerate(zip(layers, params)):
            x = layer.apply(p, x, mask=mask, **_own_rng(kwargs, i))
            mask = None if mask is None else layer.mask_map(mask)
        return x

    def mask_map(mask):
        for layer in layers:
            mask = None if mask is None else layer.mask_map(mask)
        return mask

    def diag_ok(out_ok):
        for layer in reversed(layers):
            out_ok = layer.diag_ok(out_ok)
        return out_ok

    # Where the rest of the network needs only same-position pairs (e.g. after the last
    # pooling layer of a net that ends in Flatten), drop the other pairs (assuming this
    # serial's own output needs them all: a nested serial is conservative).
    needs = [False] * (len(layers) + 1)
    for i in range(len(layers) - 1, -1, -1):
        needs[i] = layers[i].diag_ok(needs[i + 1])

    # Segments of layers that end with a nonlinearity (e.g. Dense + Relu) run as one stored
    # computation each: the affine map fuses into the nonlinearity and no layer's work is
    # recomputed by later ones (see `materialized`).
    segments, current = [], []
    for i, layer in enumerate(layers):
        current.append((layer, needs[i + 1]))
        if layer.heavy:
            segments.append((tuple(current), True))
            current = []
    if current:
        segments.append((tuple(current), False))

    def run_segment(seg, k):
        for layer, diagonal_after in seg:
            with same_positions_next(diagonal_after):
                k = layer.kernel_map(k)
            if diagonal_after and isinstance(k, Kernel):
                k = kernel_to_diagonal(k)
        return k

    def kernel_map(k):
        for seg, heavy in segments:
            k = materialized(functools.partial(run_segment, seg), k) if heavy else run_segment(
                seg, k)
        return k

    name = "serial(" + ", ".join(layer.name for layer in layers) + ")"
    return make_layer(name, init, apply, kernel_map,
                      structured=all(layer.structured for layer in layers),
                      heavy=any(layer.heavy for layer in layers), diag_ok=diag_ok,
                      spatial=any(layer.spatial for layer in layers), mask_map=mask_map,
                      combinator=True, features=rules.chain(layers))


def parallel(*layers: Layer) -> Layer:
    """Apply the i-th layer to the i-th input of a list (as made by `FanOut`).

    Args:
        *layers: one `Layer` per branch.

    Returns:
        A `Layer` mapping a list of ``len(layers)`` inputs to the list of their outputs;
        params are a tuple, one entry per branch.
    """
    _check_layers(layers, "parallel")

    def _check_len(xs, what):
        if not isinstance(xs, (list, tuple)) or len(xs) != len(layers):
            got = len(xs) if isinstance(xs, (list, tuple)) else "a single input"
            raise ValueError(f"parallel of {len(layers)} branches needs a list of "
                             f"{len(layers)} {what}; got {got}. Put FanOut({len(layers)}) "
                             "before it.")

    def init(key, input_shapes):
        _check_len(input_shapes, "input shapes")
        out = [layer.init(k, s) for layer, k, s in
               zip(layers, jax.random.split(key, len(layers)), input_shapes)]
        return [o[0] for o in out], tuple(o[1] for o in out)

    def apply(params, xs, mask=None, **kwargs):
        _check_len(xs, "inputs")
        ms = [None] * len(layers) if mask is None else mask
        return [layer.apply(p, x, mask=m, **_own_rng(kwargs, i))
                for i, (layer, p, x, m) in enumerate(zip(layers, params, xs, ms))]

    def mask_map(ms):
        return [None if m is None else layer.mask_map(m) for layer, m in zip(layers, ms)]

    def kernel_map(ks):
        _check_len(ks, "inputs")
        return [layer.kernel_map(k) for layer, k in zip(layers, ks)]

    name = "parallel(" + ", ".join(layer.name for layer in layers) + ")"
    return make_layer(name, init, apply, kernel_map,
                      structured=all(layer.structured for layer in layers),
                      heavy=any(layer.heavy for layer in layers),
                      diag_ok=lambda out_ok: all(layer.diag_ok(out_ok) for layer in layers),
                      spatial=any(layer.spatial for layer in layers), mask_map=mask_map,
                      combinator=True, features=rules.branches(layers))


def FanOut(num: int) -> Layer:
    """Copy the input into a list of ``num`` identical branches.

    Args:
        num: number of branches.

    Returns:
        A `Layer` mapping an array to a list of ``num`` references to it (no parameters;
        kernels are copied likewise).
    """
    num = checks.check_positive_int(num, "num")
    return make_layer(f"FanOut({num})", lambda key, s: ([tuple(s)] * num, ()),
                      lambda p, x, **kw: [x] * num, lambda k: [k] * num,
                      mask_map=lambda m: [m] * num, features=lambda f, key, draws: [f] * num)


def _own_rng(kwargs, i):
    """``kwargs`` with the ``rng`` of the i-th layer: the network's key folded with ``i``, so
    that every layer (e.g. each `Dropout`) draws independently and reproducibly."""
    if kwargs.get("rng") is None:
        return kwargs
    return dict(kwargs, rng=jax.random.fold_in(kwargs["rng"], i))


def _any_mask(ms):
    """A position of a product of branches is absent (zero) when it is absent in any."""
    present = [m for m in ms if m is not None]
    if not present:
        return None
    out = present[0]
    for m in present[1:]:
        out = out | m
    return out


def joined_mask(ms):
    """A position of the joined branches is absent when it is absent in every branch."""
    present = [m for m in ms if m is not None]
    if not present:
        return None
    out = present[0]
    for m in present[1:]:
        out = out & m
    return out


def check_branches(xs, who):
    if not isinstance(xs, (list, tuple)) or len(xs) < 1:
        raise ValueError(f"{who} joins a list of branches (from FanOut + parallel); got a "
                         "single input.")


def FanInSum() -> Layer:
    r"""Sum the branches: :math:`y = \sum_i x_i`.

    The kernel is the sum of the branch kernels, which is exact when the branches are
    independent given their common input, e.g. a residual block whose non-identity branch ends
    in a freshly initialized Dense layer (zero-mean and independent of the identity branch).
    Two branches that are the *same* function (e.g. two Identity branches) are not independent
    and the summed kernel would then be wrong.

    Returns:
        A `Layer` mapping a list of arrays of one shape to their sum (same shape).
    """

    def init(key, input_shapes):
        check_branches(input_shapes, "FanInSum")
        if len({tuple(s[1:]) for s in input_shapes}) != 1:
            raise ValueError(f"FanInSum needs branches of one shape; got {input_shapes}.")
        return tuple(input_shapes[0]), ()

    def apply(params, xs, **kwargs):
        check_branches(xs, "FanInSum")
        return sum(xs[1:], xs[0])

    def kernel_map(ks: Sequence[Kernel]) -> Kernel:
        check_branches(ks, "FanInSum")
        widths = {k.width for k in ks}
        if len(widths) > 1 and None not in widths:
            raise ValueError(f"FanInSum needs branches of one width; got widths "
                             f"{[k.width for k in ks]}.")
        first = ks[0]

        def add(name):
            vals = [getattr(k, name) for k in ks]
            return None if vals[0] is None else sum(vals[1:], vals[0])

        return first.replace(nngp=add("nngp"), ntk=add("ntk"), cov1=add("cov1"),
                             cov2=add("cov2"), is_gaussian=all(k.is_gaussian for k in ks))

    return make_layer("FanInSum()", init, apply, kernel_map, mask_map=joined_mask,
                      features=lambda fs, key, draws: rules.fan_in_sum(fs))


def FanInProd() -> Layer:
    r"""Multiply the branches elementwise.

    For independent Gaussian branches (e.g. each ending in its own Dense layer) the kernel
    of the product is the product of kernels, and its NTK follows by the product rule:

    .. math:: K = \prod_i K_i, \qquad \Theta = \sum_i \Theta_i \prod_{j \ne i} K_j .

    Returns:
        A `Layer` mapping a list of arrays of one shape to their product (same shape).
    """

    def init(key, input_shapes):
        check_branches(input_shapes, "FanInProd")
        if len({tuple(s[1:]) for s in input_shapes}) != 1:
            raise ValueError(f"FanInProd needs branches of one shape; got {input_shapes}.")
        return tuple(input_shapes[0]), ()

    def apply(params, xs, **kwargs):
        check_branches(xs, "FanInProd")
        out = xs[0]
        for x in xs[1:]:
            out = out * x
        return out

    def kernel_map(ks: Sequence[Kernel]) -> Kernel:
        check_branches(ks, "FanInProd")
        if len({k.nngp.shape for k in ks}) != 1:
            raise ValueError("FanInProd needs branches of one shape; got kernels of shapes "
                             f"{[k.nngp.shape for k in ks]}.")

        def prod(name):
            vals = [getattr(k, name) for k in ks]
            if vals[0] is None:
                return None
            out = vals[0]
            for v in vals[1:]:
                out = out * v
            return out

        ntk = None
        if ks[0].ntk is not None:
            nngp_acc, ntk = ks[0].nngp, ks[0].ntk
            for k in ks[1:]:
                ntk = ntk * k.nngp + nngp_acc * k.ntk
                nngp_acc = nngp_acc * k.nngp
        return ks[0].replace(nngp=prod("nngp"), ntk=ntk, cov1=prod("cov1"), cov2=prod("cov2"),
                             is_gaussian=len(ks) == 1 and ks[0].is_gaussian)

    return make_layer("FanInProd()", init, apply, kernel_map, mask_map=_any_mask, remask=True)


def repeat(layer: Layer, n: int) -> Layer:
    """``serial(layer, layer, ..., layer)`` with ``n`` copies, each with its own parameters.

    Args:
        layer: the `Layer` to repeat (for ``n > 1`` its outputs must be valid inputs to it).
        n: number of copies, ``n >= 0`` (``0``: the identity, as in neural-tangents).

    Returns:
        A `Layer`, as `serial` (``n = 0``: an `Identity` with no parameters).
    """
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"repeat needs a non-negative integer number of copies `n`; got {n!r}.")
    _check_layers([layer], "repeat")
    if n == 0:
        return make_layer(f"repeat({layer.name}, 0)", lambda key, s: (tuple(s), ()),
                          lambda p, x, **kw: x, lambda k: k, features=rules.identity)
    return serial(*([layer] * int(n)))
