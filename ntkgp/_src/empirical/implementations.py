"""The three implementations of the empirical NTK, and the cost model that picks one.

Each takes ``apply(params, (x, per_example_kwargs))``, inputs ``x1``, ``x2`` (or ``None``: the
same as ``x1``), a `Layout` and whether the examples are independent (``f`` of a batch is ``f``
of each example stacked, neural-tangents' ``vmap_axes=0``), and returns the kernel as
``(N1, N2, Kk, Kk, Kd)``, averaged over the traced axes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src.kernels.layout import Layout, unsplit
from ntkgp._src.kernels.structured import ntk_structured
from ntkgp._src.util import device_free_memory_bytes

HIGHEST = jax.lax.Precision.HIGHEST


def count(x):
    return jax.tree.leaves(x)[0].shape[0]


def head(x, n=1):
    return jax.tree.map(lambda a: a[:n], x)


def bind(apply, shared):
    """``apply`` on ``(x, per-example kwargs)`` pairs, with the shared kwargs."""
    def f(p, xx):
        x, kw = xx
        return apply(p, x, **kw, **shared)
    return f


def out_shape(apply, params, x):
    """The per-example output shape of ``apply(params, x)``; its first axis must be x's."""
    out = jax.eval_shape(lambda p, xx: apply(p, xx), params, x)
    n = count(x)
    if not hasattr(out, "shape") or len(out.shape) < 1 or out.shape[0] != n:
        raise ValueError("`f(params, x)` must return one array whose first axis indexes the "
                         f"examples of x ({n}); got {out}.")
    return out.shape[1:]


def _one(xi):
    return jax.tree.map(lambda a: a[None], xi)


def _jacobians(apply, params, x, layout, independent):
    """Jacobians of every example's outputs: leaves of shape ``(N, Kk, Kd, Kt, P_leaf)``."""
    if independent:
        jac = jax.vmap(lambda xi: jax.jacrev(lambda p: apply(p, _one(xi))[0])(params))(x)
    else:  # the whole batch at once: an example's outputs may depend on the others
        jac = jax.jacrev(lambda p: apply(p, x))(params)
    n = count(x)
    out = []
    for leaf in jax.tree.leaves(jac):
        a = leaf.reshape((n,) + layout.out_shape + (-1,))
        a = layout.split(jnp.moveaxis(a, -1, 1), lead=2)  # (N, P, Kk, Kd, Kt)
        out.append(jnp.moveaxis(a, 1, -1))
    return out


def _contract(j1s, j2s, kt, same_examples=False):
    """Sum over leaves of ``J1[a,i,d,t,p] J2[b,j,d,t,p]``; plain 2-D products where they do.
    With ``same_examples``, only ``a = b``: ``(N, Kk, Kk, Kd)``."""
    if same_examples:
        return sum(jnp.einsum("aidtp,ajdtp->aijd", j1, j2, precision=HIGHEST)
                   for j1, j2 in zip(j1s, j2s)) / kt
    total = None
    for j1, j2 in zip(j1s, j2s):
        n1, kk, kd = j1.shape[:3]
        n2 = j2.shape[0]
        if kk == 1 and kd == 1:  # all outputs traced: (N1, Kt P) @ (Kt P, N2)
            t = jnp.matmul(j1.reshape(n1, -1), j2.reshape(n2, -1).T, precision=HIGHEST)
            t = t[:, :, None, None, None]
        elif kd == 1 and j1.shape[3] == 1:  # nothing traced: (N1 Kk, P) @ (P, N2 Kk)
            t = jnp.matmul(j1.reshape(n1 * kk, -1), j2.reshape(n2 * kk, -1).T,
                           precision=HIGHEST)
            t = t.reshape(n1, kk, n2, kk).transpose(0, 2, 1, 3)[..., None]
        else:
            t = jnp.einsum("aidtp,bjdtp->abijd", j1, j2, precision=HIGHEST)
        total = t if total is None else total + t
    return total / kt


def ntk_jacobian(apply, params, x1, x2, layout, independent, same_examples=False):
    """``(N1, N2, Kk, Kk, Kd)``, or with ``same_examples`` only each example with its
    counterpart, ``(N, Kk, Kk, Kd)`` (for a function that couples examples, whose Jacobians
    are of the whole batch, this avoids contracting all N^2 pairs)."""
    j1 = _jacobians(apply, params, x1, layout, independent)
    j2 = j1 if x2 is None else _jacobians(apply, params, x2, layout, independent)
    return _contract(j1, j2, layout.kt, same_examples)


def ntk_ntvp(apply, params, x1, x2, layout, independent):
    """NTK-vector products: a VJP per output entry of ``x2`` and a JVP on all of ``x1``."""
    full = layout.blocks()
    xb = x1 if x2 is None else x2
    _, f1_lin = jax.linearize(lambda p: apply(p, x1), params)
    ko = full.kk * full.kt
    basis = jnp.eye(ko, dtype=jax.eval_shape(lambda: apply(params, head(x1))).dtype)
    cts = jax.vmap(lambda e: unsplit(e, full))(basis)  # (Ko, *O), kept/traced order

    def kernel_column(vs):
        """``vs``: parameters with a leading Ko axis -> (N1, Kk, Kk) for one x2 example."""
        outs = full.split(jax.vmap(f1_lin)(vs), lead=2)[:, :, :, 0]  # (Ko, N1, Kk, Kt)
        outs = outs.reshape(full.kk, full.kt, count(x1), full.kk, full.kt)
        # theta[a, i, j] = mean over t of d f_(i,t)(x1_a) . d f_(j,t)(x2_b)
        return jnp.einsum("jtait->aij", outs) / full.kt

    if independent:
        def column(xi):
            _, vjp = jax.vjp(lambda p: apply(p, _one(xi))[0], params)
            return kernel_column(jax.vmap(lambda ct: vjp(ct)[0])(cts))
        cols = jax.lax.map(column, xb)
    else:
        out_b, vjp = jax.vjp(lambda p: apply(p, xb), params)

        def column(b):
            one_hot = jax.vmap(lambda ct: jnp.zeros_like(out_b).at[b].set(ct))(cts)
            return kernel_column(jax.vmap(lambda ct: vjp(ct)[0])(one_hot))
        cols = jax.lax.map(column, jnp.arange(count(xb)))  # (N2, N1, Kk', Kk')
    return layout.take_diagonal(jnp.transpose(cols, (1, 0, 2, 3)))


def ntk_structured_blocks(apply, params, x1, x2, layout, independent):
    """The structured NTK of ``ntkgp.nn`` networks (whose examples are always independent)."""
    return layout.take_diagonal(ntk_structured(apply, params, x1, x2, layout.blocks()))


IMPLS = {"jacobian": ntk_jacobian, "ntvp": ntk_ntvp, "structured": ntk_structured_blocks}


def param_count(params):
    return sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree.leaves(params))


def jacobian_fits(params, x1, x2, out_shape_, trace_axes, diagonal_axes):
    """Whether ``'jacobian'`` is the cheaper general implementation: the Jacobians fit in a
    quarter of free memory and at most 4 output blocks are kept per pair."""
    layout = Layout(out_shape_, trace_axes, diagonal_axes)
    n = x1.shape[0] + (0 if x2 is None else x2.shape[0])
    itemsize = np.dtype(x1.dtype).itemsize
    jac_bytes = n * int(np.prod(out_shape_, dtype=int)) * param_count(params) * itemsize
    return jac_bytes < device_free_memory_bytes() / 4 and layout.kk <= 4
