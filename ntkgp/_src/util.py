"""Small shared helpers: padding by repetition, free memory."""

from __future__ import annotations

import jax.numpy as jnp


def pad_rows(x, size: int):
    """``x`` with its last row repeated until it has ``size`` rows (real data, never zeros, so
    that padding never creates a zero-variance special case)."""
    pad = size - x.shape[0]
    return jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]) if pad else x


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
