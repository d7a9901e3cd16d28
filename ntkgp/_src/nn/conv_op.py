r"""The finite convolution of the conv layers, with a weight gradient XLA runs fast in loops.

``lax.conv_general_dilated`` differentiates with respect to its filter by another convolution
whose dimension numbers swap batch and features. Outside loops XLA:CPU turns that into its
fast convolution with a few transposes; inside a ``while`` loop (``lax.scan``, a training
loop) it keeps the swapped layout and falls back to a naive loop nest, ~100x slower (a
1000-image CNN step: 15 s instead of 0.15 s). Here the filter gradient is written as an
ordinary channels-last convolution of explicitly transposed operands:

.. math:: \partial W[k, c, o] = \sum_{n, p} \tilde x[n, p s + k, c]\, \partial y[n, p, o],

i.e. a convolution of :math:`\tilde x^\top` (features :math:`n`, batch :math:`c`) with the
filter :math:`\partial y^\top` dilated by the stride :math:`s` (:math:`\tilde x` is the input
dilated and padded as the forward pass sees it). It is the transpose rule of a small primitive,
the filter's tangent map ``conv(x, dW)`` (with ``vmap`` rules folding a batch into the
examples or the output channels), used by the convolution's custom JVP: forward mode
(linearized networks, empirical NTKs), reverse mode and ``vmap`` all see one convolution.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import jax
import jax.extend
import jax.numpy as jnp
from jax.interpreters import ad, batching, mlir

from ntkgp._src.nn.spatial_args import lax_dims


def _conv(x, w, strides, pads, lhs_dilation):
    return jax.lax.conv_general_dilated(x, w.astype(x.dtype), strides, pads,
                                        lhs_dilation=lhs_dilation,
                                        dimension_numbers=lax_dims(x.ndim - 2),
                                        precision=jax.lax.Precision.HIGHEST)


def _filter_grad(cfg, x, dy):
    """:math:`\\partial W` of ``_conv`` for the output cotangent ``dy``, as a channels-last
    convolution (see the module docstring)."""
    strides, pads, lhs_dilation, filt = cfg
    r = x.ndim - 2
    xt = jnp.transpose(x, (r + 1,) + tuple(range(1, r + 1)) + (0,))       # (C, S..., N)
    dyt = jnp.transpose(dy, tuple(range(1, r + 1)) + (0, r + 1))          # (So..., N, O)
    g = jax.lax.conv_general_dilated(xt, dyt, (1,) * r, pads, lhs_dilation=lhs_dilation,
                                     rhs_dilation=strides, dimension_numbers=lax_dims(r),
                                     precision=jax.lax.Precision.HIGHEST)  # (C, >=K..., O)
    g = g[(slice(None),) + tuple(slice(0, f) for f in filt)]
    return jnp.transpose(g, tuple(range(1, r + 1)) + (0, r + 1))          # (K..., C, O)


def _tangent_impl(x, dw, *, cfg):
    strides, pads, lhs_dilation, _ = cfg
    return _conv(x, dw, strides, pads, lhs_dilation)


# ``conv(x, dw)``, linear in the filter ``dw``: a primitive of its own so that its transpose is
# `_filter_grad` (``jax.custom_jvp`` alone would let JAX transpose lax's convolution).
filter_tangent_p = jax.extend.core.Primitive("ntkgp_conv_filter_tangent")
filter_tangent_p.def_impl(_tangent_impl)
filter_tangent_p.def_abstract_eval(
    lambda x, dw, *, cfg: jax.core.ShapedArray(
        jax.eval_shape(functools.partial(_tangent_impl, cfg=cfg), x, dw).shape, x.dtype))
mlir.register_lowering(filter_tangent_p, mlir.lower_fun(_tangent_impl, multiple_results=False))


def _tangent_jvp(primals, tangents, *, cfg):
    x, dw = primals
    tx, tdw = tangents
    strides, pads, lhs_dilation, _ = cfg
    out = filter_tangent_p.bind(x, dw, cfg=cfg)
    parts = []
    if type(tdw) is not ad.Zero:
        parts.append(filter_tangent_p.bind(x, tdw, cfg=cfg))
    if type(tx) is not ad.Zero:
        parts.append(_conv(tx, dw, strides, pads, lhs_dilation))
    if not parts:
        return out, ad.Zero.from_primal_value(out)
    return out, functools.reduce(jnp.add, parts)


def _tangent_transpose(ct, x, dw, *, cfg):
    if ad.is_undefined_primal(x):
        raise NotImplementedError("conv(x, dw) is transposed in its filter only")
    aval = dw.aval if ad.is_undefined_primal(dw) else jax.core.get_aval(dw)
    if type(ct) is ad.Zero:
        return None, ad.Zero(aval)
    return None, _filter_grad(cfg, x, ct).astype(aval.dtype)


def _tangent_batch(args, dims, *, cfg):
    x, dw = args
    bx, bw = dims
    r = x.ndim - 2 - (bx is not None)
    if bx is None:  # fold the batch into the output channels
        dw = jnp.moveaxis(dw, bw, r + 1)                                   # (K..., C, B, O)
        b, o = dw.shape[r + 1], dw.shape[r + 2]
        out = filter_tangent_p.bind(x, dw.reshape(dw.shape[:r + 1] + (b * o,)), cfg=cfg)
        return out.reshape(out.shape[:-1] + (b, o)), r + 1
    x = jnp.moveaxis(x, bx, 0)
    if bw is None:  # fold the batch into the examples
        b, n = x.shape[:2]
        out = filter_tangent_p.bind(x.reshape((b * n,) + x.shape[2:]), dw, cfg=cfg)
        return out.reshape((b, n) + out.shape[1:]), 0
    # both batched: lax's own (grouped) convolution, transposed by JAX
    strides, pads, lhs_dilation, _ = cfg
    dw = jnp.moveaxis(dw, bw, 0)
    return jax.vmap(lambda a, w: _conv(a, w, strides, pads, lhs_dilation))(x, dw), 0


ad.primitive_jvps[filter_tangent_p] = _tangent_jvp
ad.primitive_transposes[filter_tangent_p] = _tangent_transpose
batching.primitive_batchers[filter_tangent_p] = _tangent_batch


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _conv_fast_grad(x, w, cfg):
    strides, pads, lhs_dilation, _ = cfg
    return _conv(x, w, strides, pads, lhs_dilation)


def _conv_jvp(cfg, primals, tangents):
    x, w = primals
    dx, dw = tangents
    strides, pads, lhs_dilation, _ = cfg
    y = _conv(x, w, strides, pads, lhs_dilation)
    zero = jax.custom_derivatives.SymbolicZero
    parts = []
    if not isinstance(dx, zero):  # e.g. the network's inputs: no convolution of zeros
        parts.append(_conv(dx, w, strides, pads, lhs_dilation))
    if not isinstance(dw, zero):
        parts.append(filter_tangent_p.bind(x, dw.astype(x.dtype), cfg=cfg))
    return y, functools.reduce(jnp.add, parts) if parts else jnp.zeros_like(y)


_conv_fast_grad.defjvp(_conv_jvp, symbolic_zeros=True)


def conv(x, w, strides: Sequence[int], padding,
         lhs_dilation: Optional[Sequence[int]] = None):
    """``lax.conv_general_dilated`` of channels-last ``x`` ``(N, S..., C)`` with ``w``
    ``(K..., C, O)`` (``HIGHEST`` precision), differentiable fast inside loops.

    Args:
        x: inputs ``(N, S..., C)``.
        w: filter ``(K..., C, O)``.
        strides: window strides, one per spatial axis.
        padding: ``'SAME'``/``'VALID'`` or explicit ``(low, high)`` pairs.
        lhs_dilation: input dilation (transposed convolutions), default none.

    Returns:
        ``(N, So..., O)``.
    """
    r = x.ndim - 2
    strides = tuple(int(s) for s in strides)
    lhs_dilation = (1,) * r if lhs_dilation is None else tuple(int(d) for d in lhs_dilation)
    filt = tuple(int(f) for f in w.shape[:r])
    if isinstance(padding, str):
        dilated = tuple((n - 1) * d + 1 for n, d in zip(x.shape[1:-1], lhs_dilation))
        pads = jax.lax.padtype_to_pads(dilated, filt, strides, padding)
    else:
        pads = padding
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    return _conv_fast_grad(x, w, (strides, pads, lhs_dilation, filt))
