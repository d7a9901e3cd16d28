"""Pooling and flattening of spatial inputs, with their infinite-width kernels."""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src.kernels import masks, spatial
from ntkgp._src.kernels.kernel import Kernel
from ntkgp._src.nn.blocking import stored_sums
from ntkgp._src.nn.core import Layer, drop_mask, make_layer
from ntkgp._src.nn.spatial_args import (
    check_fits,
    check_padding,
    check_rank,
    int_tuple,
    kernel_spatial,
    map_kernel,
    window_arg,
)


# ---------------------------------------------------------------------------------------------
def AvgPool(window_shape: Sequence[int], strides: Optional[Sequence[int]] = None,
            padding: str = "VALID", normalize_edges: bool = False) -> Layer:
    r"""Average pooling over spatial windows (channels-last inputs).

    .. math:: K'_{pq} = \frac{1}{|w_p| |w_q|} \sum_{a \in w_p, b \in w_q} K_{ab}

    with :math:`|w|` the window size: zero padding counts towards the mean with ``'SAME'``,
    as in the finite layer, unless ``normalize_edges`` (then :math:`|w_p|` is the number of
    input positions window :math:`p` covers). The kernel needs every pair of positions of its
    input.

    Args:
        window_shape: ``(w,)``, ``(wh, ww)``, ``(wd, wh, ww)``, ...: one size per spatial axis.
        strides: default 1 along each axis (overlapping windows), as neural-tangents.
        padding: ``'VALID'``, ``'SAME'`` or ``'CIRCULAR'`` (``'SAME'``'s output size, with the
            input wrapped around instead of zeros).
        normalize_edges: with ``'SAME'``, divide each window by the positions it covers
            instead of the window size.

    Returns:
        A `Layer` (no parameters) mapping ``(N, *S, C)`` to ``(N, *S', C)``, ``S'`` the
        number of windows along each spatial axis.

    Raises:
        ValueError: a window larger than the input with ``'VALID'``, or inputs of the wrong rank.
    """
    return _pool_layer("AvgPool", window_shape, strides, padding, True, normalize_edges)


def SumPool(window_shape: Sequence[int], strides: Optional[Sequence[int]] = None,
            padding: str = "VALID") -> Layer:
    r"""Sum pooling over spatial windows: :math:`K'_{pq} = \sum_{a \in w_p, b \in w_q}
    K_{ab}` (padding contributes zeros; ``'CIRCULAR'`` wraps around).

    Args:
        window_shape: ``(w,)``, ``(wh, ww)``, ``(wd, wh, ww)``, ...: one size per spatial axis.
        strides: default 1 along each axis.
        padding: ``'VALID'``, ``'SAME'`` or ``'CIRCULAR'``.

    Returns:
        A `Layer` (no parameters) mapping ``(N, *S, C)`` to ``(N, *S', C)``.
    """
    return _pool_layer("SumPool", window_shape, strides, padding, False, False)


def _pool_layer(kind, window_shape, strides, padding, average, normalize_edges) -> Layer:
    r, window = window_arg(window_shape, "window_shape",
                           f"{kind} supports 1-D to 8-D windows")
    strides = (1,) * r if strides is None else int_tuple(strides, r, "strides")
    padding = check_padding(padding)
    edges = bool(normalize_edges)
    name = (f"{kind}({window}, strides={strides}, {padding}"
            + (", normalize_edges=True)" if edges else ")"))

    def out_shape(input_shape):
        s = check_rank(input_shape, r, name)
        return (input_shape[0],) + check_fits(s, window, strides, padding, name, "window") + (
            input_shape[-1],)

    def init(key, input_shape):
        return out_shape(input_shape), ()

    def apply(params, x, **kwargs):
        out_shape(x.shape)
        sizes = x.shape[1:-1]
        pads = [spatial.out_size_and_pads(n, w, s, padding)[1]
                for n, w, s in zip(sizes, window, strides)]
        if padding == "CIRCULAR":
            x = jnp.pad(x, [(0, 0)] + pads + [(0, 0)], mode="wrap")
            pads = [(0, 0)] * r
        # a concrete zero (np, not jnp: under jit jnp.zeros is traced) makes this the summing
        # reduce_window, which has a transpose rule: reverse-mode autodiff works through it
        y = jax.lax.reduce_window(x, np.zeros((), x.dtype), jax.lax.add, (1,) + window + (1,),
                                  (1,) + strides + (1,), [(0, 0)] + pads + [(0, 0)])
        if average:
            for i, (n, w, s) in enumerate(zip(sizes, window, strides)):
                counts = spatial.window_counts(n, w, s, padding, edges)
                shape = [1] * y.ndim
                shape[1 + i] = counts.size
                y = y * jnp.asarray((1.0 / counts).reshape(shape), y.dtype)
        return y

    def kernel_map(k: Kernel) -> Kernel:
        s = kernel_spatial(k, r, name)
        check_fits(s, window, strides, padding, name, "window")
        if not k.full_spatial:  # not reachable through the public kernel functions
            raise ValueError(f"{name} needs the covariance of every pair of positions.")

        def pool_map(k):
            return map_kernel(k, lambda a, lead: spatial.pool(a, lead, r, window, strides,
                                                              padding, average, edges))

        return stored_sums(pool_map, k, spatial.sums_unpadded(s, window, strides, padding))

    def mask_map(m):
        return masks.window_mask(m, window, strides, padding)

    return make_layer(name, init, apply, kernel_map, diag_ok=lambda out_ok: False,
                      spatial=True, mask_map=mask_map, remask=True)


