"""Convolutional layers with their infinite-width kernels (CNTK), and the Myrtle CNN."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.kernels import masks, spatial
from ntkgp._src.kernels.kernel import Kernel
from ntkgp._src.nn import conv_op
from ntkgp._src.nn.blocking import stored_sums
from ntkgp._src.nn.core import Layer, make_layer
from ntkgp._src.nn.layers import format_number
from ntkgp._src.nn.spatial_args import (
    check_fits,
    check_padding,
    check_rank,
    int_tuple,
    kernel_spatial,
    window_arg,
)


# ---------------------------------------------------------------------------------------------
def Conv(out_chan: int, filter_shape: Sequence[int], strides: Optional[Sequence[int]] = None,
         padding: str = "VALID", W_std: float = 1.0, b_std: Optional[float] = 0.0,
         parameterization: str = "ntk") -> Layer:
    r"""Convolution on channels-last inputs: ``(N, L, C)`` signals, ``(N, H, W, C)`` images,
    ``(N, D, H, W, C)`` volumes (any number of spatial axes).

    NTK parameterization: :math:`h_p = \frac{\sigma_w}{\sqrt{C |F|}} \sum_{d \in F}
    W_d\, x_{sp+d} + \sigma_b b`; standard: :math:`h_p = \sum_d W_d x_{sp+d} + b` with
    :math:`W \sim N(0, \sigma_w^2/(C|F|))`. Infinite-width limit (per pair of positions
    :math:`p, q`, :math:`\mathcal{A}` the mean over filter offsets of the shifted covariance,
    see `ntkgp.kernels`):

    .. math::
        K'_{pq} = \sigma_w^2 \mathcal{A}[K]_{pq} + \sigma_b^2, \qquad
        \Theta'_{pq} = K'_{pq} + \sigma_w^2 \mathcal{A}[\Theta]_{pq} \ \ (\text{ntk}),

    and :math:`\Theta' = C|F|\,\mathcal{A}[K] + [\text{bias}] + \sigma_w^2\mathcal{A}[\Theta]`
    (standard).

    Args:
        out_chan: output channels.
        filter_shape: ``(f,)``, ``(fh, fw)``, ``(fd, fh, fw)``, ...; its length sets the
            number of spatial axes.
        strides: one per spatial axis (default 1).
        padding: ``'SAME'`` (zeros), ``'VALID'`` (none) or ``'CIRCULAR'`` (wrap around; output
            shape as ``'SAME'``).
        W_std: weight standard deviation :math:`\sigma_w`.
        b_std: bias standard deviation, or ``None`` for no bias.
        parameterization: ``'ntk'`` or ``'standard'``.

    Returns:
        A `Layer`; parameters ``{'W': (*filter_shape, C, out_chan), 'b': (out_chan,)}``.

    Raises:
        ValueError: inputs of the wrong rank, or a filter larger than the input with
            ``'VALID'``.

    References:
        Novak et al. 2019, https://arxiv.org/abs/1810.05148; Arora et al. 2019,
        https://arxiv.org/abs/1904.11955.
    """
    out_chan, r, filt, strides, padding = conv_args(out_chan, filter_shape, strides, padding,
                                                    "Conv")
    return conv_layer("Conv", out_chan, filt, strides, padding, W_std, b_std, parameterization,
                      SharedConv(r, filt, strides, padding))


def conv_args(out_chan, filter_shape, strides, padding, who):
    """Checked ``(out_chan, r, filter_shape, strides, padding)`` of a convolution."""
    out_chan = checks.check_positive_int(out_chan, "out_chan")
    r, filt = window_arg(filter_shape, "filter_shape", f"{who} supports 1-D to 8-D filters")
    return out_chan, r, filt, int_tuple(strides, r, "strides"), check_padding(padding)


@dataclasses.dataclass(frozen=True)
class SharedConv:
    """How a convolution with weights shared over positions maps shapes, inputs, kernels and
    masks (the other kinds, transposed and unshared, follow the same protocol)."""

    r: int
    filt: tuple
    strides: tuple
    padding: str

    def out_spatial(self, s, name):
        return check_fits(s, self.filt, self.strides, self.padding, name, "filter")

    def weight_shape(self, c_in, out_s, out_chan):
        return self.filt + (c_in, out_chan)

    def bias_shape(self, out_s, out_chan):
        return (out_chan,)

    def channels(self, w):
        return w.shape[-2]

    def wrapped(self, x):
        """``(x, padding)`` for lax: circular padding done here by wrapping around."""
        if self.padding != "CIRCULAR":
            return x, self.padding
        widths = [(0, 0)] + [spatial.out_size_and_pads(n, f, s, "SAME")[1]
                             for n, f, s in zip(x.shape[1:-1], self.filt, self.strides)]
        return jnp.pad(x, widths + [(0, 0)], mode="wrap"), "VALID"

    def apply(self, x, w):
        x, pad = self.wrapped(x)
        return conv_op.conv(x, w, self.strides, pad)

    def cov(self, a, lead, full):
        return spatial.conv(a, lead, self.r, full, self.filt, self.strides, self.padding)

    def shift(self, a, v, lead, full):
        return a + v

    def unpadded(self, s) -> bool:
        """Whether the shifted sums over input positions ``s`` pad no axis (with more than
        one offset to sum); see `conv_layer`'s kernel map."""
        return spatial.sums_unpadded(s, self.filt, self.strides, self.padding)

    def mask(self, m):
        return masks.window_mask(m, self.filt, self.strides, self.padding)


