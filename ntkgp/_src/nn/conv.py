"""Convolutional layers with their infinite-width kernels (CNTK), and the Myrtle CNN."""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.kernels import masks, spatial
from ntkgp._src.kernels.kernel import Kernel
from ntkgp._src.nn.core import Layer, make_layer
from ntkgp._src.nn.layers import format_number

_SPATIAL = "DHWXYZUV"  # lax's dimension letters for up to 8 spatial axes (the last r)


def _dims(r: int) -> tuple:
    """``lax.conv_general_dilated`` dimension numbers of channels-last inputs with ``r``
    spatial axes (``("NHWC", "HWIO", "NHWC")`` for images)."""
    sp = {1: "W", 2: "HW"}.get(r, _SPATIAL[:r])
    return ("N" + sp + "C", sp + "IO", "N" + sp + "C")


def _image(r: int) -> str:
    """What inputs with ``r`` spatial axes are called, with their shape."""
    if r == 1:
        return "(N, L, C) signals"
    if r == 2:
        return "(N, H, W, C) images"
    if r == 3:
        return "(N, D, H, W, C) volumes"
    return f"inputs with {r} spatial axes (N, *S, C)"


def _shape_text(r: int) -> str:
    return {1: "(N, L, C)", 2: "(N, H, W, C)", 3: "(N, D, H, W, C)"}.get(r, "(N, *S, C)")


def int_tuple(v, r: int, name: str) -> tuple:
    if v is None:
        return (1,) * r
    if isinstance(v, (int, np.integer)):
        v = (int(v),) * r
    try:
        v = tuple(int(a) for a in v)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a tuple of {r} positive integers; got {v!r}.") from None
    if len(v) != r or any(a < 1 for a in v):
        raise ValueError(f"`{name}` must be a tuple of {r} positive integers; got {v!r}.")
    return v


def window_arg(shape, name: str, rank_msg: str):
    """``(r, shape)`` for a filter or pooling window given as a tuple, one size per spatial
    axis (1-D to 8-D)."""
    try:
        r = len(shape)
    except TypeError:
        raise TypeError(f"`{name}` must be a tuple such as (3,), (3, 3) or (3, 3, 3); got "
                        f"{shape!r}.") from None
    if not 1 <= r <= len(_SPATIAL):
        raise ValueError(f"{rank_msg}; got {name}={shape!r}.")
    return r, int_tuple(shape, r, name)


def check_padding(padding: str) -> str:
    if not isinstance(padding, str) or padding.upper() not in spatial.PADDINGS:
        raise ValueError(f"`padding` must be one of {spatial.PADDINGS}; got {padding!r}.")
    return padding.upper()


def check_rank(shape, r: int, who: str):
    """Inputs ``(N, *S, C)`` with ``r`` spatial axes; returns S."""
    if len(shape) != r + 2:
        raise ValueError(f"{who} takes {_image(r)} ({r + 2} axes, channels last); got inputs "
                         f"of shape {tuple(shape)}."
                         + (" Add a channel axis, e.g. `x[..., None]`." if len(shape) == r + 1
                            else ""))
    return tuple(shape[1:-1])


def check_fits(s, window, strides, padding, who, what):
    out = []
    for size, f, st in zip(s, window, strides):
        if padding == "VALID" and f > size:
            raise ValueError(f"{who}: the {what} {tuple(window)} is larger than the input's "
                             f"spatial shape {tuple(s)} with padding='VALID'; use a smaller "
                             f"{what}, padding='SAME', or larger inputs.")
        out.append(spatial.out_size_and_pads(size, f, st, padding)[0])
    return tuple(out)


def kernel_spatial(k: Kernel, r: int, who: str):
    if k.spatial_ndim != r:
        got = ("(N, d) features" if k.spatial_ndim == 0 else
               f"inputs with {k.spatial_ndim} spatial "
               f"{'axis' if k.spatial_ndim == 1 else 'axes'}")
        raise ValueError(f"{who} takes {_image(r)}; its input here is {got}. Pass inputs of "
                         f"shape {_shape_text(r)} and keep the spatial axes until this layer "
                         "(no Flatten before it).")
    return k.spatial_shape


