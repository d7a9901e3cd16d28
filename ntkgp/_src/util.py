"""Small shared helpers: padding by repetition, free memory, atomic file writes, JSON of
results."""

from __future__ import annotations

import os
import tempfile

import jax.numpy as jnp
import numpy as np


def write_atomic(target: str, write) -> None:
    """Write a file so that it is either absent or complete: ``write(fh)`` fills a temporary
    file in the same folder, which is flushed, synced and renamed onto ``target``; on any
    error (Ctrl-C included) the temporary file is removed and ``target`` is left as it was."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(target)), prefix=".tmp-",
                               suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def pad_rows(x, size: int):
    """``x`` with its last row repeated until it has ``size`` rows (real data, never zeros, so
    that padding never creates a zero-variance special case); a NumPy array stays one."""
    pad = size - x.shape[0]
    if not pad:
        return x
    xp = np if isinstance(x, np.ndarray) else jnp
    return xp.concatenate([x, xp.repeat(x[-1:], pad, axis=0)])


def free_memory_bytes() -> int:
    """Available host memory (Linux ``/proc/meminfo``), or 8 GiB when it cannot be read."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - non-Linux
        pass
    return 8 << 30


def device_free_memory_bytes(device=None) -> int:
    """Free memory of a JAX device: for an accelerator its allocator's limit minus what is in
    use (``device.memory_stats()``; by default JAX preallocates 75% of a GPU, and that pool is
    the limit), for the CPU or when the device reports nothing, the free host memory."""
    import jax
    device = device or jax.devices()[0]
    if device.platform != "cpu":
        try:
            stats = device.memory_stats() or {}
            limit = stats.get("bytes_limit")
            if limit:
                return max(int(limit) - int(stats.get("bytes_in_use", 0)), 0)
        except Exception:  # pragma: no cover - a backend without memory statistics
            pass
    return free_memory_bytes()


def check_fits_in_memory(n: int, dtype, n_matrices: float, what: str):
    """Raise ``MemoryError`` when ``n_matrices`` arrays of ``n x n`` ``dtype`` would not fit in
    the available host memory (checked on the CPU backend only).

    Args:
        n: matrix side.
        dtype: element type.
        n_matrices: how many ``n x n`` matrices the computation holds at once.
        what: named in the message (e.g. ``'the training kernel'``).

    Returns:
        ``None``.

    Raises:
        MemoryError: saying how much is needed, how much is free, and what to do instead
            (a subset of the points, float32, more memory).
    """
    import jax
    import numpy as np

    if jax.default_backend() != "cpu":
        return
    need = int(n_matrices * n * n * np.dtype(dtype).itemsize)
    free = free_memory_bytes()
    if need > free:
        raise MemoryError(
            f"{what} for N={n} training points in {np.dtype(dtype).name} need about "
            f"{need / 2**30:.1f} GiB; {free / 2**30:.1f} GiB is available. Use fewer training "
            "points (a random subset), float32 instead of float64, or a machine with more "
            "memory.")


def to_strict_json(obj) -> str:
    """A dataclass result as standard JSON: non-finite floats become ``null``."""
    import dataclasses
    import json
    import math

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(dataclasses.asdict(obj)), indent=1, allow_nan=False)


def from_rows_json(cls, row_cls, text: str):
    """The inverse of `to_strict_json` for a result whose ``rows`` are ``row_cls`` items."""
    import json
    d = json.loads(text)
    d["rows"] = [row_cls(**r) for r in d["rows"]]
    return cls(**d)


class RowsJson:
    """``to_json``/``from_json`` for a dataclass result whose ``rows`` are ``ROW`` items."""

    ROW: type = dict

    def to_json(self) -> str:
        """Standard JSON (non-finite floats as ``null``)."""
        return to_strict_json(self)

    @classmethod
    def from_json(cls, text: str):
        """The result back from `to_json`'s text."""
        return from_rows_json(cls, cls.ROW, text)
