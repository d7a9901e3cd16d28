r"""Kernels of N1 x N2 inputs computed tile by tile.

``batch(kernel_fn, tile_size)`` wraps any kernel function — a network's analytic ``kernel``, an
empirical ``ntk_fn``/``nngp_fn``, or your own ``f(x1, x2, *args) -> array | Kernel`` whose
outputs have leading axes ``(N1, N2)`` — so that it is evaluated on ``tile_size x tile_size``
tiles and assembled on the host. The peak memory of the computation is that of one tile (plus
the result itself), whatever N1 and N2 are; any N works (the last tile is padded with copies of
real rows and trimmed); one compilation serves all tiles. For ``x2=None`` only tiles on and
above the diagonal are computed and the rest mirrored.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.kernels.kernel import Kernel
from ntkgp._src.progress import progress_bar
from ntkgp._src.util import free_memory_bytes, pad_rows

MAX_TILE = 4096


def _block_transpose(a):
    """Kernel(x2, x1) from Kernel(x1, x2): swap the two example axes and the two output-block
    halves (for outputs ``(N1, N2, *O, *O)``)."""
    extra = a.ndim - 2
    if extra % 2:
        raise ValueError(f"cannot mirror a kernel of shape {a.shape}: the axes after (N1, N2) "
                         "must come in pairs; call with an explicit x2 instead of None.")
    h = extra // 2
    return np.transpose(a, (1, 0) + tuple(range(2 + h, 2 + 2 * h)) + tuple(range(2, 2 + h)))


def auto_tile_size(kernel_fn: Callable, x1, x2=None, *args, memory_fraction: float = 0.25,
                   **kwargs) -> int:
    """A tile size whose computation fits in ``memory_fraction`` of free memory.

    Compiles ``kernel_fn`` on a 64 x 64 probe tile, reads XLA's temporary-memory estimate and
    scales it by the number of pairs; capped at ``MAX_TILE`` and at the data size.
    """
    probe = 64
    xr = x1 if x2 is None else x2
    a = pad_rows(x1[:probe], probe)
    b = pad_rows(xr[:probe], probe)
    fn = jax.jit(lambda u, v: kernel_fn(u, v, *args, **kwargs))
    try:
        mem = fn.lower(a, b).compile().memory_analysis()
        per_pair = (mem.temp_size_in_bytes + mem.output_size_in_bytes) / probe ** 2
    except Exception:  # memory analysis is not available on every backend
        per_pair = 64 * np.dtype(x1.dtype).itemsize
    budget = free_memory_bytes() * memory_fraction
    tile = int(math.sqrt(max(budget / max(per_pair, 1.0), 1.0)))
    n = max(x1.shape[0], xr.shape[0])
    return int(max(1, min(tile, MAX_TILE, n)))


def batch(kernel_fn: Callable, tile_size: Optional[int] = None,
          progress: Optional[bool] = None) -> Callable:
    r"""Wrap ``kernel_fn`` so that it runs on tiles of at most ``tile_size`` x ``tile_size``.

    Args:
        kernel_fn: ``kernel_fn(x1, x2, *args, **kwargs)`` returning an array whose first two
            axes are ``(N1, N2)`` or a `Kernel` (e.g. ``net.kernel`` with ``get=...`` passed as a
            keyword, or ``empirical_ntk_fn(f)`` with ``params`` as the third argument).
        tile_size: examples per tile side; ``None`` picks one from free memory
            (`auto_tile_size`).
        progress: show a progress bar; default: when there are more than 16 tiles.

    Returns:
        ``batched(x1, x2=None, *args, **kwargs)`` with the same result as ``kernel_fn``, as NumPy
        arrays (a `Kernel` of NumPy arrays for Kernel outputs).

    Example:
        >>> import numpy as np
        >>> from ntkgp import nn, batching
        >>> net = nn.serial(nn.Dense(1), nn.Relu(), nn.Dense(1))
        >>> x = np.random.default_rng(0).standard_normal((10, 3))
        >>> k = batching.batch(net.kernel, tile_size=4)(x, None, get='ntk')
        >>> bool(np.allclose(k, net.kernel(x, None, get='ntk'), rtol=1e-5))
        True
    """
    if tile_size is not None:
        tile_size = checks.check_positive_int(tile_size, "tile_size")

    @functools.cache
    def compiled(kwargs_key):
        kwargs = dict(kwargs_key)
        return (jax.jit(lambda u, v, *a: kernel_fn(u, v, *a, **kwargs)),
                jax.jit(lambda u, *a: kernel_fn(u, None, *a, **kwargs)))

    tile_sizes = {}  # auto tile size per input signature: the probe compiles once, not per call

    def batched(x1, x2=None, *args, **kwargs):
        x1, x2 = checks.check_inputs(x1, x2, ndim=None)
        n1 = x1.shape[0]
        xr = x1 if x2 is None else x2
        n2 = xr.shape[0]
        t = tile_size
        if t is None:
            sig = (x1.shape, None if x2 is None else x2.shape, str(x1.dtype),
                   tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
            if sig not in tile_sizes:
                tile_sizes[sig] = auto_tile_size(kernel_fn, x1, x2, *args, **kwargs)
            t = tile_sizes[sig]
        t1, t2 = min(t, n1), min(t, n2)
        if x2 is None:
            t1 = t2 = min(t, n1)
        rows = range(0, n1, t1)
        cols = range(0, n2, t2)
        key = tuple(sorted(kwargs.items()))
        try:
            pair_fn, self_fn = compiled(key)
        except TypeError:  # unhashable keyword values: compile per call
            pair_fn, self_fn = compiled.__wrapped__(key)
        tiles = [(i, j) for i in rows for j in cols if x2 is not None or j >= i]
        show = len(tiles) > 16 if progress is None else progress
        out = None
        for i, j in progress_bar(tiles, total=len(tiles), desc="kernel tiles", enabled=show):
            a = pad_rows(x1[i:i + t1], t1)
            if x2 is None and i == j:
                res = self_fn(a, *args)
            else:
                b = pad_rows(xr[j:j + t2], t2)
                res = pair_fn(a, b, *args)
            out = _store(out, res, i, j, t1, t2, n1, n2, x2 is None)
        return _finish(out)

    return batched


def _store(out, res, i, j, t1, t2, n1, n2, symmetric):
    """Write tile (i, j) (and its mirror for symmetric kernels) into host arrays."""
    if isinstance(res, Kernel):
        leaves = {"nngp": res.nngp, "ntk": res.ntk}
        meta = res
    else:
        leaves, meta = {"_array": res}, None
    if out is None:
        out = {"meta": meta, "cov1": np.zeros(n1, _dtype(res)), "cov2": np.zeros(n2, _dtype(res))}
        for name, v in leaves.items():
            if v is not None:
                out[name] = np.zeros((n1, n2) + tuple(v.shape[2:]), v.dtype)
    r = slice(i, min(i + t1, n1))
    c = slice(j, min(j + t2, n2))
    nr, nc = r.stop - r.start, c.stop - c.start
    for name, v in leaves.items():
        if v is None:
            continue
        v = np.asarray(v)[:nr, :nc]
        out[name][r, c] = v
        if symmetric and i != j:
            out[name][c, r] = _block_transpose(v)
    if meta is not None:
        out["cov1"][r] = np.asarray(meta.cov1)[:nr]
        if symmetric:
            if i == j:
                out["cov2"][c] = np.asarray(meta.cov1)[:nc]
        else:
            out["cov2"][c] = np.asarray(meta.cov2_or_cov1)[:nc]
    return out


def _dtype(res):
    leaf = res.nngp if isinstance(res, Kernel) and res.nngp is not None else (
        res.ntk if isinstance(res, Kernel) else res)
    return np.asarray(leaf).dtype if leaf is not None else np.float32


def _finish(out):
    meta = out["meta"]
    if meta is None:
        return out["_array"]
    symmetric = meta.x1_is_x2 if meta is not None else False
    return meta.replace(nngp=out.get("nngp"), ntk=out.get("ntk"), cov1=out["cov1"],
                        cov2=None if symmetric else out["cov2"])
