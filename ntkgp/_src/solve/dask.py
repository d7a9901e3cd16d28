"""`DaskKernelOperator`: a zarr kernel store (`ntkgp.distributed.kernel_to_zarr`) as a kernel
operator whose products run as Dask tasks (extra ``scale``)."""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from ntkgp._src.scale.dask_kernel import (
    check_tile,
    connect,
    open_kernel,
    tile_origins,
    zarr_manifest,
)
from ntkgp._src.solve.operators import StoredKernelOperator


def _band_task(path, r0, r1, v):
    """``band @ v`` for rows ``r0:r1`` of the store, each tile of the band checked first."""
    import zarr

    n1, n2, t, fp, symmetric = zarr_manifest(path)
    band = zarr.open_array(os.path.join(path, "kernel"), mode="r")[r0:r1]
    if r0 % t == 0 and r1 - r0 <= t:  # one row of tiles
        for _, j in tile_origins(n1, n2, t, rows=[r0]):
            check_tile(path, fp, r0, j, band[:, j:j + t], symmetric)
    band = np.asarray(band, np.float64)
    if not np.all(np.isfinite(band)):
        raise ValueError(f"rows {r0}..{r1 - 1} of the stored kernel hold NaN or inf.")
    return band @ v


class DaskKernelOperator(StoredKernelOperator):
    """A zarr kernel store as a `KernelOperator` whose products run as Dask tasks.

    Each product :math:`K V` is one task per band of ``block_rows`` rows (the store's tile
    height), run where the workers are and returning ``band @ V``; ``V`` is scattered once per
    product. For `ntkgp.linalg.cg_solve` on kernels computed by `kernel_to_zarr`.

    Args:
        path: a finished store (`kernel_to_zarr`).
        client: a ``distributed.Client`` or a scheduler address.
        block_rows: rows per task (default: the tile size).
    """

    def __init__(self, path: str, client, block_rows: Optional[int] = None,
                 progress: Optional[bool] = None):
        # the tasks check each tile as they read it when bands are rows of tiles; other
        # band heights are checked here once
        tile = zarr_manifest(os.fspath(path))[2]
        aligned = block_rows is None or block_rows == tile
        super().__init__(open_kernel(path, verify=not aligned), block_rows or tile, progress)
        self.path = os.fspath(path)
        self.client, _ = connect(client)

    def matmat(self, v):
        v, squeeze = self.check_block(v)
        vf = self.client.scatter(v, broadcast=True, hash=False)
        bands = [(r, min(r + self.block_rows, self.n)) for r in range(0, self.n,
                                                                     self.block_rows)]
        futs = [self.client.submit(_band_task, self.path, r0, r1, vf, pure=False)
                for r0, r1 in bands]
        out = np.concatenate(self.client.gather(futs))
        return out[:, 0] if squeeze else out