def map_kernel(k: Kernel, fn, **changes) -> Kernel:
    """Apply a spatial op ``fn(a, lead)`` to nngp/ntk (lead 2) and the variances (lead 1)."""
    def f(a, lead):
        return None if a is None else fn(a, lead)

    return k.replace(nngp=f(k.nngp, 2), ntk=f(k.ntk, 2), cov1=f(k.cov1, 1),
                     cov2=f(k.cov2, 1), **changes)


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
    out_chan = checks.check_positive_int(out_chan, "out_chan")
    r, filt = window_arg(filter_shape, "filter_shape", "Conv supports 1-D to 8-D filters")
    strides = int_tuple(strides, r, "strides")
    padding = check_padding(padding)
    checks.check_nonneg(W_std, "W_std")
    checks.check_nonneg(b_std, "b_std", allow_none=True)
    checks.check_choice(parameterization, "parameterization", ("ntk", "standard"))
    has_bias = b_std is not None
    standard = parameterization == "standard"
    f_size = int(np.prod(filt))
    name = (f"Conv({out_chan}, {filt}, strides={strides}, {padding}, W_std={format_number(W_std)}, "
            f"b_std={'None' if b_std is None else format_number(b_std)}"
            + (", standard)" if standard else ")"))

    def out_shape(input_shape):
        s = check_rank(input_shape, r, name)
        return (input_shape[0],) + check_fits(s, filt, strides, padding, name, "filter") + (
            out_chan,)

    def init(key, input_shape):
        c_in = checks.check_feature_count(input_shape, "Conv")
        shape = out_shape(input_shape)
        kw, kb = jax.random.split(key)
        scale = W_std / np.sqrt(c_in * f_size) if standard else 1.0
        params = {"W": scale * jax.random.normal(kw, filt + (c_in, out_chan))}
        if has_bias:
            params["b"] = (b_std if standard else 1.0) * jax.random.normal(kb, (out_chan,))
        return shape, params

    def apply(params, x, **kwargs):
        x = jnp.asarray(x)
        out_shape(x.shape)
        w = params["W"]
        c_in = x.shape[-1]
        if w.shape[-2] != c_in:
            raise ValueError(f"{name} was initialized for {w.shape[-2]} input channels but got "
                             f"inputs of shape {tuple(x.shape)} ({c_in} channels, last axis); "
                             "re-run `init` with the input shape you apply it to.")
        pad = padding
        if padding == "CIRCULAR":
            widths = [(0, 0)] + [spatial.out_size_and_pads(n, f, s, "SAME")[1]
                                 for n, f, s in zip(x.shape[1:-1], filt, strides)] + [(0, 0)]
            x = jnp.pad(x, widths, mode="wrap")
            pad = "VALID"
        h = jax.lax.conv_general_dilated(x, w.astype(x.dtype), strides, pad,
                                         dimension_numbers=_dims(r),
                                         precision=jax.lax.Precision.HIGHEST)
        bias_shape = (1,) * (h.ndim - 1) + (out_chan,)
        if not standard:
            h = (W_std / np.sqrt(c_in * f_size)) * h
        if has_bias:
            h = h + (1.0 if standard else b_std) * params["b"].reshape(bias_shape)
        return h

    def kernel_map(k: Kernel) -> Kernel:
        s = kernel_spatial(k, r, name)
        check_fits(s, filt, strides, padding, name, "filter")
        full = k.full_spatial
        w2 = W_std ** 2
        b2 = b_std ** 2 if has_bias else 0.0

        def a(x, lead):
            return spatial.conv(x, lead, r, full, filt, strides, padding)

        nngp_in = a(k.nngp, 2)
        nngp = w2 * nngp_in + b2
        ntk = None
        if k.ntk is not None:
            if standard:
                if k.width is None:
                    raise ValueError(f"{name} (standard parameterization) needs the channel "
                                     "count of its input, which the preceding layers do not "
                                     "fix.")
                ntk = k.width * f_size * nngp_in + (1.0 if has_bias else 0.0) + w2 * a(k.ntk, 2)
            else:
                ntk = nngp + w2 * a(k.ntk, 2)
        cov1 = w2 * a(k.cov1, 1) + b2
        cov2 = None if k.cov2 is None else w2 * a(k.cov2, 1) + b2
        return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, is_gaussian=True,
                         width=out_chan)

    def mask_map(m):
        return masks.window_mask(m, filt, strides, padding)

    return make_layer(name, init, apply, kernel_map, structured=False, spatial=True,
                      mask_map=mask_map, remask=True)


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
