"""Layers without parameters that select, resample or linearly mix spatial positions: `Index`,
`ImageResize`, `DotGeneral`. Each is a fixed linear map :math:`L` of the positions of every
channel, so the covariance of its outputs is :math:`L K L^\\top` (applied to both positions of
each pair) and the NTK likewise."""

from __future__ import annotations

from typing import Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.kernels.kernel import Kernel, expand_index
from ntkgp._src.nn.core import Layer, keep_diag, make_layer
from ntkgp._src.nn.layers import Identity


class _Slice:
    """``Slice[1:, ..., ::2]`` returns the index ``(slice(1, None), ..., slice(None, None, 2))``
    for `Index` (neural-tangents' ``stax.Slice``)."""

    def __getitem__(self, idx):
        return idx


Slice = _Slice()


def Index(idx, batch_axis: int = 0, channel_axis: int = -1) -> Layer:
    r"""``x[idx]``: select examples (in ``apply``) and positions, as NumPy indexing.

    Build ``idx`` with `Slice`: ``Index(Slice[:, :4, ::2])`` crops to the first 4 rows and
    every other column of ``(N, H, W, C)`` images; ``Index(Slice[:, 0])`` takes the first row
    (the images become ``(N, W, C)`` signals). The kernel is the kernel's entries at the
    selected positions (of both inputs of each pair).

    Args:
        idx: an index over the input axes ``(N, *S, C)``: slices, integers (drop the axis) and
            at most one ``...``. The kernel needs ``:`` for the examples (select them from the
            inputs or the resulting `Kernel` instead) and for the channels.
        batch_axis: must be 0 (ntkgp's layers take batch-first inputs).
        channel_axis: must be -1 (channels last).

    Returns:
        A `Layer` without parameters.
    """
    checks.check_batch_channel("Index", batch_axis, channel_axis)
    raw = idx if isinstance(idx, tuple) else (idx,)
    expand_index(raw, max(len(raw), 1), "Index")  # entries: slices, integers and one `...`
    name = f"Index({raw!r})"

    def full(ndim):
        return expand_index(raw, ndim, f"Index on inputs with {ndim} axes")

    def init(key, input_shape):
        shape = []
        for n, i in zip(input_shape, full(len(input_shape))):
            if isinstance(i, slice):
                if (n is None or n < 0) and i != slice(None):
                    raise ValueError(f"{name}: the input shape {tuple(input_shape)} leaves "
                                     f"the size of an axis it slices unknown.")
                shape.append(n if i == slice(None) else len(range(*i.indices(n))))
        return tuple(shape), ()

    def apply(params, x, **kwargs):
        x = jnp.asarray(x)
        return x[full(x.ndim)]

    def kernel_map(k: Kernel) -> Kernel:
        ix = full(k.spatial_ndim + 2)
        if ix[0] != slice(None) or ix[-1] != slice(None):
            raise ValueError(f"{name}: in the kernel, the index must keep every example and "
                             f"channel (`:` first and last); got {ix!r}. Select examples "
                             "from the inputs (kernel(x1[i], x2[j])) or from the result "
                             "(k[i]); an infinitely wide layer's channels cannot be indexed.")
        return k[ix[:-1]]

    def mask_map(m):
        return m[full(m.ndim + 1)[:-1]]

    return make_layer(name, init, apply, kernel_map, spatial=True, mask_map=mask_map)


# ---------------------------------------------------------------------------------------------
def _on_positions(a, ex: int, start: int, r: int, fn):
    """Apply ``fn`` (a map of arrays ``(N, *S, C) -> (N, *S', C)``) to the ``r`` position axes
    of ``a`` from ``start`` on, with examples on axis ``ex < start``; every other axis rides
    along as channels. The new position axes take the place of the old ones."""
    pos = list(range(start, start + r))
    rest = [i for i in range(a.ndim) if i != ex and i not in pos]
    rest_shape = tuple(a.shape[i] for i in rest)
    b = jnp.transpose(a, [ex] + pos + rest).reshape(
        (a.shape[ex],) + tuple(a.shape[i] for i in pos)
        + (int(np.prod(rest_shape, dtype=int)),))
    c = fn(b)
    new = c.shape[1:-1]
    c = c.reshape((a.shape[ex],) + new + rest_shape)
    current = [ex] + [("new", j) for j in range(len(new))] + rest
    target = (list(range(start)) + [("new", j) for j in range(len(new))]
              + list(range(start + r, a.ndim)))
    return jnp.transpose(c, [current.index(t) for t in target])


