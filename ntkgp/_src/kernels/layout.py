"""Per-example output layout of empirical kernels: kept and traced (averaged) output axes."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def _normalize_trace_axes(trace_axes, out_ndim):
    """Output axes (excluding the batch axis 0) as non-negative indices into the per-example
    output shape."""
    try:
        axes = tuple(trace_axes)
    except TypeError:
        raise TypeError(f"`trace_axes` must be a tuple of output axes, e.g. (-1,) or (); got "
                        f"{trace_axes!r}.") from None
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)):
            raise TypeError(f"`trace_axes` entries must be integers; got {a!r}.")
        # Axes count in the full output (N, *O); axis 0 (examples) cannot be traced.
        full = a + out_ndim + 1 if a < 0 else a
        if full <= 0 or full > out_ndim:
            raise ValueError(f"`trace_axes`={trace_axes!r} does not fit outputs with "
                             f"{out_ndim} per-example axes; use output axes 1..{out_ndim} (or "
                             "negative), never the example axis 0.")
        out.append(full - 1)
    return tuple(sorted(set(out)))


class Layout:
    """Splits per-example outputs of shape ``O`` into kept axes (Kk) and traced axes (Kt)."""

    def __init__(self, out_shape, trace_axes):
        self.out_shape = tuple(out_shape)
        self.traced = _normalize_trace_axes(trace_axes, len(out_shape))
        self.kept = tuple(i for i in range(len(out_shape)) if i not in self.traced)
        self.kept_shape = tuple(out_shape[i] for i in self.kept)
        self.kk = int(np.prod(self.kept_shape, dtype=int))
        self.kt = int(np.prod([out_shape[i] for i in self.traced], dtype=int))

    def split(self, y, lead=1):
        """``(*lead, *O) -> (*lead, Kk, Kt)``."""
        lead_shape = y.shape[:lead]
        perm = tuple(range(lead)) + tuple(lead + i for i in self.kept + self.traced)
        return jnp.transpose(y, perm).reshape(lead_shape + (self.kk, self.kt))

    def finish(self, theta):
        """``(N1, N2, Kk, Kk) -> (N1, N2, *kept, *kept)`` (or ``(N1, N2)`` when all traced)."""
        n1, n2 = theta.shape[:2]
        if not self.kept:
            return theta.reshape(n1, n2)
        return theta.reshape((n1, n2) + self.kept_shape + self.kept_shape)


def unsplit(e, layout):
    """A flat (Kk*Kt,) vector in kept/traced order -> per-example output shape O."""
    kept_traced = [layout.out_shape[i] for i in layout.kept + layout.traced]
    a = e.reshape(kept_traced) if kept_traced else e.reshape(())
    inv = np.argsort(layout.kept + layout.traced)
    return jnp.transpose(a, inv) if kept_traced else a
