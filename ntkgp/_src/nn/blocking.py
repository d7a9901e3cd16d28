"""Blocks of pairs: the kernel of a network computed over cache-sized blocks of input pairs,
and stored boundaries between the segments of a deep recursion."""

from __future__ import annotations

import contextlib
import threading
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src.kernels import activations as act
from ntkgp._src.kernels import stored
from ntkgp._src.kernels.kernel import Kernel, swap_inputs
from ntkgp._src.kernels.stored import materialized

CHUNK_ELEMENTS = 1 << 18  # entries per row chunk: a few arrays of this size stay in cache
MIN_ROWS = 4
# a block of MIN_ROWS rows against all of x2 may be this large; larger ones leave the cache
# (measured, f32, blocks of 4 rows against 8 x 8 blocks: CNTK with GlobalAvgPool on 50 digits
# 150-180 ms against 75-100 ms at 819 K entries; a 3-D CNN on 50 4x4x4 volumes 175-180 against
# 115-125 ms; a 2-block transformer, L=16, N=800, 2.3-2.7 s against 1.6-2.0 s; rows are kept
# where they fit, e.g. the transformer at N=400, 409 K entries)
MAX_CHUNK_ELEMENTS = 1 << 19
# kernel entries of blocks' self-covariances worth a recording pass (`_tape_pays`)
TAPE_MIN_SAVED = 1 << 25
_whole = threading.local()


@contextlib.contextmanager
def whole_up_to(entries: int):
    """Within this context (on this thread), kernels of at most ``entries`` entries are traced
    in one piece rather than in blocks (`row_chunked`).

    For programs that carry tangents of the kernel (a hyperparameter fit's ``jacfwd``), the
    blocks' scan and conditionals, transformed, cost more to trace and compile than they save
    while the arrays are small (ReLU depth 2, N=1216, two tangents, float32: trace and
    compile 1.9 s whole against 3.6 s blocked, an evaluation 0.153 s against 0.167 s; at
    N=1536, depth 5, blocks evaluate in 0.27 s against 0.39 s whole)."""
    before = getattr(_whole, "entries", 0)
    _whole.entries = int(entries)
    try:
        yield
    finally:
        _whole.entries = before


_next = threading.local()


@contextlib.contextmanager
def same_positions_next(flag: bool):
    """Within this context (on this thread), the layers after the one whose kernel map runs
    need only same-position pairs (`serial`'s layers before a Flatten); see `stored_sums`."""
    before = getattr(_next, "same", False)
    _next.same = bool(flag)
    try:
        yield
    finally:
        _next.same = before


def stored_sums(fn: Callable, k, shifted_unpadded: bool):
    """``fn(k)`` for a layer that sums shifted slices of the kernel (a convolution's filter,
    a pooling window), stored (`materialized`) when ``shifted_unpadded``.

    XLA:CPU stores a padded array but fuses unpadded shifted sums, and the variances' sums
    broadcast to every pair, into each of the next nonlinearity's consumers (f32, kernel(x, x)
    over blocks of pairs, stored over fused: two 3 x 3 VALID convolutions + ReLU + Flatten,
    N=100, 12 x 12: 0.22-0.26; 2 x 2 AvgPool with stride 2, then ReLU or a SAME convolution,
    8 x 8, N=50-100: 0.65-0.83; 2 x 2 AvgPool, stride 1, then ReLU: 0.71-0.78). Not stored
    when the kernel has every pair of positions and only same-position pairs are used next:
    fused, XLA computes the sums of those pairs alone (SumPool, Erf, Flatten, N=100: stored
    took 1.25x as long).
    """
    if shifted_unpadded and not (k.full_spatial and getattr(_next, "same", False)):
        return materialized(fn, k)
    return fn(k)


def per_pair(x, diagonal: bool) -> int:
    """Kernel entries per pair of inputs: 1 for ``(N, d)``; positions (or their pairs) for
    ``(N, *S, C)``."""
    p = int(np.prod(x.shape[1:-1], dtype=int)) if x.ndim > 2 else 1
    return p if diagonal else p * p


