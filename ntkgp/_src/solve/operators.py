r"""Kernel matrices as linear operators that never exist whole in memory.

A `KernelOperator` of :math:`N` training points offers what a matrix-free solver needs:
:math:`K V` for a block of vectors ``V`` of shape ``(N, C)``, the diagonal of :math:`K`, and
selected columns :math:`K[:, p]`. Two sources:

- `TiledKernelOperator`: the kernel is recomputed tile by tile on every product (memory: one
  tile per device plus ``O(N C)``); only tiles on and above the diagonal are computed, each
  used twice (:math:`K_{ij} v_j` and :math:`K_{ij}^\top v_i`). Tiles are spread over all
  local devices with ``jax.shard_map`` (the same program on 1 CPU or 8 GPUs).
- `StoredKernelOperator`: a kernel already on disk or in memory (a NumPy array or memmap, a
  zarr array written by `ntkgp.distributed.kernel_to_zarr`, an HDF5 dataset), read one band
  of rows at a time.

Tiles may be float32; their products are summed in float64 on the host, and every vector the
solver keeps is float64.
"""

from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from ntkgp._src import checks
from ntkgp._src.kernels.kernel import Kernel
from ntkgp._src.progress import progress_counter
from ntkgp._src.util import pad_rows

DEFAULT_TILE = 2048
PAIRS_PER_CALL = 4  # tile pairs each device computes per dispatched program


def _kernel_array(out, get):
    """A kernel function's output as an array: a `Kernel` gives its ``get`` entry."""
    if isinstance(out, Kernel):
        name = get if isinstance(get, str) else "ntk"
        val = getattr(out, name, None)
        if val is None:
            raise ValueError(f"the kernel function returned a Kernel without `{name}`; pass "
                             "get='ntk' or get='nngp'.")
        return val
    return out


def as_kernel_function(kernel_fn: Callable, get: Optional[str]) -> Callable:
    """``f(x1, x2) -> (N1, N2)`` array from ``kernel_fn(x1, x2[, get=get])``."""
    if not callable(kernel_fn):
        raise TypeError(f"`kernel_fn` must be callable, e.g. `net.kernel`; got "
                        f"{type(kernel_fn).__name__}.")
    if get is None:
        return lambda u, v: _kernel_array(kernel_fn(u, v), None)
    return lambda u, v: _kernel_array(kernel_fn(u, v, get=get), get)


def _zero_pad(v, size):
    """``v`` (float64, ``(N, C)``) with zero rows appended up to ``size`` rows: padded
    points then add nothing to any product."""
    return np.concatenate([v, np.zeros((size - v.shape[0],) + v.shape[1:])]) if size > len(v) \
        else v


class KernelOperator:
    """An ``(N, N)`` symmetric positive semi-definite kernel matrix, matrix-free.

    Subclasses implement `matmat`, `diagonal` and `columns`; all return float64 NumPy arrays.
    """

    shape: tuple
    #: whether single columns are cheap (recomputed) rather than a pass over stored data;
    #: picks the preconditioner ``'auto'`` means (pivoted Cholesky if so, else Nyström)
    cheap_columns: bool = False

    @property
    def n(self) -> int:
        return self.shape[0]

    def diagonal(self) -> np.ndarray:
        r""":math:`\operatorname{diag} K`, shape ``(N,)`` (computed once, then cached)."""
        if getattr(self, "_diag", None) is None:
            self._diag = self._compute_diagonal()
        return self._diag.copy()

    def matmat(self, v: np.ndarray) -> np.ndarray:
        """:math:`K V` for ``V`` of shape ``(N, C)``; returns ``(N, C)`` float64."""
        raise NotImplementedError

    def _compute_diagonal(self) -> np.ndarray:
        raise NotImplementedError

    def columns(self, idx: Sequence[int]) -> np.ndarray:
        """:math:`K[:, idx]`, shape ``(N, len(idx))``."""
        raise NotImplementedError

    def _check_block(self, v, name="the vectors"):
        """``(V as (N, C) float64, whether it was 1-D)``; raises on a wrong shape or NaN."""
        v = np.asarray(v, np.float64)
        squeeze = v.ndim == 1
        v2 = v[:, None] if squeeze else v
        if v2.ndim != 2 or v2.shape[0] != self.n:
            raise ValueError(f"{name} must have shape ({self.n},) or ({self.n}, C) for a "
                             f"kernel of {self.n} points; got shape {v.shape}.")
        if not np.all(np.isfinite(v2)):
            raise ValueError(f"{name} contain NaN or inf; remove or impute them first.")
        return v2, squeeze


