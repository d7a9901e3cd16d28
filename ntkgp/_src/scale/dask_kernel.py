r"""Kernel tiles and kernel-vector products as Dask tasks, into a resumable zarr store.

Layout of a store (a directory that every worker can reach: local disk for a `LocalCluster`,
a shared filesystem for a real cluster)::

    <path>/kernel/      zarr array (N1, N2), chunks (tile_size, tile_size), fill value NaN
    <path>/done/i_j     one file per finished tile, made after its chunk(s) are written: the
                        SHA-256 of the tile's values and place
    <path>/manifest.json  format, fingerprint of the computation, shape, tile size

A tile is complete only when its ``done`` marker exists; the marker is created (atomically,
by rename) after the tile's data is written. A worker that dies mid-write leaves no marker,
so the tile is computed again (Dask reschedules the lost task; a later call recomputes what
is missing) and a half-written chunk is never read as finished. Reading an incomplete store
raises, and so does reading a tile whose values no longer match its marker's checksum.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from typing import Callable, Optional

import numpy as np

from ntkgp._src import checks
from ntkgp._src.progress import progress_counter
from ntkgp._src.scale.store import StoreError, digest, fingerprint, open_store_dir, read_manifest
from ntkgp._src.scale.tiles import as_kernel_function, pad_rows, self_kernel
from ntkgp._src.util import write_atomic

FORMAT = "ntkgp-zarr-2"
_PROGRAMS = {}  # per worker process: jitted tile programs, by kernel function and `get`


def _need(module):
    try:
        return __import__(module)
    except ImportError as e:
        raise ImportError(f"ntkgp.distributed needs `{module}`; install the extra: "
                          "pip install 'ntkgp[scale]'") from e


def _atomic_write(path, data: bytes):
    write_atomic(path, lambda fh: fh.write(data))


def _marker(path, i, j):
    return os.path.join(path, "done", f"{i}_{j}")


def _tile_task(path, fp, kernel_fn, get, x1, x2, i, j, t, mirror):
    """Compute tile (i, j) on a worker, write it (and its mirror), then mark it done with
    its checksum."""
    import jax
    import zarr

    if np.dtype(x1.dtype) == np.float64 and not jax.config.jax_enable_x64:
        raise RuntimeError("the inputs are float64 but this Dask worker runs JAX without "
                           "x64; start the workers with JAX_ENABLE_X64=1, or pass float32 "
                           "inputs.")
    key = (id(kernel_fn), get)
    if key not in _PROGRAMS:
        f = as_kernel_function(kernel_fn, get)
        _PROGRAMS[key] = (kernel_fn, jax.jit(f), jax.jit(lambda u: f(u, None)))
    _, pair, own = _PROGRAMS[key]
    xr = x1 if x2 is None else x2
    a, b = x1[i:i + t], xr[j:j + t]
    na, nb = a.shape[0], b.shape[0]
    pad = lambda z: pad_rows(z, t)  # noqa: E731
    if mirror and i == j:  # by the x2=None path: exact self-correlations on the diagonal
        tile = np.asarray(own(pad(a)))[:na, :na]
    else:
        tile = np.asarray(pair(pad(a), pad(b)))[:na, :nb]
    arr = zarr.open_array(os.path.join(path, "kernel"), mode="r+")
    tile = np.ascontiguousarray(tile.astype(arr.dtype))
    arr[i:i + na, j:j + nb] = tile
    if mirror and i != j:
        arr[j:j + nb, i:i + na] = tile.T
    _atomic_write(_marker(path, i, j), json.dumps(
        {"sha256": digest(fp, f"{i},{j}", {"tile": tile})}).encode())
    return i, j


def check_tile(path, fp, i, j, block, symmetric):
    """Raise `StoreError` unless ``block`` (the stored values of tile (i, j)) matches the
    checksum in its done marker (below the diagonal of a symmetric store: its mirror's)."""
    rows, cols = block.shape
    a, b, block = (j, i, block.T) if symmetric and j < i else (i, j, block)
    marker = _marker(path, a, b)
    try:
        with open(marker, "rb") as fh:
            want = json.loads(fh.read().decode())["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StoreError(f"the done marker {marker!r} of the kernel store {path!r} is missing "
                         f"or damaged ({type(e).__name__}); delete it and call kernel_to_zarr "
                         "again to compute that tile anew.") from None
    if digest(fp, f"{a},{b}", {"tile": np.ascontiguousarray(block)}) != want:
        raise StoreError(f"rows {i}..{i + rows - 1}, columns {j}..{j + cols - 1} "
                         f"of the kernel store {path!r} changed after they were written (they "
                         f"do not match the checksum in {marker!r}); delete that marker and "
                         "call kernel_to_zarr again to compute the tile anew.")


def connect(client):
    """``(client, owned)`` from a Client, a scheduler address or None (a new LocalCluster whose
    workers run one single-threaded JAX each, with the caller's x64 setting)."""
    distributed = _need("distributed")
    import jax

    if isinstance(client, distributed.Client):
        return client, False
    if isinstance(client, str):
        return distributed.Client(client), True
    if client is not None:
        raise TypeError(f"`client` must be a dask.distributed Client, a scheduler address "
                        f"like 'tcp://host:8786', or None; got {type(client).__name__}.")
    line = _unguarded_script_line()
    if line is not None:
        raise RuntimeError(
            f"ntkgp.distributed would start a local Dask cluster from the top-level code of the "
            f"script {line[0]} (line {line[1]}): its worker processes import that script "
            "again, so each would run this code too (Dask then fails with 'Nanny failed to "
            "start', or in other runners the script runs once per worker). Put the code that "
            "uses ntkgp.distributed under `if __name__ == \"__main__\":`, or pass `client=` a "
            "running cluster's Client or scheduler address.")
    env = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false",
           "JAX_ENABLE_X64": "1" if jax.config.jax_enable_x64 else "0",
           "JAX_PLATFORMS": "cpu", "NTKGP_PROGRESS": "0"}
    cluster = distributed.LocalCluster(threads_per_worker=1, processes=True,
                                       dashboard_address=None, env=env)
    return distributed.Client(cluster), True


