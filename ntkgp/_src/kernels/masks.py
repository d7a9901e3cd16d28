r"""Masks: positions of inputs that are absent (padding of variable-length sequences).

An input entry equal to ``mask_constant`` is absent. Entries are zeroed; a spatial position is
absent when all its channels are (a position with some channels present keeps them, the others
zero). Position masks are boolean arrays of shape ``(N, *S)``, ``True`` where absent. A layer
that "remasks" sets every kernel entry that involves an absent position to zero, so that absent
positions contribute nothing to later layers that mix positions (convolutions, pooling,
attention), exactly as the finite network with those positions' outputs set to zero.
"""

from __future__ import annotations

from typing import Optional

import jax.numpy as jnp
import numpy as np

from ntkgp._src.kernels import spatial
from ntkgp._src.kernels.kernel import Kernel


def mask_inputs(x, mask_constant):
    """``(x with absent entries zeroed, entry mask)``; ``mask_constant`` may be NaN or inf."""
    c = jnp.asarray(mask_constant, x.dtype)
    entry = jnp.where(jnp.isnan(c), jnp.isnan(x), x == c)
    return jnp.where(entry, jnp.zeros((), x.dtype), x), entry


def position_mask(entry_mask) -> Optional[jnp.ndarray]:
    """``(N, *S, C) -> (N, *S)``: a position is absent when all its channels are; ``None`` for
    ``(N, d)`` inputs (which have no positions: absent features are zeros)."""
    if entry_mask is None or entry_mask.ndim <= 2:
        return None
    return jnp.all(entry_mask, axis=-1)


def check_some_present(x, mask_constant, name: str):
    """Refuse (with concrete inputs) an example whose every entry equals ``mask_constant``."""
    xn = np.asarray(x)
    c = float(mask_constant)
    entry = np.isnan(xn) if np.isnan(c) else xn == c
    gone = np.all(entry.reshape(len(xn), -1), axis=1)
    if gone.any():
        idx = np.flatnonzero(gone)
        raise ValueError(
            f"`{name}` example {int(idx[0])} (of {len(idx)} such) has every entry equal to "
            f"mask_constant={mask_constant!r}: a mask may hide positions of an input, not all "
            "of them (its kernel would be undefined). Drop such examples, or pad with a value "
            "that never occurs in real inputs.")


def _pair(m1, m2, r: int, full: bool):
    """``m1 (N1, *S) | m2 (N2, *S)`` laid out like ``nngp``: ``(N1, N2, *S, *S)`` or
    ``(N1, N2, *S)``."""
    n1, n2 = m1.shape[0], m2.shape[0]
    s = m1.shape[1:]
    if full:
        return m1.reshape((n1, 1) + s + (1,) * r) | m2.reshape((1, n2) + (1,) * r + s)
    return m1.reshape((n1, 1) + s) | m2.reshape((1, n2) + s)


def _self(m, r: int, full: bool):
    """``m (N, *S)`` laid out like ``cov1``: ``(N, *S, *S)`` or ``(N, *S)``."""
    if not full:
        return m
    n, s = m.shape[0], m.shape[1:]
    return m.reshape((n,) + s + (1,) * r) | m.reshape((n,) + (1,) * r + s)


def pair_mask(k: Kernel):
    """Where ``k.nngp`` involves an absent position (``None`` without masks)."""
    if k.mask1 is None:
        return None
    m2 = k.mask1 if k.mask2 is None else k.mask2
    return _pair(k.mask1, m2, k.spatial_ndim, k.full_spatial)


def remask(k: Kernel) -> Kernel:
    """Zero every entry of ``k`` that involves an absent position (no-op without masks)."""
    if k.mask1 is None or k.spatial_ndim == 0:
        return k
    r, full = k.spatial_ndim, k.full_spatial
    m12 = pair_mask(k)

    def z(a, m):
        return None if a is None else jnp.where(m, jnp.zeros((), a.dtype), a)

    cov2 = None
    if k.cov2 is not None:
        cov2 = z(k.cov2, _self(k.mask1 if k.mask2 is None else k.mask2, r, full))
    return k.replace(nngp=z(k.nngp, m12), ntk=z(k.ntk, m12),
                     cov1=z(k.cov1, _self(k.mask1, r, full)), cov2=cov2)


def present_count(m):
    """Number of present positions of each example: ``(N, *S) -> (N,)``, at least 1."""
    n = m.shape[0]
    return jnp.maximum(jnp.sum(~m.reshape(n, -1), axis=1), 1)


def window_mask(m, window, strides, padding: str):
    """The mask after a window op (convolution, pooling): an output position is absent when
    the input position at its window's centre is."""
    if m is None:
        return None
    idx = [slice(None)]
    for i, (w, s) in enumerate(zip(window, strides)):
        size = m.shape[1 + i]
        n, (low, _) = spatial.out_size_and_pads(size, w, s, padding)
        start = (w - 1) // 2 - low
        centres = start + s * np.arange(n)
        if padding == "CIRCULAR":
            centres = centres % size
        idx.append(np.clip(centres, 0, size - 1))
    grids = np.ix_(*[np.arange(m.shape[0])] + idx[1:])
    return m[grids]
