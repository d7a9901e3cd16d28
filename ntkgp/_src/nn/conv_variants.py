"""Transposed convolutions and locally connected (unshared) convolutions, with their kernels."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src.kernels import spatial
from ntkgp._src.nn import conv_op
from ntkgp._src.nn.conv import SharedConv, conv_args, conv_layer
from ntkgp._src.nn.core import Layer
from ntkgp._src.nn.spatial_args import lax_dims


@dataclasses.dataclass(frozen=True)
class TransposedConv(SharedConv):
    """A transposed convolution: a stride-1 convolution of the input with ``s - 1`` zeros
    between its entries (``lax.conv_transpose``); ``CIRCULAR`` folds the ``VALID`` output
    onto the ``SAME`` shape by wrapping around."""

    def out_spatial(self, s, name):
        return tuple(spatial.transpose_out_size(n, f, st, self.padding)
                     for n, f, st in zip(s, self.filt, self.strides))

    def apply(self, x, w):
        pad = "VALID" if self.padding == "CIRCULAR" else self.padding
        pads = [spatial.transpose_pads(f, st, pad) for f, st in zip(self.filt, self.strides)]
        h = conv_op.conv(x, w, (1,) * self.r, pads, lhs_dilation=self.strides)
        if self.padding == "CIRCULAR":
            for i, (n, st) in enumerate(zip(x.shape[1:-1], self.strides)):
                h = spatial.fold(h, 1 + i, n * st)
        return h

    def cov(self, a, lead, full):
        return spatial.conv_transpose(a, lead, self.r, full, self.filt, self.strides,
                                      self.padding)

    def unpadded(self, s) -> bool:
        return False  # its sums run over the input dilated and padded

    def mask(self, m):
        """An output position is absent when every input position that feeds it is (one
        fed by none, only the bias, stays present)."""
        if m is None:
            return None

        def feeds(v):
            return self.cov(v.astype(jnp.float32), 1, False)

        return (feeds(~m) == 0) & (feeds(jnp.ones_like(m)) > 0)


@dataclasses.dataclass(frozen=True)
class LocalConv(SharedConv):
    """A convolution with separate weights (and biases) at each output position: outputs at
    different positions are independent, so the kernel keeps only same-position pairs."""

    def weight_shape(self, c_in, out_s, out_chan):
        return tuple(out_s) + (c_in * int(np.prod(self.filt)), out_chan)

    def bias_shape(self, out_s, out_chan):
        return tuple(out_s) + (out_chan,)

    def channels(self, w):
        return w.shape[-2] // int(np.prod(self.filt))

    def apply(self, x, w):
        x, pad = self.wrapped(x)
        return jax.lax.conv_general_dilated_local(x, w.astype(x.dtype), self.strides, pad,
                                                  self.filt, dimension_numbers=lax_dims(self.r),
                                                  precision=jax.lax.Precision.HIGHEST)

    def cov(self, a, lead, full):
        if not full:
            return spatial.conv(a, lead, self.r, False, self.filt, self.strides, self.padding)
        d = spatial.to_diagonal(a, lead, self.r)
        d = spatial.conv(d, lead, self.r, False, self.filt, self.strides, self.padding)
        return spatial.embed_diagonal(d, lead, self.r)

    def shift(self, a, v, lead, full):
        if not full or v == 0:
            return a + v
        s = a.shape[lead:lead + self.r]
        p = int(np.prod(s, dtype=int))
        return a + jnp.asarray(v * np.eye(p).reshape((1,) * lead + s + s), a.dtype)


def ConvTranspose(out_chan: int, filter_shape: Sequence[int],
                  strides: Optional[Sequence[int]] = None, padding: str = "VALID",
                  W_std: float = 1.0, b_std: Optional[float] = 0.0,
                  parameterization: str = "ntk") -> Layer:
    r"""Transposed convolution (``lax.conv_transpose``) on channels-last inputs
    ``(N, *S, C)``: upsamples by ``strides``.

    The input, with ``s - 1`` zeros inserted between entries along each spatial axis and
    padded, is convolved with stride 1; so with :math:`\tilde K` that dilated covariance

    .. math::
        K'_{pq} = \frac{\sigma_w^2}{|F|} \sum_{d \in F} \tilde K_{p + d,\, q + d}
        + \sigma_b^2, \qquad \Theta'_{pq} = K'_{pq} + \frac{\sigma_w^2}{|F|} \sum_{d}
        \tilde \Theta_{p+d,\, q+d},

    normalized by the full fan-in :math:`C |F|` as in neural-tangents (each output sees
    about :math:`|F| / \prod s` nonzero inputs).

    Args:
        out_chan: output channels.
        filter_shape: one size per spatial axis.
        strides: upsampling factor per spatial axis (default 1).
        padding: ``'VALID'`` (output side ``n s + max(f - s, 0)``), ``'SAME'`` (``n s``) or
            ``'CIRCULAR'`` (the ``VALID`` output wrapped around onto ``n s`` positions).
        W_std: weight standard deviation :math:`\sigma_w`.
        b_std: bias standard deviation, or ``None`` for no bias.
        parameterization: ``'ntk'`` or ``'standard'``.

    Returns:
        A `Layer`; parameters ``{'W': (*filter_shape, C, out_chan), 'b': (out_chan,)}``.
    """
    out_chan, r, filt, strides, padding = conv_args(out_chan, filter_shape, strides, padding,
                                                    "ConvTranspose")
    return conv_layer("ConvTranspose", out_chan, filt, strides, padding, W_std, b_std,
                      parameterization, TransposedConv(r, filt, strides, padding))


def ConvLocal(out_chan: int, filter_shape: Sequence[int],
              strides: Optional[Sequence[int]] = None, padding: str = "VALID",
              W_std: float = 1.0, b_std: Optional[float] = 0.0,
              parameterization: str = "ntk") -> Layer:
    r"""Locally connected layer: a convolution with separate weights and biases at each output
    position (``lax.conv_general_dilated_local``).

    Outputs at different positions are independent, so only same-position pairs are nonzero:

    .. math::
        K'_{pq} = \delta_{pq} \Big(\frac{\sigma_w^2}{|F|} \sum_{d \in F}
        K_{sp + d,\, sp + d} + \sigma_b^2\Big),

    and the NTK likewise. With `Flatten` as readout (same-position pairs only) the kernel
    equals that of `Conv`; pooling tells them apart.

    Args:
        out_chan: output channels.
        filter_shape: one size per spatial axis.
        strides: one per spatial axis (default 1).
        padding: ``'SAME'``, ``'VALID'`` or ``'CIRCULAR'`` (as `Conv`).
        W_std: weight standard deviation :math:`\sigma_w`.
        b_std: bias standard deviation, or ``None`` for no bias.
        parameterization: ``'ntk'`` or ``'standard'``.

    Returns:
        A `Layer`; parameters ``{'W': (*S_out, C |F|, out_chan), 'b': (*S_out, out_chan)}``
        (the weights of each output position in ``lax.conv_general_dilated_local``'s layout).
    """
    out_chan, r, filt, strides, padding = conv_args(out_chan, filter_shape, strides, padding,
                                                    "ConvLocal")
    return conv_layer("ConvLocal", out_chan, filt, strides, padding, W_std, b_std,
                      parameterization, LocalConv(r, filt, strides, padding))