def linear_kernel_map(k: Kernel, fn, out_ndim: int) -> Kernel:
    r"""The `Kernel` after a fixed linear map ``fn`` of positions (``(N, *S, C)`` arrays to
    ``(N, *S', C)``, ``out_ndim`` spatial axes out): :math:`L K L^\top` on each field."""
    r = k.spatial_ndim
    full = k.full_spatial or r == 0

    def both(a, lead):
        if a is None:
            return None
        if not full:
            raise ValueError("a linear map of positions needs every pair of positions")
        a = _on_positions(a, 0, lead, r, fn)
        return _on_positions(a, lead - 1, lead + out_ndim, r, fn)

    return k.replace(nngp=both(k.nngp, 2), ntk=both(k.ntk, 2), cov1=both(k.cov1, 1),
                     cov2=both(k.cov2, 1), spatial_ndim=out_ndim,
                     diagonal_spatial=False if out_ndim else k.diagonal_spatial)


def _mask_through(fn, m):
    """The mask after a linear map of positions: an output is absent when no present input
    contributes to it (``fn`` applied to the presence, with weights made non-negative)."""
    if m is None:
        return None
    present = fn((~m)[..., None].astype(jnp.float32))
    return present[..., 0] == 0


# ---------------------------------------------------------------------------------------------
RESIZE_METHODS = ("nearest", "linear", "bilinear", "trilinear", "triangle", "cubic",
                  "bicubic", "tricubic", "lanczos3", "lanczos5")


def ImageResize(shape: Sequence[int], method: Union[str, jax.image.ResizeMethod],
                antialias: bool = True, precision=jax.lax.Precision.HIGHEST,
                batch_axis: int = 0, channel_axis: int = -1) -> Layer:
    r"""Resample the spatial axes with ``jax.image.resize``.

    Every method of ``jax.image.resize`` is a fixed linear map :math:`R` of each spatial
    axis, so :math:`K' = R K R^\top` on both positions of each pair; unlike neural-tangents
    (``'linear'`` and ``'nearest'`` only), the kernel takes every method.

    Args:
        shape: the output shape, one entry per input axis ``(N, *S, C)``; ``-1`` keeps an
            axis (the examples and channels must be kept in the kernel).
        method: ``'nearest'``, ``'linear'`` (``'bilinear'``, ``'trilinear'``,
            ``'triangle'``), ``'cubic'``, ``'lanczos3'``, ``'lanczos5'`` or a
            ``jax.image.ResizeMethod``.
        antialias: low-pass filter when downsampling (not for ``'nearest'``).
        precision: of the interpolation's products.
        batch_axis: must be 0.
        channel_axis: must be -1.

    Returns:
        A `Layer` without parameters.
    """
    checks.check_batch_channel("ImageResize", batch_axis, channel_axis)
    if isinstance(method, str):
        if method.lower() not in RESIZE_METHODS:
            raise ValueError(f"ImageResize: `method` must be one of {RESIZE_METHODS}; got "
                             f"{method!r}.")
        method = jax.image.ResizeMethod.from_string(method.lower())
    try:
        shape = tuple(int(v) for v in shape)
    except (TypeError, ValueError):
        raise TypeError(f"ImageResize: `shape` must be a tuple of integers (-1 keeps an axis); "
                        f"got {shape!r}.") from None
    if any(v < 1 and v != -1 for v in shape):
        raise ValueError(f"ImageResize: `shape` entries must be positive or -1; got {shape}.")
    name = f"ImageResize({shape}, {method.name.lower()})"

    def out_shape(input_shape):
        if len(input_shape) != len(shape):
            raise ValueError(f"{name}: `shape` has {len(shape)} entries for inputs of shape "
                             f"{tuple(input_shape)}; give one per axis (-1 keeps it).")
        return tuple(n if v == -1 else v for n, v in zip(input_shape, shape))

    def resize(x, target):
        return jax.image.resize(x, target, method, antialias=antialias, precision=precision)

    def apply(params, x, **kwargs):
        x = jnp.asarray(x)
        return resize(x, out_shape(x.shape))

    def positions(z):  # (N, *S, C) -> (N, *S', C)
        return resize(z, (z.shape[0],) + out_shape((1,) + z.shape[1:-1] + (1,))[1:-1]
                      + (z.shape[-1],))

    def kernel_map(k: Kernel) -> Kernel:
        if shape[0] != -1 or shape[-1] != -1 or len(shape) != k.spatial_ndim + 2:
            raise ValueError(f"{name}: the kernel resizes spatial axes only: `shape` needs one "
                             f"entry per axis of the (N, *S, C) inputs ({k.spatial_ndim + 2} "
                             "here) with -1 for the examples (first) and channels (last).")
        if all(v == -1 for v in shape):
            return k
        return linear_kernel_map(k, positions, k.spatial_ndim)

    def mask_map(m):
        return _mask_through(positions, m)

    spatial_kept = all(v == -1 for v in shape[1:-1])
    return make_layer(name, lambda key, s: (out_shape(s), ()), apply, kernel_map, spatial=True,
                      diag_ok=keep_diag if spatial_kept else (lambda ok: False),
                      mask_map=mask_map, remask=True)