def _is_main_test(test) -> bool:
    """Whether an ``if`` test is ``__name__ == "__main__"`` (either way round)."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1
            and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    return ({type(x) for x in sides} == {ast.Name, ast.Constant}
            and any(isinstance(x, ast.Name) and x.id == "__name__" for x in sides)
            and any(isinstance(x, ast.Constant) and x.value == "__main__" for x in sides))


def _unguarded_script_line():
    """``(script, line)`` when this call comes from the top-level code of the script Python
    runs (``python script.py``) outside ``if __name__ == "__main__":``, else None (an
    interactive session, a notebook, a function, or guarded code)."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not path or not os.path.isfile(path):
        return None
    path = os.path.realpath(path)
    frame, outer = sys._getframe(1), None
    while frame is not None:  # the script's outermost frame: where its top level is now
        if os.path.realpath(frame.f_code.co_filename) == path:
            outer = frame
        frame = frame.f_back
    if outer is None or outer.f_code.co_name != "<module>":
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read())
    except (OSError, SyntaxError, ValueError):
        return None
    line = outer.f_lineno
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_main_test(node.test) and any(
                st.lineno <= line <= (st.end_lineno or st.lineno) for st in node.body):
            return None
    return path, line


def _open_store(path, fp, shape, t, dtype, symmetric):
    """Create the store, or reopen one of the same computation (else refuse)."""
    zarr = _need("zarr")
    info = {"shape": list(shape), "tile_size": t, "dtype": np.dtype(dtype).name,
            "symmetric": symmetric}
    new = not os.path.exists(os.path.join(path, "manifest.json"))
    open_store_dir(path, fp, FORMAT, info, lambda p: bool(
        os.path.isdir(os.path.join(p, "done")) and os.listdir(os.path.join(p, "done"))))
    os.makedirs(os.path.join(path, "done"), exist_ok=True)
    target = os.path.join(path, "kernel")
    if not new and os.path.isdir(target):
        return
    # uncompressed: kernel values do not compress, and compression costs the workers time
    kw = dict(shape=shape, chunks=(t, t), dtype=np.dtype(dtype), fill_value=np.nan)
    if hasattr(zarr, "create_array"):  # zarr 3
        zarr.create_array(target, compressors=None, overwrite=True, **kw)
    else:  # zarr 2
        zarr.open_array(target, mode="w", compressor=None, **kw)


