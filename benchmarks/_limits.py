"""This machine's rates, measured in the calling process, for the "limit" of a case: the least
time the case's unavoidable work takes here (its matrix products at the measured matmul rate,
its reads and writes of kernel arrays at the measured memory bandwidth). A case's time over
its limit says how much of the machine it leaves unused, whatever the reference library does.
"""

import time


def _best_of(fn, n):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def matmul_gflops(dtype="float32", n=2048):
    """GFLOP/s of one jitted n x n matrix product (best of five)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
    mm = jax.jit(lambda u: u @ u)
    mm(a).block_until_ready()
    return 2 * n ** 3 / _best_of(lambda: mm(a).block_until_ready(), 5) / 1e9


def copy_gbps(n_elements, dtype="float32"):
    """GB/s read + written by one jitted elementwise pass over ``n_elements`` (best of three)."""
    import jax
    import jax.numpy as jnp
    big = jnp.ones((int(n_elements),), dtype)
    cp = jax.jit(lambda u: u * 1.0001)
    cp(big).block_until_ready()
    t = _best_of(lambda: cp(big).block_until_ready(), 3)
    return 2 * big.size * big.dtype.itemsize / t / 1e9