def conv_layer(kind: str, out_chan, filt, strides, padding, W_std, b_std, parameterization,
               op) -> Layer:
    """A convolution layer of any kind from its ``op`` (see `SharedConv`)."""
    checks.check_nonneg(W_std, "W_std")
    checks.check_nonneg(b_std, "b_std", allow_none=True)
    checks.check_choice(parameterization, "parameterization", ("ntk", "standard"))
    r = len(filt)
    has_bias = b_std is not None
    standard = parameterization == "standard"
    f_size = int(np.prod(filt))
    name = (f"{kind}({out_chan}, {filt}, strides={strides}, {padding}, "
            f"W_std={format_number(W_std)}, "
            f"b_std={'None' if b_std is None else format_number(b_std)}"
            + (", standard)" if standard else ")"))

    def out_shape(input_shape):
        s = check_rank(input_shape, r, name)
        return (input_shape[0],) + op.out_spatial(s, name) + (out_chan,)

    def init(key, input_shape):
        c_in = checks.check_feature_count(input_shape, kind)
        shape = out_shape(input_shape)
        kw, kb = jax.random.split(key)
        scale = W_std / np.sqrt(c_in * f_size) if standard else 1.0
        params = {"W": scale * jax.random.normal(
            kw, op.weight_shape(c_in, shape[1:-1], out_chan))}
        if has_bias:
            params["b"] = (b_std if standard else 1.0) * jax.random.normal(
                kb, op.bias_shape(shape[1:-1], out_chan))
        return shape, params

    def apply(params, x, **kwargs):
        x = jnp.asarray(x)
        shape = out_shape(x.shape)
        w = params["W"]
        c_in = x.shape[-1]
        expected = op.weight_shape(c_in, shape[1:-1], out_chan)
        if tuple(w.shape) != expected:
            raise ValueError(f"{name} was initialized for {op.channels(w)} input channels but "
                             f"got inputs of shape {tuple(x.shape)} ({c_in} channels, last "
                             f"axis; weights {tuple(w.shape)}, these inputs need {expected}); "
                             "re-run `init` with the input shape you apply it to.")
        h = op.apply(x, w)
        if not standard:
            h = (W_std / np.sqrt(c_in * f_size)) * h
        if has_bias:
            b = params["b"]
            h = h + (1.0 if standard else b_std) * b.reshape((1,) * (h.ndim - b.ndim) + b.shape)
        return h

    def kernel_map(k: Kernel) -> Kernel:
        s = kernel_spatial(k, r, name)
        op.out_spatial(s, name)  # the filter fits the input
        # A padded axis stores its sums anyway, so with all pairs of positions storing again
        # only costs a pass over a large array (stored over fused: VALID, AvgPool, VALID,
        # GlobalAvgPool, N=60, 10 x 10 x 3: 0.36-0.43; strided SAME + Flatten 0.88-0.94;
        # three SAME + GlobalAvgPool, 8 x 8: 1.09-1.22, so left fused there).
        return stored_sums(affine_map, k, not k.full_spatial or op.unpadded(s))

    def affine_map(k: Kernel) -> Kernel:
        full = k.full_spatial
        w2 = W_std ** 2
        b2 = b_std ** 2 if has_bias else 0.0

        def a(x, lead):
            return None if x is None else op.cov(x, lead, full)

        def affine(x, lead):
            return None if x is None else op.shift(w2 * x, b2, lead, full)

        nngp_in = a(k.nngp, 2)
        ntk = None
        if k.ntk is not None:
            if standard:
                if k.width is None:
                    raise ValueError(f"{name} (standard parameterization) needs the channel "
                                     "count of its input, which the preceding layers do not "
                                     "fix.")
                ntk = op.shift(k.width * f_size * nngp_in, 1.0 if has_bias else 0.0, 2, full)
                ntk = ntk + w2 * a(k.ntk, 2)
            else:
                ntk = affine(nngp_in, 2) + w2 * a(k.ntk, 2)
        return k.replace(nngp=affine(nngp_in, 2), ntk=ntk, cov1=affine(a(k.cov1, 1), 1),
                         cov2=affine(a(k.cov2, 1), 1), is_gaussian=True, width=out_chan)

    return make_layer(name, init, apply, kernel_map, structured=False, spatial=True,
                      mask_map=op.mask, remask=True)


