r"""Output layout of empirical kernels: which output axes are kept as pairs, kept as a
diagonal, or traced (averaged).

An empirical kernel of ``f`` with outputs ``(N, *O)`` is, in full, an array over pairs of
output entries, :math:`\Theta[(a, o), (b, o')]`. Each output axis (the examples' axis 0 among
them) is either

* **kept**: both indices stay, as two adjacent axes of the result;
* **diagonal** (``diagonal_axes``): only :math:`o_i = o'_i`, one axis of the result;
* **traced** (``trace_axes``): only :math:`o_i = o'_i`, averaged over, no axis of the result.

The result lists the axes in output order, e.g. ``(N1, N2, H1, H2, C)`` for outputs
``(N, H, C)``, ``trace_axes=()``, ``diagonal_axes=(-1,)``: the order of neural-tangents.
Internally a kernel is computed as ``(N1, N2, Kk, Kk, Kd)`` (kept, kept, diagonal entries).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

PAIR, DIAGONAL, TRACE = "pair", "diagonal", "trace"


def _axes(axes, name, out_ndim):
    """Output axes as non-negative indices into the full output ``(N, *O)``."""
    try:
        axes = tuple(axes)
    except TypeError:
        raise TypeError(f"`{name}` must be a tuple of output axes, e.g. (-1,) or (); got "
                        f"{axes!r}.") from None
    out = []
    for a in axes:
        if not isinstance(a, (int, np.integer)) or isinstance(a, bool):
            raise TypeError(f"`{name}` entries must be integers; got {a!r}.")
        full = int(a) + out_ndim + 1 if a < 0 else int(a)
        if not 0 <= full <= out_ndim:
            raise ValueError(f"`{name}`={axes!r} does not fit outputs with {out_ndim + 1} axes "
                             f"(examples and {out_ndim} per example); use axes 0..{out_ndim} "
                             "or negative ones.")
        out.append(full)
    return tuple(sorted(set(out)))


class Layout:
    """Splits per-example outputs of shape ``O`` into kept (``Kk`` entries), diagonal (``Kd``)
    and traced (``Kt``) axes; ``batch`` says what happens to the examples' axis."""

    def __init__(self, out_shape, trace_axes=(-1,), diagonal_axes=()):
        self.out_shape = tuple(out_shape)
        nd = len(self.out_shape)
        traced = _axes(trace_axes, "trace_axes", nd)
        diagonal = _axes(diagonal_axes, "diagonal_axes", nd)
        both = set(traced) & set(diagonal)
        if both:
            raise ValueError(f"output axes {sorted(both)} are in both `trace_axes` "
                             f"{tuple(trace_axes)} and `diagonal_axes` {tuple(diagonal_axes)}; "
                             "an axis is either traced or kept as a diagonal.")
        self.batch = TRACE if 0 in traced else DIAGONAL if 0 in diagonal else PAIR
        self._set(tuple(a - 1 for a in traced if a), tuple(a - 1 for a in diagonal if a))

    def _set(self, traced, diagonal):
        self.traced, self.diagonal = traced, diagonal
        self.kept = tuple(i for i in range(len(self.out_shape))
                          if i not in traced and i not in diagonal)
        self.kept_shape = tuple(self.out_shape[i] for i in self.kept)
        self.diag_shape = tuple(self.out_shape[i] for i in self.diagonal)
        self.kk = int(np.prod(self.kept_shape, dtype=int))
        self.kd = int(np.prod(self.diag_shape, dtype=int))
        self.kt = int(np.prod([self.out_shape[i] for i in traced], dtype=int))

    @property
    def order(self):
        """Per-example axes in split order: kept, diagonal, traced."""
        return self.kept + self.diagonal + self.traced

    def blocks(self):
        """The same layout with the diagonal axes kept as full blocks (``Kd = 1``), for
        implementations that compute whole blocks; `take_diagonal` then reduces them."""
        full = Layout.__new__(Layout)
        full.out_shape, full.batch = self.out_shape, self.batch
        full._set(self.traced, ())
        full.kept = self.kept + self.diagonal  # kept first, then diagonal: see take_diagonal
        full.kept_shape = self.kept_shape + self.diag_shape
        return full

    def take_diagonal(self, theta):
        """``(*lead, Kk Kd, Kk Kd)`` from `blocks` -> ``(*lead, Kk, Kk, Kd)``."""
        lead = theta.shape[:-2]
        t = theta.reshape(lead + (self.kk, self.kd, self.kk, self.kd))
        return jnp.diagonal(t, axis1=len(lead) + 1, axis2=len(lead) + 3)

    def split(self, y, lead=1):
        """``(*lead, *O) -> (*lead, Kk, Kd, Kt)``."""
        lead_shape = y.shape[:lead]
        perm = tuple(range(lead)) + tuple(lead + i for i in self.order)
        return jnp.transpose(y, perm).reshape(lead_shape + (self.kk, self.kd, self.kt))

    def finish(self, theta):
        """``(*lead, Kk, Kk, Kd)`` -> the result's axes in output order.

        ``lead`` is ``(N1, N2)`` for kept examples, ``(N,)`` for their diagonal and ``()``
        when they are traced."""
        lead = theta.shape[:-3]
        nl, nk = len(lead), len(self.kept)
        theta = theta.reshape(lead + self.kept_shape + self.kept_shape + self.diag_shape)
        perm = list(range(nl))
        for i in range(len(self.out_shape)):
            if i in self.kept:
                p = self.kept.index(i)
                perm += [nl + p, nl + nk + p]
            elif i in self.diagonal:
                perm.append(nl + 2 * nk + self.diagonal.index(i))
        return jnp.transpose(theta, perm)


def unsplit(e, layout):
    """A flat ``(Kk*Kd*Kt,)`` vector in split order -> per-example output shape ``O``."""
    shape = [layout.out_shape[i] for i in layout.order]
    a = e.reshape(shape) if shape else e.reshape(())
    return jnp.transpose(a, np.argsort(layout.order)) if shape else a
