"""Kernels on a Dask cluster (extra ``scale``: ``pip install 'ntkgp[scale]'``).

Kernel tiles as Dask tasks writing into a resumable, worker-loss-safe zarr store
(`kernel_to_zarr`, `open_kernel`), and kernel-vector products on that store as Dask tasks
(`DaskKernelOperator`, for `ntkgp.linalg.cg_solve`). Works with a `distributed.LocalCluster`
(the default) or the address of any running scheduler. The feature solvers need nothing from
here: given a Dask array of rows while a client is active, ``Posterior(..., solver='features'
or 'nystrom')`` computes each chunk's features and Gram sums as a task on the cluster.
"""

from ntkgp._src.scale.dask_kernel import kernel_to_zarr as kernel_to_zarr
from ntkgp._src.scale.dask_kernel import open_kernel as open_kernel
from ntkgp._src.scale.store import StoreError as StoreError
from ntkgp._src.solve.dask import DaskKernelOperator as DaskKernelOperator
