"""Layer normalization over the features, or over features and positions."""

from __future__ import annotations

from typing import Sequence, Union

import jax
import jax.numpy as jnp

from ntkgp._src import checks
from ntkgp._src.kernels import activations as act
from ntkgp._src.kernels.kernel import Kernel
from ntkgp._src.kernels.special import safe_rsqrt
from ntkgp._src.nn.core import Layer, make_layer


def _axes(axis) -> tuple:
    """``axis`` as a sorted tuple of negative indices; the channel axis (-1) must be in it."""
    raw = (axis,) if isinstance(axis, int) else tuple(axis)
    if not raw or any(not isinstance(a, int) or isinstance(a, bool) for a in raw):
        raise TypeError(f"LayerNorm `axis` must be an integer or a tuple of integers, e.g. -1 "
                        f"or (1, 2); got {axis!r}.")
    return raw


def _resolve(raw: tuple, ndim: int) -> tuple:
    """Positive axes of an input with ``ndim`` axes, checked."""
    out = []
    for a in raw:
        b = a + ndim if a < 0 else a
        if not 0 <= b < ndim:
            raise ValueError(f"LayerNorm axis={raw!r} does not fit inputs with {ndim} axes.")
        out.append(b)
    out = sorted(set(out))
    if 0 in out:
        raise ValueError(f"LayerNorm normalizes each example: axis={raw!r} includes the batch "
                         "axis 0. Use the feature axis -1, optionally with spatial axes.")
    if ndim - 1 not in out:
        raise ValueError(f"LayerNorm axis={raw!r} must include the channel axis (-1, here "
                         f"{ndim - 1}): without it the infinite-width limit has no kernel. "
                         "Normalize over (..., -1).")
    return tuple(out)


def LayerNorm(axis: Union[int, Sequence[int]] = -1, eps: float = 1e-12) -> Layer:
    r"""Normalize each example: :math:`y = (x - \bar x)/\sqrt{\mathrm{var}(x) + \epsilon}`,
    mean and variance over ``axis``: the features (``-1``) and optionally spatial axes (e.g.
    ``(1, 2)`` for the positions and channels of ``(N, L, C)`` sequences).

    At infinite width after an affine layer (zero-mean Gaussian features) the mean vanishes
    and the kernel is rescaled by the variances :math:`v` of the two positions paired,
    :math:`K'_{pq} = K_{pq}/\sqrt{v_1(p) v_2(q)}` (the same for :math:`\Theta`), where
    :math:`v(p) = K_{pp}` for ``axis=-1`` and, with spatial axes in ``axis``, the mean of
    :math:`K_{pp}` over those axes (over present positions only, with masks), plus
    :math:`\epsilon`.

    Args:
        axis: an axis or a tuple of axes of the layer's input; must include the channel axis
            ``-1``, never the batch axis.
        eps: added to the variance in the finite layer.

    Returns:
        A `Layer` (no parameters); output shape = input shape.

    Raises:
        ValueError: (when the kernel is taken) if the input is not the output of an affine
            layer, where the feature mean does not vanish and this limit would be wrong; an
            ``axis`` without the channel axis or with the batch axis.
    """
    checks.check_scalar(eps, "eps", low=0.0, strict=True)
    raw = _axes(axis)
    shown = raw[0] if len(raw) == 1 else raw

    def apply(params, x, mask=None, **kwargs):
        ax = _resolve(raw, x.ndim)
        if mask is None:
            mean = jnp.mean(x, axis=ax, keepdims=True)
            var = jnp.var(x, axis=ax, keepdims=True)
        else:
            present = (~mask)[..., None].astype(x.dtype)
            count = jnp.maximum(jnp.sum(jnp.broadcast_to(present, x.shape), axis=ax,
                                        keepdims=True), 1)
            mean = jnp.sum(x * present, axis=ax, keepdims=True) / count
            var = jnp.sum(((x - mean) * present) ** 2, axis=ax, keepdims=True) / count
        return (x - mean) * jax.lax.rsqrt(var + eps)

    def kernel_map(k: Kernel) -> Kernel:
        if not k.is_gaussian:
            raise ValueError("LayerNorm's infinite-width kernel needs zero-mean Gaussian inputs, "
                             "i.e. it must follow a Dense layer; here it follows a nonlinearity "
                             "or the raw inputs. Put a Dense layer before it.")
        r = k.spatial_ndim
        spatial_axes = tuple(a - 1 for a in _resolve(raw, r + 2) if 0 < a <= r)
        if not spatial_axes:
            return _per_position(k)
        # eps as in the finite layer: exact where positions are perfectly correlated
        v1 = _mean_over(k.variances(1), spatial_axes, k.mask1) + eps
        v2 = v1 if k.cov2 is None else _mean_over(
            k.variances(2), spatial_axes, k.mask1 if k.mask2 is None else k.mask2) + eps
        s1, s2 = act.pair_broadcast(k, v1, v2)
        scale = safe_rsqrt(s1) * safe_rsqrt(s2)

        def normalized(cov, v):
            if cov is None:
                return None
            if not k.full_spatial:
                return cov * safe_rsqrt(v) ** 2
            return act.self_pair(lambda c, a, b, eye: c * safe_rsqrt(a) * safe_rsqrt(b),
                                 cov, v, r)

        return k.replace(nngp=k.nngp * scale, ntk=None if k.ntk is None else k.ntk * scale,
                         cov1=normalized(k.cov1, v1), cov2=normalized(k.cov2, v2))

    return make_layer(f"LayerNorm(axis={shown})", lambda key, s: (tuple(s), ()), apply,
                      kernel_map, remask=True)


def _mean_over(v, axes: tuple, mask):
    """Mean of the per-position variances ``v (N, *S)`` over spatial ``axes`` (0-based in S),
    over present positions, broadcast back to ``(N, *S)``."""
    ax = tuple(1 + a for a in axes)
    if mask is None:
        mean = jnp.mean(v, axis=ax, keepdims=True)
    else:
        present = (~mask).astype(v.dtype)
        count = jnp.maximum(jnp.sum(present, axis=ax, keepdims=True), 1)
        mean = jnp.sum(v * present, axis=ax, keepdims=True) / count
    return jnp.broadcast_to(mean, v.shape)


def _per_position(k: Kernel) -> Kernel:
    """Normalization over the channels only: each position by its own variance (exactly 1 on
    the diagonal of a kernel of inputs with themselves)."""
    v1, v2 = k.variances(1), k.variances(2)
    s1, s2 = act.pair_broadcast(k, v1, v2)
    scale = safe_rsqrt(s1) * safe_rsqrt(s2)
    nngp = k.nngp * scale
    eye = act.pair_eye(k)
    if eye is not None:
        nngp = jnp.where(eye, jnp.where(s1 > 0, 1.0, 0.0), nngp)

    def normalized(cov, v):
        if cov is None:
            return None
        if not k.full_spatial:
            return jnp.where(cov > 0, 1.0, 0.0).astype(cov.dtype)

        def fn(c, a, b, eye):
            return jnp.where(eye, jnp.where(a > 0, 1.0, 0.0), c * safe_rsqrt(a)
                             * safe_rsqrt(b)).astype(c.dtype)
        return act.self_pair(fn, cov, v, k.spatial_ndim)

    return k.replace(nngp=nngp, ntk=None if k.ntk is None else k.ntk * scale,
                     cov1=normalized(k.cov1, v1), cov2=normalized(k.cov2, v2))

