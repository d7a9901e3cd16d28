"""This machine's rates, measured in the calling process, for the "limit" of a case: the least
time the case's unavoidable work takes here (its matrix products at the measured matmul rate,
its elementwise arithmetic at XLA's fused elementwise rate, its writes of kernel arrays at the
measured memory bandwidth). A case's time over its limit says how much of the machine it
leaves unused, whatever the reference library does; `limit_table` lists every case that has
one next to its ratio to neural-tangents.
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
    """GFLOP/s of one jitted n x n matrix product (best of ten: the machine is shared, and the
    best run is the nearest to what it can do)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    a = jnp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype)
    mm = jax.jit(lambda u: u @ u)
    mm(a).block_until_ready()
    return 2 * n ** 3 / _best_of(lambda: mm(a).block_until_ready(), 10) / 1e9


def copy_gbps(n_elements, dtype="float32"):
    """GB/s read + written by one jitted elementwise pass over ``n_elements`` (best of three)."""
    import jax
    import jax.numpy as jnp
    big = jnp.ones((int(n_elements),), dtype)
    cp = jax.jit(lambda u: u * 1.0001)
    cp(big).block_until_ready()
    t = _best_of(lambda: cp(big).block_until_ready(), 3)
    return 2 * big.size * big.dtype.itemsize / t / 1e9


def elementwise_gflops(dtype="float32", n=1 << 20, chain=32, loops=20):
    """GFLOP/s of XLA's fused elementwise arithmetic: ``loops`` passes of ``chain``
    multiply-adds over ``n`` numbers (4 MB in float32: in cache, so arithmetic, not memory,
    sets the rate), one compiled program (best of ten)."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    x = jnp.asarray(np.random.default_rng(0).uniform(0.5, 1.0, n), dtype)

    def body(_, u):
        for _ in range(chain):
            u = u * 0.999 + 0.0005
        return u
    run = jax.jit(lambda u: jax.lax.fori_loop(0, loops, body, u))
    run(x).block_until_ready()
    return 2 * chain * loops * n / _best_of(lambda: run(x).block_until_ready(), 10) / 1e9


#: flops of one ReLU layer's kernel update per entry (NNGP and NTK of one pair): the
#: correlation (2), the arc-cosine (a polynomial, 8), sin = sqrt(1 - rho^2) (3), the NNGP
#: (4) and the NTK (3). Square roots count as one flop, so this is a floor.
RELU_FLOPS = 20


def conv_terms(size, filt, same=True, diagonal=False):
    """Shifted terms one convolution layer sums for one pair of images, over all output
    entries: pairs of positions ``(p, p')`` (``diagonal``: only ``p = p'``), each the sum of
    the input kernel at ``(p + s, p' + s)`` for every filter offset ``s`` with both inside
    the image (SAME padding, stride 1)."""
    if not same:
        raise ValueError("only SAME padding is counted")
    total = 1
    for length, f in zip(size, filt):
        offsets = range(-(f // 2), f - f // 2)
        per_axis = [length - abs(s) for s in offsets]
        total *= sum(per_axis) if diagonal else sum(v * v for v in per_axis)
    return total


_RATES = {}


def limit(dtype, matmul_flops=0.0, elementwise_flops=0.0, write_bytes=0.0):
    """The least time of a case on this machine and what it counts: ``{limit_s, limit_counts}``
    from its matrix-product flops at the measured matmul rate, its elementwise flops at the
    measured fused elementwise rate and its output bytes at the measured copy bandwidth (rates
    measured once per process, in ``dtype``)."""
    dtype = str(dtype)
    if dtype not in _RATES:
        _RATES[dtype] = (matmul_gflops(dtype), elementwise_gflops(dtype),
                         copy_gbps(1 << 25, dtype))
    mm, ew, bw = _RATES[dtype]
    parts = [(matmul_flops / 1e9, mm, "GFLOP of matrix products", "GFLOP/s"),
             (elementwise_flops / 1e9, ew, "GFLOP elementwise", "GFLOP/s"),
             (write_bytes / 1e9, bw, "GB written", "GB/s")]
    seconds = sum(amount / rate for amount, rate, _, _ in parts)
    counts = "; ".join(f"{amount:.3g} {what} at {rate:.0f} {unit}"
                       for amount, rate, what, unit in parts if amount)
    return {"limit_s": seconds, "limit_counts": counts}


#: what the limits of rows saved before they carried ``limit_counts`` count
_SUITE_COUNTS = {"activations": "the input Gram + one write of both kernels"}


def limit_table(saved_all):
    """Markdown lines: every saved row that has a limit, its time over the limit next to its
    ratio to neural-tangents."""
    rows = []
    for suite, saved in saved_all.items():
        for row in saved["rows"]:
            us, nt = row.get("ntkgp") or {}, row.get("nt") or {}
            if not us.get("limit_s") or not us.get("median_s"):
                continue
            ratio_nt = (f"{us['median_s'] / nt['median_s']:.3g}" if nt.get("median_s")
                        else "—")
            rows.append(f"| {suite} | {row['id']} | {us['limit_s']:.3g} | "
                        f"{us['median_s']:.3g} | {us['median_s'] / us['limit_s']:.2g} | "
                        f"{ratio_nt} | {us.get('limit_counts') or _SUITE_COUNTS.get(suite, '')}"
                        " |")
    if not rows:
        return []
    return ["", "## Time over this machine's limit", "",
            "The limit of a case is the least time its unavoidable work takes on this machine: "
            "its matrix products at the matmul rate, its elementwise arithmetic at XLA's fused "
            "elementwise rate and its output at the memory bandwidth, each measured in the "
            "case's own process (`benchmarks/_limits.py`). `x limit` is the median time over "
            "it (1 = the machine is fully used); `x neural-tangents` the ratio of the same "
            "run.", "",
            "| suite | case | limit s | ntkgp s | x limit | x neural-tangents | counted |",
            "|---|---|---:|---:|---:|---:|---|"] + rows