def GlobalAvgPool() -> Layer:
    r"""Average over all spatial positions: ``(N, *S, C) -> (N, C)``.

    .. math:: K'_{12} = \frac{1}{n_1 n_2}\sum_{p, q} K_{pq}

    over the :math:`n_1, n_2` present positions of the two inputs (all :math:`|S|` without
    masks). The kernel needs every pair of positions; this is what makes the CNTK of pooled
    networks costly (Arora et al. 2019).

    Returns:
        A `Layer` (no parameters) mapping ``(N, *S, C)`` to ``(N, C)``.
    """
    return _global_pool("GlobalAvgPool()", average=True)


def GlobalSumPool() -> Layer:
    r"""Sum over all spatial positions: ``(N, *S, C) -> (N, C)``, :math:`K' = \sum_{p,q} K_{pq}`
    (absent positions contribute zero).

    Returns:
        A `Layer` (no parameters) mapping ``(N, *S, C)`` to ``(N, C)``.
    """
    return _global_pool("GlobalSumPool()", average=False)


def _global_pool(name: str, average: bool) -> Layer:
    def init(key, input_shape):
        if len(input_shape) < 3:
            raise ValueError(f"{name} takes (N, *S, C) inputs with spatial axes; got shape "
                             f"{tuple(input_shape)}.")
        return (input_shape[0], input_shape[-1]), ()

    def apply(params, x, mask=None, **kwargs):
        if x.ndim < 3:
            raise ValueError(f"{name} takes (N, *S, C) inputs with spatial axes; got shape "
                             f"{tuple(x.shape)}.")
        axes = tuple(range(1, x.ndim - 1))
        if mask is None:
            return jnp.mean(x, axis=axes) if average else jnp.sum(x, axis=axes)
        total = jnp.sum(jnp.where(mask[..., None], jnp.zeros((), x.dtype), x), axis=axes)
        return total / masks.present_count(mask)[:, None] if average else total

    def kernel_map(k: Kernel) -> Kernel:
        if k.spatial_ndim == 0:
            raise ValueError(f"{name} needs inputs with spatial axes ((N, L, C) or "
                             "(N, H, W, C)); here its input is (N, d) features.")
        if not k.full_spatial:
            raise ValueError(f"{name} needs the covariance of every pair of positions.")
        r = k.spatial_ndim
        # the mean over all |S|^2 pairs, rescaled to the sum (|S|^2) or to the mean over
        # the present positions of each input (|S|^2 / (n1 n2))
        out = map_kernel(k, lambda a, lead: spatial.mean_spatial(a, lead, r, True, False),
                         spatial_ndim=0, diagonal_spatial=False)
        if average and k.mask1 is None:
            return out
        size, dt = float(np.prod(k.spatial_shape)), out.cov1.dtype
        n = out.cov1.shape[0] if k.cov2 is None else out.cov2.shape[0]

        def factor(mask, count):  # |S| / (present positions), per example
            if not average:
                return jnp.full((count,), size, dt)
            return size / masks.present_count(mask).astype(dt)

        f1 = factor(k.mask1, out.cov1.shape[0])
        f2 = f1 if k.cov2 is None else factor(
            k.mask1 if k.mask2 is None else k.mask2, n)
        f12 = f1[:, None] * f2[None, :]
        return out.replace(nngp=None if out.nngp is None else out.nngp * f12,
                           ntk=None if out.ntk is None else out.ntk * f12,
                           cov1=out.cov1 * f1 * f1,
                           cov2=None if out.cov2 is None else out.cov2 * f2 * f2)

    return make_layer(name, init, apply, kernel_map, diag_ok=lambda out_ok: False,
                      spatial=True, mask_map=drop_mask)


def Flatten() -> Layer:
    r"""Flatten each example: ``(N, *S, C) -> (N, |S| C)``.

    A following Dense layer averages over all features, so the kernel is the mean over
    positions of the same-position covariance, :math:`K' = \frac{1}{|S|}\sum_p K_{pp}`: only
    those pairs are needed before it (the cheap readout). ``(N, d)`` inputs pass unchanged.

    Returns:
        A `Layer` (no parameters) mapping ``(N, *S, C)`` to ``(N, |S| C)``.
    """
    name = "Flatten()"

    def init(key, input_shape):
        return (input_shape[0], int(np.prod(input_shape[1:]))), ()

    def apply(params, x, **kwargs):
        return x.reshape(x.shape[0], -1)

    def kernel_map(k: Kernel) -> Kernel:
        if k.spatial_ndim == 0:
            return k
        r, full = k.spatial_ndim, k.full_spatial
        p = int(np.prod(k.spatial_shape))
        width = None if k.width is None else k.width * p
        return map_kernel(k, lambda a, lead: spatial.mean_spatial(a, lead, r, full, True),
                           spatial_ndim=0, diagonal_spatial=False, width=width)

    return make_layer(name, init, apply, kernel_map, diag_ok=lambda out_ok: True,
                      spatial=True, mask_map=drop_mask)


