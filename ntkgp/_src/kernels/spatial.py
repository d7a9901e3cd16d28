r"""Kernels of convolutions and pooling as sums of shifted slices (CNTK).

A convolution with filter :math:`F` (offsets :math:`d`), stride :math:`s` and zero (or
circular) padding maps the per-position covariance of its inputs as

.. math::
    K'_{pq} = \frac{\sigma_w^2}{|F|} \sum_{d \in F} K_{sp + d,\, sq + d} + \sigma_b^2

(Arora et al. 2019; Novak et al. 2019). The filter is a product of one range of offsets per
spatial axis with equal weights, so the sum factorizes into one pass per spatial axis, each a
sum of ``f`` shifted slices of the padded array taken along both position axes of the pair at
once: ``f_1 + f_2`` slice additions per entry for a 2-D filter rather than ``f_1 f_2``, and no
generic convolution with four spatial dimensions. Average pooling sums windows along each
position axis of the pair separately.

Arrays carry ``lead`` example axes (2 for ``nngp``/``ntk`` of shape ``(N1, N2, ...)``, 1 for the
self-covariance ``cov1`` of shape ``(N1, ...)``), then the spatial axes ``S`` (diagonal layout)
or ``S`` twice (full layout, first the positions of input 1, then those of input 2).
"""

from __future__ import annotations

from typing import Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

PADDINGS = ("SAME", "VALID", "CIRCULAR")