# ---------------------------------------------------------------------------------------------
MYRTLE_STAGES = {5: (2, 1, 1), 7: (2, 2, 2), 10: (3, 3, 3)}


def myrtle(depth: int = 5, width: int = 128, n_out: int = 1, W_std: float = np.sqrt(2.0),
           b_std: Optional[float] = 0.0, activation: Optional[Layer] = None) -> Layer:
    r"""A Myrtle-style CNN (Shankar et al. 2020): three stages of 3x3 ``SAME`` convolutions
    with ReLU, each followed by 2x2 average pooling that halves the image side, then global
    average pooling and a Dense readout.

    ``depth`` names the paper's variants: 5, 7 or 10 give (2, 1, 1), (2, 2, 2) and (3, 3, 3)
    convolutions per stage. Pooling uses ``'SAME'`` padding, so odd sides (e.g. 7) round up
    instead of failing. ``W_std = sqrt(2)`` keeps the ReLU pre-activation variance constant
    with depth.

    Args:
        depth: 5, 7 or 10.
        width: channels of the finite network (the analytic kernel does not depend on it).
        n_out: outputs of the readout.
        W_std: weight standard deviation of every layer.
        b_std: bias standard deviation (``None``: no bias).
        activation: the nonlinearity (default `Relu`).

    Returns:
        A `Layer` for ``(N, H, W, C)`` images.

    References:
        Shankar et al. 2020, "Neural Kernels Without Tangents", https://arxiv.org/abs/2003.02237.
    """
    if depth not in MYRTLE_STAGES:
        raise ValueError(f"`depth` must be one of {sorted(MYRTLE_STAGES)}; got {depth!r}.")
    from ntkgp._src.nn.combinators import serial
    from ntkgp._src.nn.layers import Dense, Relu
    from ntkgp._src.nn.pooling import AvgPool, GlobalAvgPool

    act = activation if activation is not None else Relu()
    layers = []
    for n_conv in MYRTLE_STAGES[depth]:
        for _ in range(n_conv):
            layers += [Conv(width, (3, 3), padding="SAME", W_std=W_std, b_std=b_std), act]
        layers.append(AvgPool((2, 2), strides=(2, 2), padding="SAME"))
    layers += [GlobalAvgPool(), Dense(n_out, W_std=W_std, b_std=b_std)]
    return serial(*layers)
