"""Rows that need not fit in memory: arrays read a span of rows at a time.

Random and Nyström features touch the rows once per pass, a block at a time, so the rows can
live on disk or in a Dask graph: a NumPy memmap, a zarr or h5py array, a Dask array (any
array with ``shape``, ``dtype`` and row slicing, wrapped in `LazyRows`). The feature maps and
``Posterior(..., solver='features' or 'nystrom')`` read them in spans of whole storage chunks
(a Dask array's own chunks, a zarr or h5py array's chunk rows, else about `SPAN_BYTES` of
rows), check each span as it arrives (real numbers, finite), and hold at most one span and
one block of features: nothing of size ``N x d``.
"""

from __future__ import annotations

from typing import Iterator, Tuple

import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks

#: bytes of rows read at once from an array without storage chunks (memmaps)
SPAN_BYTES = 64 << 20
_LAZY_MODULES = ("dask", "zarr", "h5py")


def is_lazy(x) -> bool:
    """Whether ``x`` is read in spans rather than loaded whole: a `LazyRows`, a NumPy memmap,
    or a Dask, zarr or h5py array."""
    if isinstance(x, (LazyRows, np.memmap)):
        return True
    return type(x).__module__.split(".")[0] in _LAZY_MODULES and hasattr(x, "shape")


def _float_dtype(dt: np.dtype, name: str) -> np.dtype:
    """The dtype rows of ``dt`` are computed in, as `checks.as_float_array` would give."""
    if dt.kind in "biu":
        return np.dtype(jnp.result_type(float))
    if dt.kind == "c":
        raise TypeError(f"`{name}` must be real; got complex dtype {dt}. Pass the real part "
                        "or split real and imaginary parts into features.")
    if dt.kind != "f":
        raise TypeError(f"`{name}` must be a numeric array; got dtype {dt}.")
    return np.dtype(jnp.zeros((), dt).dtype)  # float64 is float32 unless x64 is on


