"""Values a compiled kernel computes once and keeps: stored boundaries (`materialized`), and
the per-example variances of a blocked kernel (`recording`, `replaying`).

A kernel computed over blocks of pairs of inputs (`ntkgp._src.nn.blocking`) needs, in every
block, each input's variances at each layer (the nonlinearities read them). Computed in the
block, they take each of the block's inputs through every layer again: with one pair of
32 x 32 images per block, two thirds of the block's time. Instead, one pass over the inputs
records the variances in the order the layers read them (`Kernel.variances` calls
`per_example`), and each block replays its rows' slices of them in the same order; the
block's own self-covariances are then read by nothing and XLA drops them.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable

import jax
import jax.numpy as jnp

_tape = threading.local()


class TapeMismatch(Exception):
    """A block read variances other than those the recording pass read (another number,
    shape or order); the caller computes its blocks without the recording."""


@contextlib.contextmanager
def _state(state):
    before = getattr(_tape, "state", None)
    _tape.state = state
    try:
        yield state
    finally:
        _tape.state = before


@contextlib.contextmanager
def recording():
    """Within this context (on this thread), the variances of input 1 that the layers read
    are appended, in order, to the list it yields."""
    with _state(("record", [])) as state:
        yield state[1]


def replaying(tape1, tape2):
    """Within this context (on this thread), the layers' reads of the variances of input 1
    (2) return the entries of ``tape1`` (``tape2``) in order, each a recording's arrays
    sliced to the block's rows. Yields the state; `check_consumed` says whether every entry
    was read."""
    return _state(("replay", (tuple(tape1), tuple(tape2)), [0, 0]))


def check_consumed(state):
    """Raise `TapeMismatch` unless the replay ``state`` read every entry of both tapes."""
    tapes, pos = state[1], state[2]
    if pos != [len(tapes[0]), len(tapes[1])]:
        raise TapeMismatch(f"read {pos} of {[len(t) for t in tapes]} recorded variances")


def per_example(v, which: int):
    """The variances ``v`` of input ``which`` (1 or 2) as a layer reads them: recorded,
    replaced by the replayed entry, or (outside both contexts) ``v`` itself."""
    state = getattr(_tape, "state", None)
    if state is None:
        return v
    if state[0] == "record":
        if which == 1:
            state[1].append(v)
        return v
    tapes, pos = state[1], state[2]
    tape, i = tapes[which - 1], pos[which - 1]
    if i >= len(tape) or tape[i].shape != v.shape or tape[i].dtype != v.dtype:
        raise TapeMismatch(f"read {i} of input {which}: {v.shape} {v.dtype} not recorded")
    pos[which - 1] = i + 1
    return tape[i]


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

    Variances recorded inside ``fn`` (`recording`) leave the boundary as outputs of their own.
    """
    leaves = [x for x in jax.tree.leaves(k) if x.ndim >= 1 and x.size]
    if not leaves:
        return fn(k)
    state = getattr(_tape, "state", None)
    if state is not None and state[0] == "record":
        def recorded(k):
            with recording() as inner:
                out = fn(k)
            return out, tuple(inner)

        out, values = _boundary(recorded, k, leaves)
        state[1].extend(values)
        return out
    return _boundary(fn, k, leaves)


def _boundary(fn: Callable, k, leaves):
    pred = ~jnp.isnan(leaves[0].reshape(-1)[0])
    traced = []

    def branch(k):
        out = fn(k)
        traced.append(jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), out))
        return out

    def nan_branch(k):
        # the shapes of ``fn``'s trace when the other branch was traced first (tracing it
        # again here took a third of the time of tracing a fit's kernel and its tangents);
        # a replay's reads in that trace are not counted
        if traced:
            out = traced[-1]
        else:
            state = getattr(_tape, "state", None)
            saved = None if state is None or state[0] != "replay" else list(state[2])
            out = jax.eval_shape(fn, k)
            if saved is not None:
                state[2][:] = saved
        return jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan if jnp.issubdtype(
            s.dtype, jnp.inexact) else 0, s.dtype), out)  # graphs' integer edges: zeros

    return jax.lax.cond(pred, branch, nan_branch, k)