class TiledKernelOperator(KernelOperator):
    r"""The kernel of ``x`` recomputed tile by tile on every product.

    Args:
        kernel_fn: ``kernel_fn(x1, x2)`` (or ``kernel_fn(x1, x2, get=get)`` when ``get`` is
            given) returning an ``(N1, N2)`` array or a `Kernel`, e.g. ``net.kernel`` with
            ``get='ntk'``; ``x2=None`` means ``x1`` with itself (used for diagonal tiles, as
            by every ntkgp kernel). It must be traceable by JAX.
        x: inputs, shape ``(N, ...)``; their dtype is the tiles' dtype.
        get: ``'ntk'`` or ``'nngp'`` (passed to ``kernel_fn``), or ``None``.
        tile_size: rows per tile (default ``min(N, 2048)``); memory is one ``tile_size`` x
            ``tile_size`` tile and its intermediates per device.
        devices: JAX devices to shard the tiles over (default: all local devices).
        progress: show a progress bar per product (default: when it has over 64 tile pairs).

    Cost per product: :math:`N^2/2` kernel evaluations (the tiles on and above the diagonal).
    """

    cheap_columns = True

    def __init__(self, kernel_fn: Callable, x, get: Optional[str] = None,
                 tile_size: Optional[int] = None, devices: Optional[Sequence] = None,
                 progress: Optional[bool] = None):
        x, _ = checks.check_inputs(x, None, ndim=None)
        self.x = x
        self.shape = (x.shape[0], x.shape[0])
        as_kernel_function(kernel_fn, get)  # checks it is callable
        self.t = min(checks.check_positive_int(tile_size or DEFAULT_TILE, "tile_size"),
                     x.shape[0])
        self.kernel_fn, self.get = kernel_fn, get
        self.progress = progress
        self.blocks = -(-self.n // self.t)
        self._setup(devices)

    def _setup(self, devices):
        self.f = as_kernel_function(self.kernel_fn, self.get)
        self.devices = list(devices) if devices is not None else jax.local_devices()
        nb = self.blocks
        self.xb = jnp.asarray(pad_rows(self.x, nb * self.t).reshape((nb, self.t)
                                                                     + self.x.shape[1:]))
        self.dtype = self.xb.dtype
        self.mesh = Mesh(np.array(self.devices), ("d",))

    def __getstate__(self):  # picklable when kernel_fn is: devices and programs are rebuilt
        keep = ("x", "shape", "kernel_fn", "get", "t", "progress", "blocks", "_diag")
        return {k: (np.asarray(v) if k == "x" else v) for k, v in self.__dict__.items()
                if k in keep}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._setup(None)

    # -- compiled programs (one per operator) ---------------------------------------------
    @functools.cached_property
    def _pairs_program(self):
        f, nd = self.f, len(self.devices)

        def local(i, j, kind, xb, vb):  # (P,) x 3, (B, t, ...), (B, t, C)
            def one(args):
                a, b, c = args
                zero = jnp.zeros(vb.shape[1:], vb.dtype)

                def products(k):
                    k = k.astype(vb.dtype)
                    return k @ vb[b], k.T @ vb[a]
                # kind 0: padding (nothing computed); 1: a diagonal tile, by the x2=None path
                # (exact self-correlations: in float32 a pair of equal inputs is off by ~1e-4
                # on the diagonal, arccos near 1); 2: an off-diagonal tile
                return jax.lax.switch(c, [lambda: (zero, zero),
                                          lambda: products(f(xb[a], None)),
                                          lambda: products(f(xb[a], xb[b]))])
            return jax.lax.map(one, (i, j, kind))

        spec = PartitionSpec("d")
        prog = jax.shard_map(local, mesh=self.mesh, in_specs=(spec, spec, spec,
                                                             PartitionSpec(), PartitionSpec()),
                             out_specs=(spec, spec), check_vma=False)
        return jax.jit(prog), nd * PAIRS_PER_CALL

    @functools.cached_property
    def _column_program(self):
        f = self.f
        return jax.jit(lambda xb, xp: jax.lax.map(lambda blk: f(blk, xp), xb))

    @functools.cached_property
    def _diag_program(self):
        f = self.f
        return jax.jit(lambda xb: jax.lax.map(lambda blk: jnp.diagonal(f(blk, None)), xb))

    # -- operator interface ----------------------------------------------------------------
    def matmat(self, v):
        v, squeeze = self._check_block(v)
        c, t, nb = v.shape[1], self.t, self.blocks
        vb = jnp.asarray(_zero_pad(v, nb * t).reshape(nb, t, c), self.dtype)
        prog, per_call = self._pairs_program
        pairs = [(i, j) for i in range(nb) for j in range(i, nb)]
        out = np.zeros((nb, t, c), np.float64)
        show = len(pairs) > 64 if self.progress is None else self.progress
        bar = progress_counter(len(pairs), desc="kernel-vector product", enabled=show)
        pending = []

        def drain():
            for ii, jj, real, (a, b) in pending:
                a, b = np.asarray(a, np.float64)[:real], np.asarray(b, np.float64)[:real]
                np.add.at(out, ii, a)
                off = ii != jj
                np.add.at(out, jj[off], b[off])
                bar.update(real)
            pending.clear()

        for g in range(0, len(pairs), per_call):
            chunk = pairs[g:g + per_call]
            real = len(chunk)
            chunk = chunk + [chunk[-1]] * (per_call - real)  # padding pairs, dropped below
            ii = np.array([p[0] for p in chunk], np.int32)
            jj = np.array([p[1] for p in chunk], np.int32)
            kind = np.where(ii == jj, 1, 2).astype(np.int32)
            kind[real:] = 0
            pending.append((ii[:real], jj[:real], real, prog(ii, jj, kind, self.xb, vb)))
            if len(pending) >= 4:  # keep a few programs in flight, bound the host memory
                drain()
        drain()
        bar.close()
        res = out.reshape(nb * t, c)[:self.n]
        return res[:, 0] if squeeze else res

    def _compute_diagonal(self):
        return np.asarray(self._diag_program(self.xb), np.float64).reshape(-1)[:self.n]

    def columns(self, idx):
        idx = np.atleast_1d(np.asarray(idx, np.int64))
        xp = jnp.asarray(self.x[idx])
        cols = self._column_program(self.xb, xp)  # (B, t, len(idx))
        cols = np.array(cols, np.float64).reshape(-1, len(idx))[:self.n]
        # each point with itself by the x2=None path, as on the diagonal of the products
        cols[idx, np.arange(len(idx))] = np.asarray(self._self_program(xp), np.float64)
        return cols

    @functools.cached_property
    def _self_program(self):
        f = self.f
        return jax.jit(lambda xp: jnp.diagonal(f(xp, None)))

    def cross(self, x_test, v, progress: Optional[bool] = None) -> np.ndarray:
        r""":math:`K(x_\mathrm{test}, x) \, V` for ``V`` of shape ``(N, C)``: ``(M, C)``
        float64, tile by tile (the posterior mean of any number of test points)."""
        v, squeeze = self._check_block(v)
        x_test, _ = checks.check_inputs(x_test, None, ndim=None)
        if x_test.shape[1:] != self.x.shape[1:]:
            raise ValueError(f"test inputs must have the training inputs' feature shape "
                             f"{self.x.shape[1:]}; got {x_test.shape[1:]}.")
        t, nb, c = self.t, self.blocks, v.shape[1]
        vb = jnp.asarray(_zero_pad(v, nb * t).reshape(nb, t, c), self.dtype)
        prog = self._cross_program
        m = x_test.shape[0]
        out = []
        rows = range(0, m, t)
        bar = progress_counter(len(rows), desc="test rows",
                               enabled=len(rows) > 16 if progress is None else progress)
        for r in rows:
            a = jnp.asarray(pad_rows(x_test[r:r + t], t).astype(self.dtype))
            out.append(np.asarray(prog(a, self.xb, vb), np.float64).sum(0)[:min(t, m - r)])
            bar.update(1)
        bar.close()
        res = np.concatenate(out)
        return res[:, 0] if squeeze else res

    @functools.cached_property
    def _cross_program(self):
        f = self.f

        def prog(a, xb, vb):
            return jax.lax.map(lambda jv: f(a, jv[0]).astype(vb.dtype) @ jv[1], (xb, vb))
        return jax.jit(prog)

    def cross_columns(self, x_test) -> np.ndarray:
        r""":math:`K(x, x_\mathrm{test})`, shape ``(N, M)`` float64 (modest ``M``)."""
        x_test, _ = checks.check_inputs(x_test, None, ndim=None)
        return np.asarray(self._column_program(self.xb, jnp.asarray(x_test, self.dtype)),
                          np.float64).reshape(-1, x_test.shape[0])[:self.n]

    def test_diagonal(self, x_test) -> np.ndarray:
        """:math:`k(x_*, x_*)` for each test point, shape ``(M,)``."""
        x_test, _ = checks.check_inputs(x_test, None, ndim=None)
        m, t = x_test.shape[0], self.t
        nb = -(-m // t)
        xb = jnp.asarray(pad_rows(x_test, nb * t).reshape((nb, t) + x_test.shape[1:]),
                         self.dtype)
        return np.asarray(self._diag_program(xb), np.float64).reshape(-1)[:m]


class StoredKernelOperator(KernelOperator):
    """A kernel matrix held in memory or on disk, read in bands of ``block_rows`` rows.

    Args:
        k: any array-like of shape ``(N, N)`` with NumPy slicing: a NumPy array or
            ``np.load(..., mmap_mode='r')``, a zarr array, an HDF5 dataset.
        block_rows: rows per band (default: the zarr chunk height, else 2048); memory is one
            band, ``block_rows x N``.
        progress: show a progress bar per product (default: when it has over 16 bands).
    """

    def __init__(self, k, block_rows: Optional[int] = None, progress: Optional[bool] = None):
        shape = tuple(getattr(k, "shape", ()))
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"a stored kernel must be a square (N, N) array; got shape "
                             f"{shape}.")
        self.k = k
        self.shape = shape
        chunks = getattr(k, "chunks", None)
        default = chunks[0] if isinstance(chunks, tuple) and chunks else DEFAULT_TILE
        self.block_rows = checks.check_positive_int(block_rows or default, "block_rows")
        self.progress = progress

    def _bands(self, desc):
        rows = range(0, self.n, self.block_rows)
        show = len(rows) > 16 if self.progress is None else self.progress
        bar = progress_counter(len(rows), desc=desc, enabled=show)
        for r in rows:
            band = np.asarray(self.k[r:r + self.block_rows], np.float64)
            if not np.all(np.isfinite(band)):
                raise ValueError(f"the stored kernel has NaN or inf in rows {r} to "
                                 f"{r + band.shape[0] - 1}; recompute it (a tile written by "
                                 "an interrupted run?).")
            yield r, band
            bar.update(1)
        bar.close()

    def matmat(self, v):
        v, squeeze = self._check_block(v)
        out = np.empty_like(v)
        for r, band in self._bands("kernel-vector product"):
            out[r:r + band.shape[0]] = band @ v
        return out[:, 0] if squeeze else out

    def _compute_diagonal(self):
        d = np.empty(self.n)
        for r, band in self._bands("kernel diagonal"):
            d[r:r + band.shape[0]] = band[np.arange(band.shape[0]), r + np.arange(band.shape[0])]
        return d

    def columns(self, idx):
        idx = np.atleast_1d(np.asarray(idx, np.int64))
        out = np.empty((self.n, len(idx)))
        for r, band in self._bands("kernel columns"):
            out[r:r + band.shape[0]] = band[:, idx]
        return out
