"""Graph networks: aggregation of node features over the edges of each example's graph."""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.kernels.kernel import Kernel
from ntkgp._src.nn.core import Layer, make_layer

IMPLEMENTATIONS = ("DENSE", "SPARSE")
_HI = jax.lax.Precision.HIGHEST


def Aggregate(aggregate_axis: Optional[Union[int, Sequence[int]]] = None, batch_axis: int = 0,
              channel_axis: int = -1, to_dense: Optional[Callable] = lambda p: p,
              implementation: str = "DENSE") -> Layer:
    r"""Sum of each node's in-neighbours' features (a graph network's message passing).

    Inputs ``x`` of shape ``(N, *S, C)`` are node features of ``N`` graphs, the nodes indexed
    by the spatial axes ``S`` (``(N, V, C)`` for ``V`` nodes); the graph of example ``n`` is
    its ``pattern``. With a dense pattern ``A`` of shape ``(N, *S_a, *S_a)`` over the
    aggregated axes ``S_a`` (``A[n, i, j] = w``: an arc of weight ``w`` from node ``i`` to
    node ``j``), each node receives the weighted sum of its predecessors:

    .. math:: y_{n, j} = \sum_i A_{n, i, j}\, x_{n, i}.

    The layer is linear with no parameters, so at infinite width (Du et al. 2019)

    .. math::
        K'(x, x')_{jl} = \sum_{i, k} A_{ij} A'_{kl}\, K(x, x')_{ik}, \qquad
        \Theta' = A^\top \Theta A'

    per pair of examples (``A``, ``A'`` their patterns); it needs the covariance of every
    pair of nodes (``O(V^2)`` memory and ``O(V^3)`` time per pair of examples).

    Pass the graphs as ``apply(params, x, pattern=A)`` and
    ``kernel(x1, x2, pattern=(A1, A2))`` (``A2`` may be ``None`` when ``x2`` is).

    Args:
        aggregate_axis: the axes of ``x`` (spatial axes, counted with the batch axis first)
            that index nodes; ``None``: all spatial axes.
        batch_axis: must be 0 (ntkgp's layers take batch-first, channels-last inputs).
        channel_axis: must be -1.
        to_dense: with ``'DENSE'``, applied to ``pattern`` before use (e.g. decoding a
            compressed format); default the identity.
        implementation: ``'DENSE'``: ``pattern`` is the weighted adjacency tensor above;
            ``'SPARSE'``: ``pattern`` is an integer array of edges of shape ``(N, E, K, 2)``
            (``(N, E, 2)`` when ``K = 1``) over ``K`` aggregated axes, ``[..., 0]`` the tail
            (sender) and ``[..., 1]`` the head (receiver) of each unit-weight arc; repeated
            edges add up, and an edge whose head has a negative coordinate is dropped
            (padding). ``apply`` then costs ``O(V + E)`` per example.

    Returns:
        A `Layer` (no parameters) mapping ``(N, *S, C)`` to ``(N, *S, C)``.

    Raises:
        ValueError: an unknown ``implementation``, batch or channel axes elsewhere, an
            aggregated axis that is not spatial, or (at call time) a missing pattern or one
            whose shape does not match the inputs.

    References:
        Du et al. 2019, "Graph neural tangent kernel", https://arxiv.org/abs/1905.13192.
    """
    impl = str(implementation).upper()
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"Aggregate: implementation must be 'DENSE' or 'SPARSE'; got "
                         f"{implementation!r}.")
    checks.check_batch_channel("Aggregate", batch_axis, channel_axis)
    if impl == "DENSE" and to_dense is None:
        to_dense = _identity
    axes_arg = aggregate_axis
    name = f"Aggregate(aggregate_axis={aggregate_axis}, implementation='{impl}')"

    def axes_for(r: int) -> tuple:
        """The aggregated spatial axes (0-based among the ``r`` spatial axes)."""
        if r == 0:
            raise ValueError(f"{name} takes node features (N, V, C) (or (N, *S, C)); got "
                             "(N, d) features without node axes.")
        if axes_arg is None:
            return tuple(range(r))
        given = (axes_arg,) if np.ndim(axes_arg) == 0 else tuple(axes_arg)
        out = []
        for a in given:
            a = int(a)
            full = a + r + 2 if a < 0 else a
            if not 1 <= full <= r:
                raise ValueError(f"{name}: axis {a} is not a node axis of inputs (N, *S, C) "
                                 f"with {r} spatial axes; node axes are 1..{r}.")
            out.append(full - 1)
        if len(set(out)) != len(out):
            raise ValueError(f"{name}: repeated axes {given}.")
        return tuple(sorted(out))

    def dense(pattern, shape, which: str):
        """The (n, *S_a, *S_a) adjacency for inputs of spatial shape ``shape``."""
        n, axes = shape[0], axes_for(len(shape) - 1)
        s_a = tuple(shape[1 + a] for a in axes)
        if pattern is None:
            raise ValueError(f"{name} needs each example's graph: pass pattern=A to apply "
                             "and pattern=(A1, A2) to kernel (A2 None for x2=None).")
        if impl == "DENSE":
            a = jnp.asarray(to_dense(pattern))
            want = (n,) + s_a + s_a
            if tuple(a.shape) != want:
                raise ValueError(f"{name}: the {which} pattern must have shape {want} "
                                 f"(examples, then the node axes twice) for inputs with node "
                                 f"axes {s_a}; got {tuple(a.shape)}.")
            return a
        tails, heads = _edges(pattern, n, s_a, name, which)
        v = int(np.prod(s_a))
        # counts of (tail, head) pairs as one product of one-hot matrices per graph: a
        # scatter-add is ~10x slower on CPU (the dropped heads land in column V)
        flat = jnp.einsum("nev,new->nvw", jax.nn.one_hot(tails, v + 1, dtype=jnp.float32),
                          jax.nn.one_hot(heads, v + 1, dtype=jnp.float32))[:, :v, :v]
        return flat.reshape((n,) + s_a + s_a)

    def apply(params, x, pattern=None, **kwargs):
        x = jnp.asarray(x)
        r = x.ndim - 2
        axes = axes_for(r)
        if impl == "SPARSE":
            return _sparse_apply(x, pattern, axes, name)
        a = dense(pattern, x.shape[:-1], "")
        return _contract_one(x, a.astype(x.dtype), axes, r)

    def kernel_map(k: Kernel) -> Kernel:
        r = k.spatial_ndim
        axes = axes_for(r)
        if not k.full_spatial:  # not reachable through the public kernel functions
            raise ValueError(f"{name} needs the covariance of every pair of nodes.")
        n1 = k.cov1.shape[0]
        s = k.spatial_shape
        dt = k.cov1.dtype
        a1 = dense(k.pattern1, (n1,) + s, "first").astype(dt)
        if k.cov2 is None:
            a2 = a1
        else:
            if k.pattern2 is None:
                raise ValueError(f"{name}: with x2 given pass its graph too: "
                                 "pattern=(pattern1, pattern2).")
            a2 = dense(k.pattern2, (k.cov2.shape[0],) + s, "second").astype(dt)

        def pair(m):
            return None if m is None else _contract_both(m, a1, a2, axes, r, False)

        return k.replace(nngp=pair(k.nngp), ntk=pair(k.ntk),
                         cov1=_contract_both(k.cov1, a1, a1, axes, r, True),
                         cov2=None if k.cov2 is None else _contract_both(k.cov2, a2, a2, axes, r,
                                                                          True))

    def init(key, input_shape):
        axes_for(len(input_shape) - 2)
        return tuple(input_shape), ()

    return make_layer(name, init, apply, kernel_map, structured=False,
                      diag_ok=lambda out_ok: False, spatial=True, remask=True)