# ---------------------------------------------------------------------------------------------
def _dot_axes(n: int, m: int, dimension_numbers, x_is_lhs: bool):
    """Which output axes of ``lax.dot_general`` hold the input's examples (its axis 0) and
    channels (its last axis); ``ValueError`` when either is contracted or batched."""
    try:
        (lc, rc), (lb, rb) = dimension_numbers
        lc, rc, lb, rb = (tuple(int(v) for v in t) for t in (lc, rc, lb, rb))
    except (TypeError, ValueError):
        raise ValueError("DotGeneral: `dimension_numbers` must be ((lhs_contracting, "
                         "rhs_contracting), (lhs_batch, rhs_batch)), tuples of axes; got "
                         f"{dimension_numbers!r}.") from None
    xc, xb = (lc, lb) if x_is_lhs else (rc, rb)
    used = set(a % n for a in xc + xb)
    if 0 in used or (n - 1) in used:
        raise ValueError(f"DotGeneral: the inputs' examples (axis 0) and channels (axis "
                         f"{n - 1}) can be neither contracted nor batch dimensions; got "
                         f"dimension_numbers={dimension_numbers!r} for inputs with {n} axes.")
    nb = len(lb)
    l_free = [a for a in range(n if x_is_lhs else m) if a not in lc + lb]
    r_free = [a for a in range(m if x_is_lhs else n) if a not in rc + rb]
    free = l_free if x_is_lhs else r_free
    offset = nb + (0 if x_is_lhs else len(l_free))
    return offset + free.index(0), offset + free.index(n - 1)


def DotGeneral(*, lhs=None, rhs=None, dimension_numbers=(((), ()), ((), ())), precision=None,
               batch_axis: int = 0, channel_axis: int = -1) -> Layer:
    r"""A product with a constant array: ``lax.dot_general(x, rhs, dimension_numbers)`` or
    ``lax.dot_general(lhs, x, dimension_numbers)`` (neural-tangents' ``DotGeneral``).

    Any fixed linear map :math:`L` of the positions (contractions over spatial axes,
    products along them, new axes from the constant): :math:`K' = L K L^\top` on both
    positions of each pair. The outputs keep ntkgp's layout: where ``lax.dot_general`` would
    put the examples or channels elsewhere, they are moved first and last (the other axes in
    ``lax``'s order, as neural-tangents' kernel orders them).

    Args:
        lhs: the constant left factor (the inputs are then the right one), or ``None``.
        rhs: the constant right factor, or ``None``; both ``None``: the identity.
        dimension_numbers: ``((lhs_contracting, rhs_contracting), (lhs_batch,
            rhs_batch))`` as in ``lax.dot_general``; the inputs' examples (axis 0) and
            channels (last axis) can be neither.
        precision: of the finite layer's product (the kernel uses the highest).
        batch_axis: must be 0.
        channel_axis: must be -1.

    Returns:
        A `Layer` without parameters.
    """
    checks.check_batch_channel("DotGeneral", batch_axis, channel_axis)
    if lhs is not None and rhs is not None:
        raise ValueError("DotGeneral: give `lhs` or `rhs`, not both (the inputs are the other "
                         "factor).")
    if lhs is None and rhs is None:
        return Identity()
    x_is_lhs = rhs is not None
    other = np.asarray(rhs if x_is_lhs else lhs, dtype=float)
    name = f"DotGeneral({'rhs' if x_is_lhs else 'lhs'} of shape {other.shape}, " \
           f"{dimension_numbers})"

    def product(x, const, prec):
        n = x.ndim
        args = (x, const) if x_is_lhs else (const, x)
        y = jax.lax.dot_general(*args, dimension_numbers, precision=prec)
        i0, ic = _dot_axes(n, const.ndim, dimension_numbers, x_is_lhs)
        return jnp.moveaxis(y, (i0, ic), (0, y.ndim - 1))

    def apply(params, x, **kwargs):
        x = jnp.asarray(x)
        return product(x, jnp.asarray(other, x.dtype), precision)

    def init(key, input_shape):
        dummy = jax.ShapeDtypeStruct(tuple(1 if v is None or v < 0 else v
                                           for v in input_shape), jnp.float32)
        out = jax.eval_shape(lambda z: product(z, jnp.asarray(other, jnp.float32), None),
                             dummy).shape
        return (input_shape[0],) + tuple(out[1:]), ()

    hi = jax.lax.Precision.HIGHEST

    def kernel_map(k: Kernel) -> Kernel:
        n = k.spatial_ndim + 2
        if other.ndim == 0:
            return k * float(other)  # a scaling keeps the layout (same-position pairs suffice)
        out_ndim = n + other.ndim - 2 * len(dimension_numbers[0][0]) \
            - len(dimension_numbers[1][0]) - 2
        return linear_kernel_map(
            k, lambda z: product(z, jnp.asarray(other, z.dtype), hi), out_ndim)

    def mask_map(m):
        return _mask_through(lambda z: product(z, jnp.asarray(np.abs(other), z.dtype), hi), m)

    return make_layer(name, init, apply, kernel_map, spatial=True, mask_map=mask_map,
                      diag_ok=keep_diag if other.ndim == 0 else (lambda ok: False),
                      remask=True)
