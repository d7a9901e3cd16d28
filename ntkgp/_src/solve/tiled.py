r"""`TiledKernelOperator`: a kernel matrix recomputed tile by tile on every product, spread
over all local devices; nothing of size ``N x N`` is ever held."""

from __future__ import annotations

import functools
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from ntkgp._src import checks
from ntkgp._src.progress import progress_counter
from ntkgp._src.scale import tiles
from ntkgp._src.scale.batching import batch
from ntkgp._src.scale.tiles import PAIRS_PER_CALL, pad_rows, zero_pad
from ntkgp._src.solve.operators import KernelOperator, as_kernel_function
from ntkgp._src.util import check_fits_in_memory


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
        progress: show a progress bar per product (default: once a product has taken 2 s).

    Cost per product: :math:`N^2/2` kernel evaluations (the tiles on and above the diagonal).
    """

    cheap_columns = True
    symmetric = True  # diagonal tiles by the x2=None path, the others mirrored

    def __init__(self, kernel_fn: Callable, x, get: Optional[str] = None,
                 tile_size: Optional[int] = None, devices: Optional[Sequence] = None,
                 progress: Optional[bool] = None):
        x, _ = checks.check_inputs(x, None, ndim=None)
        self.x = x
        self.shape = (x.shape[0], x.shape[0])
        as_kernel_function(kernel_fn, get)  # checks it is callable
        self.t = min(checks.check_positive_int(tile_size or tiles.TILE, "tile_size"),
                     x.shape[0])
        self.kernel_fn, self.get = kernel_fn, get
        self.progress = progress
        self.blocks = -(-self.n // self.t)
        self._setup(devices)

    def _setup(self, devices):
        self.f = as_kernel_function(self.kernel_fn, self.get)
        self.devices = tiles.devices(devices)
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
                    # the transposed product as (V^T K)^T: XLA:CPU runs K^T v for one column
                    # as a transpose of the tile and a product (2048 x 2048, float32: 14.9
                    # ms against 0.19 ms, three times the tile's kernel), and fuses v^T K
                    # into the kernel's last loop
                    k = k.astype(vb.dtype)
                    return k @ vb[b], (vb[a].T @ k).T
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
        v, squeeze = self.check_block(v)
        c, t, nb = v.shape[1], self.t, self.blocks
        vb = jnp.asarray(zero_pad(v, nb * t).reshape(nb, t, c), self.dtype)
        prog, per_call = self._pairs_program
        pairs = [(i, j) for i in range(nb) for j in range(i, nb)]
        out = np.zeros((nb, t, c), np.float64)
        show = True if self.progress is None else self.progress
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

    def dense(self):
        """The whole ``(N, N)`` matrix, computed in tiles by `ntkgp.batching.batch`."""
        check_fits_in_memory(self.n, self.dtype, 3, "the kernel matrix and its factorization")
        return jnp.asarray(batch(self.f, self.t, progress=self.progress,
                                 devices=self.devices)(self.x, None))

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
        v, squeeze = self.check_block(v)
        x_test, _ = checks.check_inputs(x_test, None, ndim=None)
        if x_test.shape[1:] != self.x.shape[1:]:
            raise ValueError(f"test inputs must have the training inputs' feature shape "
                             f"{self.x.shape[1:]}; got {x_test.shape[1:]}.")
        t, nb, c = self.t, self.blocks, v.shape[1]
        vb = jnp.asarray(zero_pad(v, nb * t).reshape(nb, t, c), self.dtype)
        prog = self._cross_program
        m = x_test.shape[0]
        out = []
        rows = range(0, m, t)
        bar = progress_counter(len(rows), desc="test rows",
                               enabled=True if progress is None else progress)
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
