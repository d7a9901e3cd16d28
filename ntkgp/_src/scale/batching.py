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
import json
import math
import os
import zipfile
import zlib
from typing import Callable, Optional, Sequence

import jax
import numpy as np

from ntkgp._src import checks
from ntkgp._src.empirical.functions import BATCHED_KWARGS, split_kwargs
from ntkgp._src.kernels.kernel import Kernel
from ntkgp._src.progress import progress_counter
from ntkgp._src.scale import tiles as tiling
from ntkgp._src.scale.store import StoreError, digest, fingerprint, open_store_dir
from ntkgp._src.scale.tiles import MAX_TILE, pad_rows
from ntkgp._src.util import device_free_memory_bytes, write_atomic


def _block_transpose(a, meta=None):
    """Kernel(x2, x1) from Kernel(x1, x2): swap the two example axes and the two output-block
    halves (for outputs ``(N1, N2, *O, *O)``; same-position spatial kernels ``(N1, N2, *S)``
    only swap the example axes)."""
    if meta is not None and meta.get("diagonal_spatial") and meta.get("spatial_ndim"):
        return np.swapaxes(a, 0, 1)
    extra = a.ndim - 2
    if extra % 2:
        raise ValueError(f"cannot mirror a kernel of shape {a.shape}: the axes after (N1, N2) "
                         "must come in pairs; call with an explicit x2 instead of None.")
    h = extra // 2
    return np.transpose(a, (1, 0) + tuple(range(2 + h, 2 + 2 * h)) + tuple(range(2, 2 + h)))


