"""A feature solver's pass over a Dask array on a distributed cluster.

When the training rows are a Dask array and a ``distributed.Client`` is active (Dask's
default client: the one created last), each chunk of rows becomes one task that computes, on
a worker, the chunk's features and its partial sums :math:`\\Phi^\\top\\Phi`,
:math:`\\Phi^\\top y` (and :math:`\\Phi^\\top\\Psi`) in float64; the driver adds the
``D x D`` partials in chunk order (the same sums on any schedule). The feature map travels to
the workers once, with its random matrices already drawn, so every worker computes features
of the same kernel. Without a client the rows are read chunk by chunk in this process
(`LazyRows`).
"""

from __future__ import annotations

import numpy as np

from ntkgp._src import checks
from ntkgp._src.progress import progress_counter


def active_client(x):
    """The ``distributed.Client`` that computes the Dask array ``x``, or None (not a Dask
    array, no cluster, or ``distributed`` not installed)."""
    if type(x).__module__.split(".")[0] != "dask":
        return None
    try:
        from distributed import default_client
        return default_client()
    except (ImportError, ValueError):
        return None


def _chunk_sums(fmap, block, y, start, name, dtype, drive, other, need_ntk):
    """On a worker: the float64 partial sums of one chunk of rows (checked here)."""
    import jax.numpy as jnp

    from ntkgp._src.solve.features import pass_sums

    block = np.asarray(block)
    checks.check_finite(block, f"{name}[{start}:{start + len(block)}]")
    return pass_sums(fmap, jnp.asarray(block.astype(dtype, copy=False)), y, drive, other,
                     need_ntk, progress=False)


def feature_sums(client, fmap, rows, y, drive, other, need_ntk, progress=None):
    """``(gram, rhs, cross)``: the sums of every chunk of ``rows.source`` (a Dask array),
    computed as tasks on ``client``'s workers and added in chunk order on the driver."""
    import dask

    from ntkgp._src.solve.features import add_sums

    x = rows.source.rechunk({i: -1 for i in range(1, rows.ndim)})
    bounds = np.cumsum((0,) + tuple(int(c) for c in x.chunks[0]))
    fmap._prepare(rows, need_ntk)  # draw the random matrices here, once
    shipped = client.scatter(fmap, broadcast=True, hash=False)
    tasks = [dask.delayed(_chunk_sums)(shipped, blk, y[a:b], int(a), rows.name, rows.dtype,
                                       drive, other, need_ntk)
             for blk, a, b in zip(x.to_delayed().reshape(-1), bounds[:-1], bounds[1:])]
    futures = client.compute(tasks)
    bar = progress_counter(len(futures), desc="features on the cluster",
                           enabled=True if progress is None else progress)
    total = None
    try:
        for fut in futures:  # in chunk order: the same sums whatever finishes first
            parts = fut.result()
            fut.release()
            total = add_sums(total, parts)
            bar.update(1)
    finally:
        bar.close()
        client.cancel(futures)
    return tuple(total)