class LazyRows:
    """The rows of an array read in spans (see the module's note), checked as they are read.

    Args:
        x: an array of shape ``(N, ...)`` with ``dtype`` and row slicing ``x[a:b]``: a NumPy
            memmap, a zarr or h5py array, a Dask array (each span ``.compute()``-d), ...
        name: the argument's name, for error messages.

    Raises:
        ValueError: for fewer than two axes or an empty array.
        TypeError: for a complex or non-numeric dtype.
    """

    def __init__(self, x, name: str = "x"):
        if isinstance(x, LazyRows):
            x = x.source
        if any(not np.isfinite(s) for s in x.shape):  # Dask after boolean indexing
            raise ValueError(f"`{name}` has rows of unknown number (shape {x.shape}); "
                             "compute them first, e.g. `x = x.compute_chunk_sizes()` for a "
                             "Dask array.")
        shape = tuple(int(s) for s in x.shape)
        if len(shape) < 2:
            raise ValueError(f"`{name}` must have shape (N, d) or (N, *S, C) with the examples "
                             f"along the first axis; got shape {shape}.")
        if 0 in shape:
            raise ValueError(f"`{name}` is empty (shape {shape}); kernels need at least one "
                             "example with at least one feature.")
        self.source, self.name, self.shape = x, name, shape
        self.dtype = _float_dtype(np.dtype(x.dtype), name)

    ndim = property(lambda self: len(self.shape))

    def __len__(self):
        return self.shape[0]

    def __repr__(self):
        kind = type(self.source)
        return (f"LazyRows({kind.__module__.split('.')[0]}.{kind.__name__} {self.shape}, read "
                f"as {self.dtype})")

    def astype(self, dtype) -> LazyRows:
        """The same rows, read as ``dtype``."""
        new = LazyRows(self.source, self.name)
        new.dtype = np.dtype(dtype)
        return new

    def _storage_rows(self) -> int:
        """Rows per storage chunk (0: none)."""
        chunks = getattr(self.source, "chunks", None)
        if not chunks:
            return 0
        first = chunks[0]
        return int(max(first)) if isinstance(first, tuple) else int(first)

    def spans(self, rows: int) -> Iterator[Tuple[int, int]]:
        """``(a, b)`` spans covering all rows, each whole storage chunks (a Dask array's own
        chunk boundaries) of at least ``rows`` rows and about `SPAN_BYTES`."""
        n = self.shape[0]
        row_bytes = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        want = max(int(rows), SPAN_BYTES // max(row_bytes, 1), 1)
        chunks = getattr(self.source, "chunks", None)
        if chunks and isinstance(chunks[0], tuple):  # Dask: its own boundaries
            bounds = np.cumsum((0,) + tuple(int(c) for c in chunks[0]))
        else:
            step = self._storage_rows() or want
            bounds = np.append(np.arange(0, n, step), n)
        a = 0
        for b in bounds[1:]:
            if b - a >= want or b == n:
                yield a, int(b)
                a = int(b)

    def _host(self, a: int, b: int) -> np.ndarray:
        """Rows ``a:b`` as a checked NumPy array of `dtype`."""
        block = self.source[a:b]
        if hasattr(block, "compute"):
            block = block.compute()
        block = np.asarray(block)
        checks.check_finite(block, f"{self.name}[{a}:{b}]")
        return block.astype(self.dtype, copy=False)

    def read(self, a: int, b: int):
        """Rows ``a:b`` as a checked JAX array of `dtype`."""
        return jnp.asarray(self._host(a, b))

    def __getitem__(self, index):
        if not isinstance(index, slice) or index.step not in (None, 1):
            raise TypeError(f"{self!r} is read by row ranges x[a:b]; got {index!r}.")
        a, b, _ = index.indices(self.shape[0])
        return self.read(a, max(a, b))

    def take(self, idx):
        """The rows at the integer indices ``idx`` (in any order), as a checked JAX array;
        each distinct row is read once, in increasing order (as h5py requires)."""
        idx = np.asarray(idx, np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.shape[0]):
            raise IndexError(f"row indices must be in [0, {self.shape[0]}) for `{self.name}`.")
        rows, back = np.unique(idx, return_inverse=True)
        src = self.source
        block = src.oindex[rows] if hasattr(src, "oindex") else src[rows]  # zarr: oindex
        if hasattr(block, "compute"):
            block = block.compute()
        block = np.asarray(block)
        checks.check_finite(block, f"rows {rows[:3].tolist()}... of `{self.name}`")
        return jnp.asarray(block[back], self.dtype)

    def blocks(self, rows: int) -> Iterator[Tuple[int, int, np.ndarray]]:
        """``(a, b, x[a:b])`` for consecutive blocks of ``rows`` rows (the last one shorter;
        NumPy views into the span being read), read span by span."""
        carry, start, n = None, 0, self.shape[0]
        for a, b in self.spans(rows):
            span = self._host(a, b)
            if carry is not None and len(carry):
                span = np.concatenate([carry, span])
            i = 0
            while len(span) - i >= rows or (b == n and i < len(span)):
                size = min(rows, len(span) - i)
                yield start, start + size, span[i:i + size]
                i, start = i + size, start + size
            carry = span[i:]


def take_rows(x, idx):
    """``x[idx]`` for integer indices, from an array or `LazyRows`."""
    return x.take(idx) if isinstance(x, LazyRows) else jnp.asarray(x)[np.asarray(idx)]


def lazy_like(x, trailing: tuple, name: str) -> LazyRows:
    """`LazyRows` of ``x`` whose shape after the first axis must be ``trailing`` (the rows a
    map or posterior was built on)."""
    x = LazyRows(x, name)
    if x.shape[1:] != tuple(trailing):
        raise ValueError(f"`{name}` must have the shape after the first axis of the rows it "
                         f"is compared with, {tuple(trailing)}; got {x.shape}.")
    return x


def training_rows(x, solver, name: str = "x_train"):
    """``x`` checked: `LazyRows` when it is read in spans and ``solver`` reads rows a block at
    a time (features, Nyström); otherwise an array in memory (`checks.check_inputs`, which
    loads a lazy array whole, as solvers that need all rows must)."""
    if is_lazy(x) and getattr(solver, "name", solver) in ("features", "nystrom"):
        return LazyRows(x, name)
    return checks.check_inputs(x, None, ndim=None)[0]