def auto_tile_size(kernel_fn: Callable, x1, x2=None, *args, memory_fraction: float = 0.25,
                   **kwargs) -> int:
    """A tile size whose computation fits in ``memory_fraction`` of the device's free memory.

    Compiles ``kernel_fn`` on a 64 x 64 probe tile, reads XLA's temporary-memory estimate and
    scales it by the number of pairs; capped at ``MAX_TILE`` and at the data size.

    Args:
        kernel_fn: ``kernel_fn(x1, x2, *args, **kwargs)``.
        x1: inputs ``(N1, ...)``.
        x2: inputs ``(N2, ...)`` or ``None``.
        *args: passed to ``kernel_fn``.
        memory_fraction: of the free memory of the default device (the host's for the
            CPU, the allocator's pool for a GPU).
        **kwargs: passed to ``kernel_fn``.

    Returns:
        An int, the side of a square tile.
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
    budget = device_free_memory_bytes() * memory_fraction
    tile = int(math.sqrt(max(budget / max(per_pair, 1.0), 1.0)))
    n = max(x1.shape[0], xr.shape[0])
    return int(max(1, min(tile, MAX_TILE, n)))


def batch(kernel_fn: Callable, tile_size: Optional[int] = None,
          progress: Optional[bool] = None, store: Optional[str] = None,
          devices: Optional[Sequence] = None, store_key: Optional[str] = None,
          batched_kwargs: Sequence[str] = BATCHED_KWARGS) -> Callable:
    r"""Wrap ``kernel_fn`` so that it runs on tiles of at most ``tile_size`` x ``tile_size``.

    Args:
        kernel_fn: ``kernel_fn(x1, x2, *args, **kwargs)`` returning an array whose first two
            axes are ``(N1, N2)`` or a `Kernel` (e.g. ``net.kernel`` with ``get=...`` passed as a
            keyword, or ``empirical_ntk_fn(f)`` with ``params`` as the third argument).
        tile_size: examples per tile side; ``None`` picks one from free memory
            (`auto_tile_size`).
        progress: show a progress bar; default: once the tiles have taken 2 s
            (`ntkgp._src.progress.DELAY`; ``NTKGP_PROGRESS=0`` silences every bar).
        store: a directory where each finished tile is saved (one ``.npz`` per tile, written
            to a temporary name and renamed, so a tile on disk is always complete). Calling
            again with the same store, inputs and tile size loads the finished tiles and
            computes only the missing ones: a long computation that is interrupted (Ctrl-C, a
            killed job) resumes where it stopped. The store's manifest records a fingerprint
            of the computation (the inputs, the extra arguments, the tile size and what the
            kernel function computes: its code and the values it uses, e.g. a whole
            ``ntkgp.nn`` architecture) and a call that does not match it is refused rather
            than mixing tiles of two computations. Each tile carries a SHA-256 of its content
            and place: a tile changed, damaged or moved after it was written is an error
            naming its file (delete that file to compute it again). Delete the directory to
            start afresh.
        devices: JAX devices to spread tiles over (default: all local devices of the default
            backend); tiles are dispatched to each in turn and computed concurrently.
        store_key: for a ``store``, a string naming the kernel function and its settings,
            needed when ntkgp cannot identify the function itself (it closes over objects
            other than numbers, strings, arrays, functions and ntkgp networks).
        batched_kwargs: names of keyword arguments with one entry per example, given as a pair
            ``(for_x1, for_x2)`` (``for_x1`` alone when ``x2`` is ``None``) and sliced with
            the tiles' examples: the graphs of `ntkgp.nn.Aggregate`, ``pattern=(A1, A2)``.
            Other keyword arguments go to every tile unchanged.

    Returns:
        ``batched(x1, x2=None, *args, **kwargs)`` with the same result as ``kernel_fn``, as NumPy
        arrays (a `Kernel` of NumPy arrays for Kernel outputs). Positional arguments that
        name things (neural-tangents' ``get``) are fixed at compile time, others (an
        empirical kernel's parameters) traced. For a network's kernel an ``x2`` equal to
        ``x1`` is ``x1`` against itself, as untiled: only tiles on and above the diagonal.

    Raises:
        StoreError: ``store`` holds tiles of a different computation, or a damaged or
            changed tile (an ``OSError``).
        ValueError: the kernel function cannot be identified for a ``store`` and no
            ``store_key`` was given.

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
    def compiled(static_args, n_args, kwargs_key):
        # positional arguments after x2 that name things (neural-tangents' `get`) are static,
        # as keywords are; the others (an empirical kernel's parameters) are traced
        kwargs, fixed = dict(kwargs_key), dict(static_args)

        def full(dynamic):
            it = iter(dynamic)
            return [fixed[i] if i in fixed else next(it) for i in range(n_args)]

        def pair(u, v, pu, pv, *dynamic):
            return kernel_fn(u, v, *full(dynamic), **{k: (pu[k], pv[k]) for k in pu}, **kwargs)

        def self_pair(u, pu, *dynamic):
            return kernel_fn(u, None, *full(dynamic), **{k: (pu[k], None) for k in pu},
                             **kwargs)

        return jax.jit(pair), jax.jit(self_pair)

    tile_sizes = {}  # auto tile size per input signature: the probe compiles once, not per call

    def batched(x1, x2=None, *args, **kwargs):
        x1, x2 = checks.check_inputs(x1, x2, ndim=None)
        per1, per2, kwargs = split_kwargs(kwargs, batched_kwargs, x1, x2)
        same = tiling.self_kernel(kernel_fn, x1, x2, [per1[k] for k in per1],
                                  [per2[k] for k in per1] if x2 is not None else [])
        if same:
            x2, per2 = None, None
        n1 = x1.shape[0]
        xr = x1 if x2 is None else x2
        perr = per1 if x2 is None else per2
        n2 = xr.shape[0]

        def rows_of(per, i, t):
            return jax.tree.map(lambda a: pad_rows(a[i:i + t], t), per)

        t = tile_size
        if t is None:
            sig = (x1.shape, None if x2 is None else x2.shape, str(x1.dtype),
                   tuple(sorted((k, repr(v)) for k, v in kwargs.items())),
                   str(jax.tree.map(np.shape, (per1, per2))))
            if sig not in tile_sizes:
                pu, pv = rows_of(per1, 0, 64), rows_of(perr, 0, 64)
                tile_sizes[sig] = auto_tile_size(
                    lambda u, v, *a, **kw: kernel_fn(
                        u, v, *a, **{k: (pu[k], pv[k]) for k in pu}, **kw),
                    x1, x2, *args, **kwargs)
            t = tile_sizes[sig]
        t1, t2 = min(t, n1), min(t, n2)
        if x2 is None:
            t1 = t2 = min(t, n1)
        rows = range(0, n1, t1)
        cols = range(0, n2, t2)
        key = tuple(sorted(kwargs.items()))
        fixed = tuple((i, tuple(a) if isinstance(a, list) else a)
                      for i, a in enumerate(args) if _names(a))
        dynamic = [a for a in args if not _names(a)]
        try:
            pair_fn, self_fn = compiled(fixed, len(args), key)
        except TypeError:  # unhashable keyword values: compile per call
            pair_fn, self_fn = compiled.__wrapped__(fixed, len(args), key)
        tiles = [(i, j) for i in rows for j in cols if x2 is not None or j >= i]
        disk = None
        if store is not None:
            disk = TileStore(store, fingerprint(
                kernel_fn, store_key, x1, x2, jax.tree.leaves((args, per1, per2)),
                str(jax.tree.structure((args, per1, per2))),
                sorted((k, repr(v)) for k, v in kwargs.items()), t1, t2))
        devs = tiling.devices(devices)
        show = True if progress is None else progress
        out = None
        bar = progress_counter(len(tiles), desc="kernel tiles", enabled=show)
        todo = []
        for i, j in tiles:
            saved = (disk.load(i, j, min(t1, n1 - i), min(t2, n2 - j)) if disk is not None
                     else None)
            if saved is not None:
                out = _place(out, saved, i, j, n1, n2, x2 is None)
                bar.update(1)
            else:
                todo.append((i, j))
        for g in range(0, len(todo), len(devs)):
            group = todo[g:g + len(devs)]
            pending = []
            for (i, j), dev in zip(group, devs):  # dispatched asynchronously, one per device
                a = pad_rows(x1[i:i + t1], t1)
                pa = rows_of(per1, i, t1)
                put = (lambda v: jax.device_put(v, dev)) if len(devs) > 1 else (lambda v: v)
                if x2 is None and i == j:
                    res = self_fn(put(a), put(pa), *dynamic)
                else:
                    res = pair_fn(put(a), put(pad_rows(xr[j:j + t2], t2)), put(pa),
                                  put(rows_of(perr, j, t2)), *dynamic)
                pending.append((i, j, res))
            for i, j, res in pending:
                nr, nc = min(t1, n1 - i), min(t2, n2 - j)
                tile = _host_tile(res, nr, nc, x2 is None and i == j)
                if disk is not None:
                    disk.save(i, j, tile)
                out = _place(out, tile, i, j, n1, n2, x2 is None)
                bar.update(1)
        bar.close()
        out = _finish(out, symmetric=x2 is None)
        return out.replace(cov2=out.cov1) if same and isinstance(out, Kernel) else out

    return batched


class TileStore:
    """Finished tiles on disk: ``tile_<i>_<j>.npz`` under ``path``, each written atomically
    with a SHA-256 of its arrays and place, and ``manifest.json`` holding the fingerprint of
    the computation they belong to."""

    FORMAT = "ntkgp-tiles-2"

    def __init__(self, path, fingerprint_: str):
        self.path = os.fspath(path)
        self.fingerprint = fingerprint_
        open_store_dir(self.path, fingerprint_, self.FORMAT, {}, lambda p: any(
            f.startswith("tile_") for f in os.listdir(p)))

    def _file(self, i, j):
        return os.path.join(self.path, f"tile_{i}_{j}.npz")

    def load(self, i, j, rows, cols):
        """Tile ``(i, j)`` of ``rows x cols`` pairs, or ``None`` when it is not stored yet."""
        f = self._file(i, j)
        if not os.path.exists(f):
            return None
        try:
            with np.load(f, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            stored = str(arrays.pop("_sha256"))
            meta = json.loads(str(arrays["_meta"])) if "_meta" in arrays else None
        except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as e:
            raise StoreError(f"the tile file {f!r} is damaged ({type(e).__name__}: {e}); "
                             "delete it and call again to compute that tile anew.") from None
        main = [arrays[k] for k in ("nngp", "ntk", "_array") if k in arrays]
        if stored != digest(self.fingerprint, f"{i},{j}", arrays) or not main or any(
                a.shape[:2] != (rows, cols) for a in main):
            raise StoreError(f"the tile file {f!r} was changed after it was written (its "
                             "content, shape or place does not match its checksum); delete "
                             "it and call again to compute that tile anew.")
        tile = {k: v for k, v in arrays.items() if k != "_meta"}
        tile["meta"] = meta
        return tile

    def save(self, i, j, tile):
        arrays = {k: v for k, v in tile.items() if k != "meta" and v is not None}
        if tile.get("meta") is not None:
            arrays["_meta"] = np.asarray(json.dumps(tile["meta"]))
        arrays["_sha256"] = np.asarray(digest(self.fingerprint, f"{i},{j}", arrays))
        write_atomic(self._file(i, j), lambda fh: np.savez(fh, **arrays))


_META = ("x1_is_x2", "is_gaussian", "width", "spatial_ndim", "diagonal_spatial")


def _host_tile(res, nr, nc, diagonal_tile):
    """A computed tile as NumPy arrays trimmed to its real rows and columns."""
    if not isinstance(res, Kernel):
        return {"_array": np.asarray(res)[:nr, :nc], "meta": None}
    tile = {"meta": {f: getattr(res, f) for f in _META}}
    for name in ("nngp", "ntk"):
        v = getattr(res, name)
        if v is not None:
            tile[name] = np.asarray(v)[:nr, :nc]
    tile["cov1"] = np.asarray(res.cov1)[:nr]
    if not diagonal_tile:
        tile["cov2"] = np.asarray(res.cov2_or_cov1)[:nc]
    return tile


def _place(out, tile, i, j, n1, n2, symmetric):
    """Write tile (i, j) (and its mirror for symmetric kernels) into host arrays."""
    meta = tile.get("meta")
    names = [k for k in ("nngp", "ntk", "_array") if tile.get(k) is not None]
    if out is None:
        out = {"meta": meta}
        for name in names:
            v = tile[name]
            out[name] = np.zeros((n1, n2) + v.shape[2:], v.dtype)
        if meta is not None:
            c = tile["cov1"]
            out["cov1"] = np.zeros((n1,) + c.shape[1:], c.dtype)
            out["cov2"] = np.zeros((n2,) + c.shape[1:], c.dtype)
    r = slice(i, i + tile[names[0]].shape[0])
    c = slice(j, j + tile[names[0]].shape[1])
    for name in names:
        v = tile[name]
        out[name][r, c] = v
        if symmetric and i != j:
            out[name][c, r] = _block_transpose(v, meta)
    if meta is not None:
        out["cov1"][r] = tile["cov1"]
        if symmetric:
            if i == j:
                out["cov2"][c] = tile["cov1"]
        else:
            out["cov2"][c] = tile["cov2"]
    return out


def _names(a) -> bool:
    """Whether a positional argument names things (``get``: a string, strings, None)."""
    return a is None or isinstance(a, str) or (
        isinstance(a, (tuple, list)) and all(isinstance(v, str) for v in a))


def _finish(out, symmetric):
    """The assembled `Kernel` (or array); ``symmetric`` is whether the call had ``x2=None``
    (a tile's own flag says only whether that tile was on the diagonal)."""
    meta = out["meta"]
    if meta is None:
        return out["_array"]
    meta = dict(meta, x1_is_x2=symmetric)
    return Kernel(nngp=out.get("nngp"), ntk=out.get("ntk"), cov1=out["cov1"],
                  cov2=None if symmetric else out["cov2"], **meta)