def kernel_to_zarr(kernel_fn: Callable, x1, x2=None, *, path: str, get: Optional[str] = None,
                   tile_size: int = 1024, client=None, progress: Optional[bool] = None,
                   store_key: Optional[str] = None):
    r"""Compute the kernel ``K(x1, x2)`` as Dask tasks, one per tile, into a zarr store.

    Args:
        kernel_fn: ``kernel_fn(x1, x2[, get=get])`` returning an ``(N1, N2)`` array or a
            `Kernel`, e.g. ``net.kernel``; it is sent to the workers (cloudpickle), so a
            network or a function defined at module level works.
        x1: ``(N1, ...)`` inputs; x2: ``(N2, ...)`` or ``None`` for ``K(x1, x1)`` (then only
            tiles on and above the diagonal are computed and each is written twice; so too
            for a network's kernel with an ``x2`` equal to ``x1``).
        path: the store's directory; every worker must be able to write to it.
        get: ``'ntk'``, ``'nngp'``, or ``None`` when ``kernel_fn`` returns one array.
        tile_size: rows and columns per tile (= per zarr chunk).
        client: a ``distributed.Client``, a scheduler address (``'tcp://host:8786'``), or
            ``None`` for a new `LocalCluster` on this machine (one single-threaded worker per
            core), closed at the end. Its workers import the running script again, so in a
            script this call belongs under ``if __name__ == "__main__":``.
        progress: show a progress bar over tiles (default: once they have taken 2 s).
        store_key: a string naming the kernel function and its settings, needed when ntkgp
            cannot identify the function itself (see `ntkgp.batching.batch`).

    Returns:
        The finished kernel as a read-only zarr array of shape ``(N1, N2)`` (the tiles
        found on disk from an earlier call checked against their checksums, `open_kernel`).

    Raises:
        RuntimeError: ``client=None`` from a script's top-level code outside
            ``if __name__ == "__main__":`` (said before any worker starts).

    Resuming: calling again with the same path, inputs, kernel, ``get`` and tile size computes
    only the tiles without a ``done`` marker (an interrupted run, a lost worker); a different
    computation is refused (`ntkgp.batching.StoreError`), and so is a store whose tiles changed
    after they were written. A task whose worker dies is rescheduled by Dask.
    """
    x1, x2 = checks.check_inputs(x1, x2, ndim=None)
    x1 = np.asarray(x1)
    x2 = None if x2 is None or self_kernel(kernel_fn, x1, x2) else np.asarray(x2)
    t = checks.check_positive_int(tile_size, "tile_size")
    n2 = x1.shape[0] if x2 is None else x2.shape[0]
    path = os.fspath(path)
    fp = fingerprint(kernel_fn, store_key, x1, x2, get, t)
    _open_store(path, fp, (x1.shape[0], n2), t, x1.dtype, x2 is None)
    tiles = [(i, j) for i in range(0, x1.shape[0], t) for j in range(0, n2, t)
             if x2 is not None or j >= i]
    todo = [(i, j) for i, j in tiles if not os.path.exists(_marker(path, i, j))]
    if todo:
        distributed = _need("distributed")
        cl, owned = connect(client)
        bar = progress_counter(len(tiles), desc="kernel tiles (dask)",
                               enabled=True if progress is None else progress)
        bar.update(len(tiles) - len(todo))
        futures = []
        try:
            kf, a, b = cl.scatter([kernel_fn, x1, x2], broadcast=True, hash=False)
            futures = [cl.submit(_tile_task, path, fp, kf, get, a, b, i, j, t, x2 is None,
                                 pure=False, retries=2) for i, j in todo]
            for fut in distributed.as_completed(futures):
                fut.result()
                bar.update(1)
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise
        finally:
            bar.close()
            if owned:
                cluster = getattr(cl, "cluster", None)
                cl.close()
                if cluster is not None:
                    cluster.close()
    # the tiles computed now were checksummed as they were written; the ones found on disk
    # are read back against their checksums
    return open_kernel(path, verify=sorted(set(tiles) - set(todo)))