def _rows(x):
    """The number of examples of ``x``: an array, or a pytree of arrays that share their first
    axis (inputs with their graphs)."""
    return jax.tree.leaves(x)[0].shape[0]


def _slice(x, start, size: int):
    return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, size), x)


def row_chunked(run: Callable, x1, x2, compute_ntk: bool, entries: int = 1) -> Kernel:
    """``run(x1, x2, compute_ntk)`` computed over cache-sized blocks of pairs.

    The kernel recursion is elementwise per pair of inputs, so blocks of pairs are independent.
    Blocks of about ``CHUNK_ELEMENTS`` pairs keep every layer's intermediates in cache and bound
    the temporary memory to a few blocks instead of several N1 x N2 arrays per layer (measured,
    10-hidden-layer ReLU net, N=4000, f32: 0.41 s blocked vs 0.47 s whole with ``x2`` given;
    0.32 s vs 0.72 s for ``x2=None``, where the blocks also halve the work).

    ``x1``/``x2`` may be pytrees of arrays with a shared first axis, sliced together.
    ``entries`` is the number of kernel entries per pair (spatial positions). ``x2`` given:
    for inputs without spatial axes, square blocks of both inputs (each block's input Gram a
    square matrix product: FC depth 2, N=8000, f32: 0.88 s against 1.2-1.3 s in blocks of 32
    rows); for spatial inputs, blocks of rows of ``x1`` against all of ``x2`` or, when fewer
    than ``MIN_ROWS`` rows would fit in ``MAX_CHUNK_ELEMENTS`` (large ``N2``), square blocks
    of both (measured, CNTK of 3 conv layers + GlobalAvgPool on 200 digits: 1.1 s with 8 x 8 blocks,
    2.4 s with blocks of one row; a 2-block transformer at N=400, L=16: 0.36 s with 4 rows,
    0.50 s with 2, 0.46 s with 32 x 32 blocks). ``x2 is None``: square blocks
    on and above the diagonal only (about half the work), mirrored; diagonal blocks are
    computed as kernels of a block with itself, so the self-kernel on the diagonal is exact.
    """
    n1 = _rows(x1)
    n2 = _rows(x1 if x2 is None else x2)
    if n1 * n2 * entries <= getattr(_whole, "entries", 0):
        return _symmetrized(run(x1, None, compute_ntk)) if x2 is None else \
            run(x1, x2, compute_ntk)
    pairs = max(1, CHUNK_ELEMENTS // entries)
    if x2 is None:
        block = max(1, int(pairs ** 0.5))
        if block * 2 > n1:
            return _symmetrized(run(x1, None, compute_ntk))
        pays = _tape_pays(n1 * n1 // 2, block, block, entries)
        return _taped_or_not(_symmetric_blocks, pays and pairs, run, x1, compute_ntk, block)
    # at least MIN_ROWS rows per block (each block also recomputes the per-example terms of all
    # of x2 through every layer, a fixed cost one or two rows do not repay) while such a block
    # stays within MAX_CHUNK_ELEMENTS; beyond that, and for inputs without spatial axes (whose
    # per-example terms are a few numbers, and whose blocks' input Grams are faster as square
    # matrix products than as thin ones), square blocks of both inputs
    rows = max(pairs // n2, min(MIN_ROWS, MAX_CHUNK_ELEMENTS // (n2 * entries)))
    if entries == 1 or (rows < MIN_ROWS and pairs // n2 < MIN_ROWS):
        b1 = min(n1, max(1, int(pairs ** 0.5)))
        b2 = min(n2, max(1, pairs // b1))
        if b1 * 2 > n1 and b2 * 2 > n2:
            return run(x1, x2, compute_ntk)
        pays = _tape_pays(n1 * n2, b1, b2, entries)
        return _taped_or_not(_grid_blocks, pays and pairs, run, x1, x2, compute_ntk, b1, b2)
    if rows * 2 > n1:
        return run(x1, x2, compute_ntk)
    pays = _tape_pays(n1 * n2, rows, n2, entries)
    return _taped_or_not(_grid_blocks, pays and pairs, run, x1, x2, compute_ntk, rows, n2)


def _tape_pays(pairs: int, b1: int, b2: int, entries: int) -> bool:
    """Whether recording the per-example variances once for all blocks (`_taped_or_not`)
    saves more than it costs: the work of the blocks' self-covariances it saves, about
    ``pairs * entries * x / (2 + x)`` kernel entries with ``x = (b1 + b2) / (b1 b2)``,
    against one more compiled copy of the network (the recording pass).

    Measured (f32, 3 SAME conv + ReLU + GlobalAvgPool, ``x2`` given, fresh processes, taped
    against not): blocks of one pair of 32 x 32 images (N=8) 0.60-0.62 against 1.33-2.05 s;
    2 x 2 blocks of 16 x 16 (N=24) 0.23 against 0.35 s; 3 x 3 of 12 x 12 (N=24) 0.11-0.12
    against 0.14-0.15 s; 5 x 5 of 10 x 10 (N=32) 0.15 against 0.17 s; 8 x 8 of 8 x 8 (N=200)
    0.99-1.02 against 1.15-1.16 s. The fit ``x / (2 + x)`` gives 0.5, 0.33, 0.25, 0.17 and
    0.11 of these times. The recording pass (over both inputs at once) added 0.15-0.45 s of
    compile time (8 x 8, N=200: 1.30 against 0.84-0.92 s; 32 x 32, N=8: 1.27 against
    1.06-1.13 s), about what ``TAPE_MIN_SAVED`` entries cost here (10-20 ns each). With
    ``x2=None``, 16 images of 28 x 28 x 1: 0.73-0.75 against 1.50-1.54 s, the first call
    (compile included) 2.0 against 2.6 s.
    """
    if entries <= 1:  # no positions: a block's self-covariances are a few numbers per row
        return False
    x = (b1 + b2) / (b1 * b2)
    return pairs * entries * x / (2 + x) >= TAPE_MIN_SAVED


def _taped_or_not(blocks: Callable, rows: int, *args) -> Kernel:
    """``blocks(*args, taped=...)``: with the per-example variances recorded once for all
    blocks (`ntkgp._src.kernels.stored`, in a pass over ``rows`` rows at a time) where
    ``rows`` is not 0 (where that pays, `_tape_pays`), else (or when a
    block reads other variances than the recording, `stored.TapeMismatch`) computed in each
    block, where a block's self-covariances can cost more than its pairs (one pair of
    32 x 32 images: 51 ms in all, 33-35 ms of it the two self-covariances)."""
    if rows:
        try:
            return blocks(*args, taped=rows)
        except stored.TapeMismatch:
            pass
    return blocks(*args, taped=0)


def _recorded(run, x, rows: int):
    """The variances the layers read for every row of ``x`` (in the order they read them)
    and its outputs' self-covariance, computed over blocks of ``rows`` rows; ``None`` when
    a recorded value is not one per row."""
    n = _rows(x)
    b = min(n, max(1, rows))

    def one(s):
        xs = _slice(x, s, b)
        with stored.recording() as values:
            k = run(xs, _slice(xs, 0, 1), False)  # its kernel with one row is read by nothing
        return tuple(values) + (k.cov1,)

    starts = np.minimum(np.arange(-(-n // b)) * b, n - b)
    out = jax.lax.map(one, jnp.asarray(starts))  # (blocks, b, ...); the last starts at n - b
    if any(v.ndim < 2 or v.shape[1] != b for v in out):
        return None
    cut = (len(starts) - 1) * b
    return tuple(jnp.concatenate([v[:-1].reshape((cut,) + v.shape[2:]), v[-1, cut - n + b:]])
                 for v in out)


def _recorded_both(run, x1, x2, rows: int):
    """`_recorded` of ``x1`` and of ``x2`` from one pass over their rows (one compiled copy
    of the network)."""
    n1 = _rows(x1)
    both = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), x1, x2)
    tape = _recorded(run, both, rows)
    if tape is None:
        return None, None
    return tuple(t[:n1] for t in tape), tuple(t[n1:] for t in tape)


def _replayed(run, tape1, tape2, xs1, xs2, si, sj, compute_ntk) -> Kernel:
    """``run`` on one block, its variances the recorded ones of its rows."""
    if tape1 is None:
        return run(xs1, xs2, compute_ntk)
    b1, b2 = _rows(xs1), _rows(xs2)
    with stored.replaying([jax.lax.dynamic_slice_in_dim(t, si, b1) for t in tape1[:-1]],
                          [jax.lax.dynamic_slice_in_dim(t, sj, b2) for t in tape2[:-1]]
                          ) as state:
        k = run(xs1, xs2, compute_ntk)
    stored.check_consumed(state)
    return k


def _grid_blocks(run, x1, x2, compute_ntk, b1, b2, taped=0) -> Kernel:
    """All blocks (i, j) of ``b1`` rows of x1 against ``b2`` rows of x2 (``b2 = N2``: blocks of
    rows), written in place into the (N1, N2) outputs; the last block along each axis starts
    at ``n - b`` rather than being padded (overlaps recompute equal pairs), so the outputs
    need no copy to drop padding (measured, 3 x [Dense + Relu] net at N=4000, x2 given, f32:
    0.24 s with padded row blocks stacked by ``lax.map``, 0.20 s written in place).
    ``taped``: the variances recorded once, ``taped`` rows at a time (`_taped_or_not`)."""
    n1, n2 = _rows(x1), _rows(x2)
    tape1 = tape2 = None
    if taped:
        tape1, tape2 = _recorded_both(run, x1, x2, taped)
    s1 = np.minimum(np.arange(-(-n1 // b1)) * b1, n1 - b1)
    s2 = np.minimum(np.arange(-(-n2 // b2)) * b2, n2 - b2)
    ii, jj = (a.ravel() for a in np.meshgrid(s1, s2, indexing="ij"))

    def block_kernel(si, sj):
        return _replayed(run, tape1, tape2, _slice(x1, si, b1), _slice(x2, sj, b2), si, sj,
                         compute_ntk)

    # shapes and static fields from one trace; the variances come from the blocks too, so the
    # network is traced and compiled once (runs of their own for the variances compiled it
    # twice more: trace / XLA compile, f32, FC depth 2 at N=4000 0.25 / 0.43 -> 0.08 / 0.25 s,
    # depth 10 0.50 / 0.65 -> 0.32 / 0.37 s; 3-layer CNTK with GlobalAvgPool at N=200
    # 0.54 / 1.22 -> 0.33 / 0.72 s)
    meta = jax.eval_shape(block_kernel, 0, 0)

    def step(carry, ij):
        si, sj = ij
        k = block_kernel(si, sj)
        out = []
        for i, (acc, v) in enumerate(zip(carry, (k.nngp, k.ntk, k.cov1, k.cov2))):
            if acc is not None and not (tape1 is not None and i >= 2):
                start = (si, sj) if i < 2 else (si,) if i == 2 else (sj,)
                acc = jax.lax.dynamic_update_slice(acc, v, start + (0,) * (v.ndim - len(start)))
            out.append(acc)
        return tuple(out), None

    lead = ((n1, n2), (n1, n2), (n1,), (n2,))
    carry = tuple(None if s is None else jnp.zeros(lead[i] + s.shape[len(lead[i]):], s.dtype)
                  for i, s in enumerate((meta.nngp, meta.ntk, meta.cov1, meta.cov2)))
    if tape1 is not None:
        carry = carry[:2] + (tape1[-1], tape2[-1])
    (nngp, ntk, cov1, cov2), _ = jax.lax.scan(step, carry, (jnp.asarray(ii), jnp.asarray(jj)))
    return meta.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2)


def _symmetrized(k: Kernel) -> Kernel:
    """Exactly symmetric kernels of x with itself, whatever the rounding of each pair."""
    return k.replace(nngp=0.5 * (k.nngp + swap_inputs(k.nngp, k)),
                     ntk=None if k.ntk is None else 0.5 * (k.ntk + swap_inputs(k.ntk, k)))


def _symmetric_blocks(run, x, compute_ntk, block, taped=0) -> Kernel:
    """Blocks (i, j), j >= i, of size ``block``; the last block starts at ``n - block`` rather
    than being padded, so results are written straight into (n, n) arrays. Overlapping blocks
    recompute the same pairs; the scan runs in row-major order, so the last diagonal block
    (exact self-kernel, symmetrized) is written last. ``taped``: the variances recorded once,
    ``taped`` rows at a time (`_taped_or_not`)."""
    n = _rows(x)
    tape = _recorded(run, x, taped) if taped else None
    nb = -(-n // block)
    ii, jj = np.triu_indices(nb)
    starts = np.minimum(np.arange(nb) * block, n - block)

    def pair(si, sj, same):
        # one trace for both kinds of block: on a diagonal block (the block with itself) the
        # layers treat the pairs of an input with itself as such (`inputs_same_if`), and the
        # block is symmetrized; a trace of each kind compiled the network twice (trace / XLA
        # compile, f32, medians of 7: FC depth 2 at N=4000 0.16 / 0.43 -> 0.14 / 0.37 s;
        # 3-layer CNTK with GlobalAvgPool at N=200 0.44 / 1.14 -> 0.31 / 0.63 s)
        with act.inputs_same_if(same):
            k = _replayed(run, tape, tape, _slice(x, si, block), _slice(x, sj, block), si, sj,
                          compute_ntk)
        nngp, ntk = jax.lax.cond(same, lambda a: jax.tree.map(_symmetric_part, a),
                                 lambda a: a, (k.nngp, k.ntk))
        return nngp, ntk, k.cov1

    def _symmetric_part(a):
        return 0.5 * (a + swap_inputs(a, meta))

    # shapes and static fields from one trace
    meta = jax.eval_shape(lambda: _replayed(run, tape, tape, _slice(x, 0, block),
                                            _slice(x, 0, block), 0, 0, compute_ntk))
    shapes = (meta.nngp, meta.ntk, meta.cov1)

    def step(carry, ij):
        si, sj, same = ij
        nngp, ntk, cov = carry
        v_nngp, v_ntk, v_cov = pair(si, sj, same)
        out = []
        for acc, v in ((nngp, v_nngp), (ntk, v_ntk)):
            if acc is not None:
                zeros = (0,) * (v.ndim - 2)
                acc = jax.lax.dynamic_update_slice(acc, v, (si, sj) + zeros)
                acc = jax.lax.dynamic_update_slice(acc, swap_inputs(v, meta), (sj, si) + zeros)
            out.append(acc)
        if tape is None:  # each row's variances from its diagonal block (the block with itself)
            at = (si,) + (0,) * (v_cov.ndim - 1)
            old = jax.lax.dynamic_slice(cov, at, v_cov.shape)
            cov = jax.lax.dynamic_update_slice(cov, jnp.where(same, v_cov, old), at)
        return (*out, cov), None

    carry = tuple(None if s is None else jnp.zeros((n, n) + s.shape[2:], s.dtype)
                  for s in shapes[:2]) + (jnp.zeros((n,) + shapes[2].shape[1:],
                                                    shapes[2].dtype),)
    if tape is not None:
        carry = carry[:2] + (tape[-1],)
    xs = (jnp.asarray(starts[ii]), jnp.asarray(starts[jj]), jnp.asarray(ii == jj))
    (nngp, ntk, cov), _ = jax.lax.scan(step, carry, xs)
    return meta.replace(nngp=nngp, ntk=ntk, cov1=cov, cov2=None, x1_is_x2=True)