def _identity(p):
    return p


def _edges(pattern, n, s_a, name, which):
    """Tails and heads of a sparse pattern as flat node indices (heads with a negative
    coordinate map to the dropped index ``V``)."""
    p = jnp.asarray(pattern)
    k = len(s_a)
    if p.ndim == 3 and k == 1:
        p = p[:, :, None, :]
    if not jnp.issubdtype(p.dtype, jnp.integer) or p.ndim != 4 or p.shape[0] != n or \
            p.shape[2:] != (k, 2):
        raise ValueError(f"{name}: the {which + ' ' if which else ''}pattern must be integer "
                         f"edges of shape ({n}, E, {k}, 2){' or (N, E, 2)' * (k == 1)}; got "
                         f"{p.dtype} of shape {tuple(p.shape)}.")
    dims = jnp.asarray(s_a).reshape(1, 1, k)
    strides = jnp.asarray(np.cumprod((1,) + s_a[::-1])[:-1][::-1].copy()).reshape(1, 1, k)
    v = int(np.prod(s_a))
    tails = jnp.sum(jnp.clip(p[..., 0], 0, dims - 1) * strides, axis=-1)
    heads = jnp.sum(jnp.clip(p[..., 1], 0, dims - 1) * strides, axis=-1)
    heads = jnp.where(jnp.any(p[..., 1] < 0, axis=-1), v, heads)
    return tails, heads