def out_size_and_pads(size: int, f: int, s: int, padding: str) -> Tuple[int, Tuple[int, int]]:
    """Output length and (low, high) padding of one spatial axis, as ``lax`` defines them
    (``CIRCULAR`` pads like ``SAME``, with wrapped-around entries instead of zeros)."""
    if padding == "VALID":
        return (size - f) // s + 1, (0, 0)
    out = -(-size // s)
    total = max((out - 1) * s + f - size, 0)
    return out, (total // 2, total - total // 2)


def sums_unpadded(sizes, window, strides, padding: str) -> bool:
    """Whether the shifted sums of a window (a convolution's filter or a pooling window) over
    input positions ``sizes`` add more than one offset and pad no axis. XLA:CPU stores a padded
    array but fuses unpadded shifted sums into each of their consumers, so the layers store
    such sums themselves (`ntkgp._src.kernels.stored.materialized`)."""
    return int(np.prod(window)) > 1 and all(
        out_size_and_pads(n, f, s, padding)[1] == (0, 0)
        for n, f, s in zip(sizes, window, strides))


def _pad(a, axes: Sequence[int], pads, circular: bool):
    if pads == (0, 0):
        return a
    widths = [(0, 0)] * a.ndim
    for ax in axes:
        widths[ax] = pads
    return jnp.pad(a, widths, mode="wrap" if circular else "constant")


def _slice(a, axes_starts, s, n):
    starts = [0] * a.ndim
    limits = list(a.shape)
    strides = [1] * a.ndim
    for ax, d in axes_starts:
        starts[ax], limits[ax], strides[ax] = d, d + (n - 1) * s + 1, s
    return jax.lax.slice(a, starts, limits, strides)


def conv(a, lead: int, r: int, full: bool, filter_shape, strides, padding: str):
    """The mean over filter offsets of the shifted covariance (see the module docstring)."""
    for i, (f, s) in enumerate(zip(filter_shape, strides)):
        axes = (lead + i, lead + r + i) if full else (lead + i,)
        n, pads = out_size_and_pads(a.shape[lead + i], f, s, padding)
        a = _pad(a, axes, pads, padding == "CIRCULAR")
        acc = None
        for d in range(f):
            v = _slice(a, [(ax, d) for ax in axes], s, n)
            acc = v if acc is None else acc + v
        a = acc * (1.0 / f)
    return a


def window_counts(size: int, w: int, s: int, padding: str, edges: bool) -> np.ndarray:
    """The divisor of each output of a pooling window along one axis: the window size, or
    (``edges``, with ``'SAME'`` padding) the number of input positions the window covers."""
    n, (low, _) = out_size_and_pads(size, w, s, padding)
    if not edges or padding != "SAME":
        return np.full(n, float(w))
    start = np.arange(n) * s - low
    return (np.minimum(start + w, size) - np.maximum(start, 0)).astype(float)


def pool(a, lead: int, r: int, window, strides, padding: str, average: bool = True,
         normalize_edges: bool = False):
    """Sum or average pooling of both positions of each pair (full layout only). Zero padding
    counts towards the window mean, as in the finite layer, unless ``normalize_edges`` (then
    each window is divided by the positions it covers); ``'CIRCULAR'`` wraps around."""
    for i, (w, s) in enumerate(zip(window, strides)):
        for ax in (lead + i, lead + r + i):
            size = a.shape[ax]
            n, pads = out_size_and_pads(size, w, s, padding)
            a = _pad(a, (ax,), pads, padding == "CIRCULAR")
            acc = None
            for d in range(w):
                v = _slice(a, [(ax, d)], s, n)
                acc = v if acc is None else acc + v
            if average:
                counts = window_counts(size, w, s, padding, normalize_edges)
                shape = [1] * acc.ndim
                shape[ax] = n
                acc = acc * jnp.asarray((1.0 / counts).reshape(shape), acc.dtype)
            a = acc
    return a


def mean_spatial(a, lead: int, r: int, full: bool, diagonal_only: bool):
    """Mean over positions: of the diagonal pairs (``diagonal_only``, for Flatten) or of all
    pairs (global average pooling)."""
    if not full:
        return jnp.mean(a, axis=tuple(range(lead, lead + r)))
    s = a.shape[lead:lead + r]
    p = 1
    for v in s:
        p *= v
    flat = a.reshape(a.shape[:lead] + (p, p))
    if diagonal_only:
        return jnp.mean(jnp.diagonal(flat, axis1=lead, axis2=lead + 1), axis=-1)
    return jnp.mean(flat, axis=(lead, lead + 1))


def to_diagonal(a, lead: int, r: int):
    """Full layout -> diagonal layout (the pairs of a position with itself)."""
    s = a.shape[lead:lead + r]
    p = 1
    for v in s:
        p *= v
    flat = a.reshape(a.shape[:lead] + (p, p))
    return jnp.diagonal(flat, axis1=lead, axis2=lead + 1).reshape(a.shape[:lead] + s)


def kernel_to_diagonal(k):
    """A `Kernel` with full spatial covariance reduced to the pairs of the same position."""
    if not k.full_spatial:
        return k
    r = k.spatial_ndim

    def d(a, lead):
        return None if a is None else to_diagonal(a, lead, r)

    return k.replace(nngp=d(k.nngp, 2), ntk=d(k.ntk, 2), cov1=d(k.cov1, 1), cov2=d(k.cov2, 1),
                     diagonal_spatial=True)


def transpose_pads(f: int, s: int, padding: str) -> Tuple[int, int]:
    """(low, high) padding of the stride-dilated input of a transposed convolution, as
    ``lax.conv_transpose`` pads it (``CIRCULAR`` is computed ``VALID``, then folded)."""
    if padding == "SAME":
        total = f + s - 2
        low = f - 1 if s > f - 1 else -(-total // 2)
        return low, total - low
    return f - 1, s - 1 + max(f - s, 0)


def transpose_out_size(size: int, f: int, s: int, padding: str) -> int:
    """Output length of a transposed convolution along one axis."""
    if padding == "VALID":
        return size * s + max(f - s, 0)
    return size * s


def fold(a, axis: int, n: int):
    """Wrap-around sum of ``a`` along ``axis`` onto ``n`` positions, centred as a
    ``'SAME'`` output: entry ``j`` is the sum of ``a[j + lo + m n]`` over integers ``m``,
    ``lo = (len - n) // 2`` (the circular transposed convolution)."""
    length = a.shape[axis]
    front = (-((length - n) // 2)) % n
    total = -(-(front + length) // n) * n
    widths = [(0, 0)] * a.ndim
    widths[axis] = (front, total - front - length)
    a = jnp.pad(a, widths)
    shape = a.shape[:axis] + (total // n, n) + a.shape[axis + 1:]
    return jnp.sum(a.reshape(shape), axis=axis)


def conv_transpose(a, lead: int, r: int, full: bool, filter_shape, strides, padding: str):
    r"""The mean over filter offsets of the shifted covariance of the stride-dilated, padded
    input (a transposed convolution maps positions as a stride-1 convolution of its input with
    ``s - 1`` zeros between entries): :math:`K'_{pq} = \frac{1}{|F|}\sum_d \tilde K_{p+d,\,q+d}`.
    """
    for i, (f, s) in enumerate(zip(filter_shape, strides)):
        axes = (lead + i, lead + r + i) if full else (lead + i,)
        size = a.shape[lead + i]
        low, high = transpose_pads(f, s, "VALID" if padding == "CIRCULAR" else padding)
        config = [(0, 0, 0)] * a.ndim
        for ax in axes:
            config[ax] = (low, high, s - 1)
        a = jax.lax.pad(a, jnp.zeros((), a.dtype), config)
        a = conv(a, lead, r, full, tuple(f if j == i else 1 for j in range(r)), (1,) * r,
                 "VALID")
        if padding == "CIRCULAR":
            for ax in axes:
                a = fold(a, ax, size * s)
    return a


def embed_diagonal(d, lead: int, r: int):
    """Diagonal layout -> full layout with zeros off the diagonal: ``(lead..., *S)`` to
    ``(lead..., *S, *S)`` (outputs of positions with independent weights)."""
    s = d.shape[lead:]
    p = int(np.prod(s, dtype=int))
    flat = d.reshape(d.shape[:lead] + (p, 1)) * jnp.eye(p, dtype=d.dtype).reshape(
        (1,) * lead + (p, p))
    return flat.reshape(d.shape[:lead] + s + s)
