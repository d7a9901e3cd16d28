"""Tile sizes and device placement: the one place where ntkgp decides how a kernel matrix is
cut into pieces and where the pieces run.

Every tiled computation (`ntkgp.batching.batch`, the tiled and stored kernel operators, the
posterior's test-row chunks, blocked Cholesky) takes its sizes from here and spreads its tiles
over `devices`.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import numpy as np

from ntkgp._src import checks
from ntkgp._src.kernels.kernel import Kernel
from ntkgp._src.util import pad_rows  # noqa: F401 (part of the tiling interface)

#: rows per tile of a kernel recomputed on every product, and per band of a stored kernel
TILE = 2048
#: largest tile `ntkgp.batching.auto_tile_size` picks
MAX_TILE = 4096
#: tile pairs each device computes per dispatched program (kernel operators)
PAIRS_PER_CALL = 4
#: kernels of inputs with more rows than this are computed in tiles (estimators)
DENSE_ROWS = 2048
#: test rows per prediction step: fixed, so that a row's result never depends on how many
#: rows came with it, and one compiled program serves any number of test points
TEST_ROWS = 256
#: test points per block solve of predictive variances by conjugate gradients (memory N x this)
VARIANCE_ROWS = 512
#: above this many training points, ``solver='auto'`` solves by conjugate gradients
DENSE_MAX_N = 20000
#: above this N, on the CPU, Cholesky is blocked in panels of `CHOLESKY_BLOCK` columns
LARGE_LAPACK_N = 8192
CHOLESKY_BLOCK = 2048
#: up to this N a Cholesky factor is kept twice, as L and as L^T (each triangular solve reads
#: the copy laid out for it, ~2x faster); above it once, which saves N^2 of memory
FACTOR_COPY_MAX_N = 8192


def self_kernel(kernel_fn: Callable, x1, x2, per1=(), per2=()) -> bool:
    """Whether tiles of ``kernel_fn(x1, x2)`` are those of ``x1`` against itself: for a
    network's kernel (which decides so when called whole) an ``x2`` equal to ``x1``, with
    equal per-example arguments (graphs). Its tiles, padded inside ``jit``, could not tell;
    other functions get what they are given (they may not take ``x2=None``)."""
    return x2 is not None and hasattr(kernel_fn, "_ntkgp_name") and \
        checks.same_inputs(x1, x2) and all(checks.same_inputs(a, b) for a, b in
                                           zip(per1, per2))


def devices(devices: Optional[Sequence] = None) -> list:
    """The devices tiles are spread over: ``devices``, or all local devices of the default
    backend."""
    return list(devices) if devices is not None else jax.local_devices()


def blocks(x, rows: int):
    """``x`` ``(N, ...)`` padded (by `pad_rows`) and reshaped to ``(ceil(N / rows), rows,
    ...)``."""
    nb = -(-x.shape[0] // rows)
    return pad_rows(x, nb * rows).reshape((nb, rows) + tuple(x.shape[1:]))


def zero_pad(v: np.ndarray, size: int) -> np.ndarray:
    """``v`` ``(N, C)`` with zero rows appended up to ``size`` rows: padded points then add
    nothing to any product."""
    if size <= len(v):
        return v
    return np.concatenate([v, np.zeros((size - v.shape[0],) + v.shape[1:], v.dtype)])


def row_chunks(n: int, rows: int = TEST_ROWS):
    """``(start, stop)`` of consecutive chunks of at most ``rows`` of ``n`` rows."""
    return [(i, min(i + rows, n)) for i in range(0, n, rows)]


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
