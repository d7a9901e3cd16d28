"""A stored boundary in a compiled kernel: values XLA computes once and keeps in memory,
instead of recomputing them inside every consumer's fused loop."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def materialized(fn: Callable, k):
    """``fn(k)`` computed as a separate XLA computation whose outputs are stored.

    XLA's CPU fusion duplicates elementwise producers into every consumer; over a deep
    recursion each layer's fusion then recomputes all earlier layers (measured, kernel of a
    10-hidden-layer ReLU net at N=4000, f32: 2.42 s with no boundary, 0.74 s with one after
    each nonlinearity, 0.48 s with one after each Dense+nonlinearity segment).
    ``optimization_barrier`` is dropped by XLA here; a ``lax.cond`` on a runtime predicate is a
    real boundary and stays differentiable. The predicate is "the first entry of the first
    array is not NaN"; the other branch returns NaNs. Inputs are checked for NaN at the public
    entry, so the NaN branch is only taken under a user's jit with NaN inputs, where the result
    would be NaN anyway (then entirely NaN rather than partly).
    """
    leaves = [x for x in jax.tree.leaves(k) if x.ndim >= 1 and x.size]
    if not leaves:
        return fn(k)
    pred = ~jnp.isnan(leaves[0].reshape(-1)[0])
    traced = []

    def branch(k):
        out = fn(k)
        traced.append(jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), out))
        return out

    def nan_branch(k):
        # the shapes of ``fn``'s trace when the other branch was traced first (tracing it
        # again here took a third of the time of tracing a fit's kernel and its tangents)
        out = traced[-1] if traced else jax.eval_shape(fn, k)
        return jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan if jnp.issubdtype(
            s.dtype, jnp.inexact) else 0, s.dtype), out)  # graphs' integer edges: zeros

    return jax.lax.cond(pred, branch, nan_branch, k)