def _sparse_apply(x, pattern, axes, name):
    r = x.ndim - 2
    rest = tuple(i for i in range(r) if i not in axes)
    perm = (0,) + tuple(1 + a for a in axes) + tuple(1 + i for i in rest) + (r + 1,)
    xt = jnp.transpose(x, perm)
    s_a = xt.shape[1:1 + len(axes)]
    v = int(np.prod(s_a))
    flat = xt.reshape((x.shape[0], v, -1))
    if pattern is None:
        raise ValueError(f"{name} needs each example's graph: pass pattern=edges to apply.")
    tails, heads = _edges(pattern, x.shape[0], s_a, name, "")
    out = jax.vmap(lambda f, t, h: jax.ops.segment_sum(f[t], h, num_segments=v + 1)[:v])(
        flat, tails, heads)
    return jnp.transpose(out.reshape(xt.shape), np.argsort(perm))


def _letters(r):
    pool = iter("cdefghijklmnopqrstuvwxy")  # a, b, z, A, B are the einsums' other axes
    return [next(pool) for _ in range(r)], [next(pool) for _ in range(r)], pool


def _contract_one(x, a, axes, r):
    """``y[n, ..., j, ...] = sum_i a[n, i, j] x[n, ..., i, ...]`` over the aggregated axes."""
    s, _, pool = _letters(r)
    heads = {ax: next(pool) for ax in axes}
    out = [heads.get(i, s[i]) for i in range(r)]
    spec = (f"a{''.join(s)}z,a{''.join(s[i] for i in axes)}{''.join(heads[i] for i in axes)}"
            f"->a{''.join(out)}z")
    return jnp.einsum(spec, x, a, precision=_HI)


def _contract_both(m, a1, a2, axes, r, same_example: bool):
    """Both position halves of a kernel aggregated: ``m'[i, j, P, Q] = sum a1[i, p, P]
    a2[j, q, Q] m[i, j, p, q]`` for pairs of examples (nngp/ntk), or with ``i = j`` for the
    variances of each example (``same_example``: ``m`` of shape ``(N, *S, *S)``)."""
    s, t, pool = _letters(r)
    h1 = {ax: next(pool) for ax in axes}
    h2 = {ax: next(pool) for ax in axes}
    e1, e2 = ("A", "A") if same_example else ("A", "B")
    lead = "A" if same_example else "AB"
    out1 = "".join(h1.get(i, s[i]) for i in range(r))
    out2 = "".join(h2.get(i, t[i]) for i in range(r))
    spec = (f"{lead}{''.join(s)}{''.join(t)},"
            f"{e1}{''.join(s[i] for i in axes)}{''.join(h1[i] for i in axes)},"
            f"{e2}{''.join(t[i] for i in axes)}{''.join(h2[i] for i in axes)}->{lead}{out1}{out2}")
    return jnp.einsum(spec, m, a1, a2, precision=_HI, optimize="optimal")
