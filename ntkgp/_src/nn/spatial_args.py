"""Arguments and shapes of layers on spatial inputs (convolutions, pooling): filter and window
shapes, strides, padding, ranks, and the kernel's spatial layout."""

from __future__ import annotations

import numpy as np

from ntkgp._src.kernels import spatial
from ntkgp._src.kernels.kernel import Kernel

_SPATIAL = "DHWXYZUV"  # lax's dimension letters for up to 8 spatial axes (the last r)


def lax_dims(r: int) -> tuple:
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
