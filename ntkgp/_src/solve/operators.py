r"""Kernel matrices as linear operators, with one interface for every source.

A `KernelOperator` is an ``(N, N)`` symmetric positive semi-definite kernel matrix offering
what solvers need: :math:`K V` for a block ``V`` of shape ``(N, C)`` (`matmat`, `matvec`), the
diagonal, selected columns, ``shape`` and ``dtype``, and, when it fits in memory, the whole
matrix (`dense`). The sources:

- `DenseKernelOperator`: a matrix in memory (``net.kernel(x, None, 'ntk')``); it may be a
  traced JAX array, so posteriors built on it can be differentiated and jitted.
- `TiledKernelOperator` (``ntkgp._src.solve.tiled``): recomputed tile by tile on every
  product, spread over all local devices; nothing of size ``N x N`` is ever held.
- `StoredKernelOperator`: a kernel on disk or in memory (NumPy array or memmap, zarr array,
  HDF5 dataset) read one band of rows at a time; ``ntkgp.distributed.DaskKernelOperator``
  runs those bands as Dask tasks.

Products return float64 NumPy arrays (tiles may be float32; their products are summed in
float64), so the vectors an iterative solver keeps are float64.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.progress import progress_counter
from ntkgp._src.scale import tiles
from ntkgp._src.scale.tiles import as_kernel_function  # noqa: F401 (re-exported)
from ntkgp._src.util import check_fits_in_memory


class KernelOperator:
    """An ``(N, N)`` symmetric positive semi-definite kernel matrix.

    Subclasses implement `matmat`, `_compute_diagonal` and `columns`, and `dense` when the
    matrix can be materialized; all but `dense` return float64 NumPy arrays.

    Attributes:
        shape: ``(N, N)``.
        dtype: the element type of the kernel's values.
        symmetric: whether the matrix is exactly symmetric by construction (a dense
            factorization then skips symmetrizing it).
    """

    shape: tuple
    dtype = np.dtype(np.float64)
    symmetric: bool = False
    #: whether single columns are cheap (recomputed) rather than a pass over stored data;
    #: picks the preconditioner ``'auto'`` means (pivoted Cholesky if so, else Nystrom)
    cheap_columns: bool = False

    @property
    def n(self) -> int:
        """``N``, the number of points."""
        return self.shape[0]

    def diagonal(self) -> np.ndarray:
        r""":math:`\operatorname{diag} K`, shape ``(N,)`` (computed once, then cached)."""
        if getattr(self, "_diag", None) is None:
            self._diag = self._compute_diagonal()
        return self._diag.copy()

    def matmat(self, v: np.ndarray) -> np.ndarray:
        """:math:`K V` for ``V`` of shape ``(N, C)``; returns ``(N, C)`` float64."""
        raise NotImplementedError

    def matvec(self, v: np.ndarray) -> np.ndarray:
        """:math:`K v` for ``v`` of shape ``(N,)``; returns ``(N,)`` float64."""
        return self.matmat(np.asarray(v)[:, None])[:, 0]

    def dense(self):
        """The whole ``(N, N)`` matrix (for a direct solver); raises ``MemoryError`` when it
        would not fit in memory."""
        check_fits_in_memory(self.n, self.dtype, 3, "the kernel matrix and its factorization")
        return self.columns(np.arange(self.n))

    def _compute_diagonal(self) -> np.ndarray:
        raise NotImplementedError

    def columns(self, idx: Sequence[int]) -> np.ndarray:
        """:math:`K[:, idx]`, shape ``(N, len(idx))``."""
        raise NotImplementedError

    def check_block(self, v, name="the vectors"):
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


class DenseKernelOperator(KernelOperator):
    """A kernel matrix held whole in memory.

    Args:
        k: array of shape ``(N, N)`` (NumPy or JAX; a traced array is kept as it is, so what
            is built on it stays differentiable).
        symmetric: whether ``k`` is exactly symmetric by construction (``net.kernel(x,
            None)``); otherwise a dense factorization symmetrizes it first.
        name: what the matrix is, for messages.
    """

    cheap_columns = True

    def __init__(self, k, symmetric: bool = False, name: str = "kernel"):
        self.k = checks.check_square(k, name)
        self.shape = tuple(self.k.shape)
        self.dtype = np.dtype(self.k.dtype)
        self.symmetric = bool(symmetric)
        self.name = name

    def _host(self) -> np.ndarray:
        """The matrix as float64 on the host, copied once (products are summed in float64)."""
        if getattr(self, "_k64", None) is None:
            self._k64 = np.asarray(self.k, np.float64)
        return self._k64

    def matmat(self, v):
        v, squeeze = self.check_block(v)
        out = self._host() @ v
        return out[:, 0] if squeeze else out

    def dense(self):
        return self.k

    def _compute_diagonal(self):
        return np.asarray(jnp.diagonal(self.k), np.float64)

    def columns(self, idx):
        return self._host()[:, np.atleast_1d(np.asarray(idx, np.int64))]


class StoredKernelOperator(KernelOperator):
    """A kernel matrix held in memory or on disk, read in bands of ``block_rows`` rows.

    Args:
        k: any array-like of shape ``(N, N)`` with NumPy slicing: a NumPy array or
            ``np.load(..., mmap_mode='r')``, a zarr array, an HDF5 dataset.
        block_rows: rows per band (default: the zarr chunk height, else 2048); memory is one
            band, ``block_rows x N``.
        progress: show a progress bar per product (default: once a product has taken 2 s).
    """

    def __init__(self, k, block_rows: Optional[int] = None, progress: Optional[bool] = None):
        shape = tuple(getattr(k, "shape", ()))
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"a stored kernel must be a square (N, N) array; got shape "
                             f"{shape}.")
        self.k = k
        self.shape = shape
        self.dtype = np.dtype(getattr(k, "dtype", np.float64))
        chunks = getattr(k, "chunks", None)
        default = chunks[0] if isinstance(chunks, tuple) and chunks else tiles.TILE
        self.block_rows = checks.check_positive_int(block_rows or default, "block_rows")
        self.progress = progress

    def _bands(self, desc):
        rows = range(0, self.n, self.block_rows)
        show = True if self.progress is None else self.progress
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
        v, squeeze = self.check_block(v)
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