def zarr_manifest(path):
    """``(n1, n2, tile, fingerprint, symmetric)`` from a zarr store's manifest."""
    info = read_manifest(path, FORMAT)
    try:
        (n1, n2), t = info["shape"], int(info["tile_size"])
        symmetric = bool(info["symmetric"])
    except (KeyError, TypeError, ValueError) as e:
        raise StoreError(f"the manifest of the store {path!r} is damaged ({type(e).__name__}: "
                         f"{e}); delete the store to start afresh.") from None
    return int(n1), int(n2), t, info["fingerprint"], symmetric


def tile_origins(n1, n2, t, rows=None):
    """``(i, j)`` of the tiles of rows ``rows`` (default all)."""
    rows = range(0, n1, t) if rows is None else rows
    return [(i, j) for i in rows for j in range(0, n2, t)]


def open_kernel(path: str, verify=True):
    """The kernel of a finished store as a read-only zarr array (raises if any tile is
    missing: finish it by calling `kernel_to_zarr` again with the same arguments).

    Args:
        path: the store written by `kernel_to_zarr`.
        verify: read every tile once and check it against its checksum (one pass over the
            store, one tile in memory at a time); ``False`` checks none; a list of tiles
            ``(i, j)`` (their first row and column) checks those and their mirrors.

    Returns:
        A read-only ``zarr.Array`` ``(N1, N2)``; index it like NumPy (``k[:]`` loads all).

    Raises:
        FileNotFoundError: the path is no ntkgp kernel store.
        RuntimeError: tiles are missing (the message says how many).
        StoreError: the manifest or a tile is damaged or changed (the message names it).
    """
    zarr = _need("zarr")
    path = os.fspath(path)
    n1, n2, t, fp, symmetric = zarr_manifest(path)
    need = [(i, j) for i, j in tile_origins(n1, n2, t) if not symmetric or j >= i]
    missing = sum(not os.path.exists(_marker(path, i, j)) for i, j in need)
    if missing:
        raise RuntimeError(f"the kernel store {path!r} is incomplete: {missing} of "
                           f"{len(need)} tiles are not finished. Call kernel_to_zarr again "
                           "with the same arguments to compute them.")
    try:
        arr = zarr.open_array(os.path.join(path, "kernel"), mode="r")
        if tuple(arr.shape) != (n1, n2):
            raise ValueError(f"shape {arr.shape}, manifest {(n1, n2)}")
        check = need if verify is True else list(verify or [])
        for i, j in check:
            check_tile(path, fp, i, j, arr[i:i + t, j:j + t], symmetric)
            if symmetric and i != j:
                check_tile(path, fp, j, i, arr[j:j + t, i:i + t], symmetric)
    except StoreError:
        raise
    except Exception as e:  # zarr's own errors for damaged chunks and metadata vary
        raise StoreError(f"the kernel store {path!r} cannot be read ({type(e).__name__}: "
                         f"{e}); delete it and compute it again.") from None
    return arr
