#!/usr/bin/env python
"""Kernel benchmarks: ntkgp against neural-tangents 0.6.5, case by case in one session.

Every case runs in its own subprocess (own memory high-water mark, own x64 setting). For each
case, neural-tangents runs first (in its reference venv, through the shared
`nt_baseline.py --_child`, which uses the same method), then ntkgp, alternating, so that drift
of the shared machine hits both alike. Method (both): trace + lower + XLA compile measured once
(`jax.jit(f).lower(*args).compile()`); one warm-up call; then up to `--repeats` timed calls
(cut to fit a 240 s budget per case; a warm-up slower than 20 s counts as a sample).

Compile time: the cases a compile-time target reads (the N=4000 float32 ones and
`fc10_cached`) run in 3 pairs of processes, alternating; their compile column is the median of
the three (a single compile per process moved by up to 40% between runs).
`fc10_cached_N4000_f32` compiles the depth-10 kernel again with JAX's persistent
compilation cache filled in the same process (what a later process with the cache set finds);
`plain_jax_fc2_N4000_f32` compiles the depth-2 recursion written in plain `jax.numpy` in each
venv (no library: its ratio is the two JAX/XLA versions' own compile-time factor).

The analytic FC cases with `x2` given also give their limit (`_limits.py`): the input Gram
(2 N^2 d flops) at this machine's matmul rate, each ReLU layer's update of both kernels (20
flops per entry) at its fused elementwise rate, and one write of both kernels.

Usage:
  python benchmarks/kernels.py                      # all cases, writes benchmarks/RESULTS.md
  python benchmarks/kernels.py --cases 'fc10_N4000' --repeats 3
  python benchmarks/kernels.py --no-nt              # ntkgp only
  python benchmarks/kernels.py --render             # rewrite RESULTS.md from the saved rows
  NTREF_PYTHON=/path/venv/bin/python python benchmarks/kernels.py
The reference venv: `NTREF_LIGHT=1 bash ../shared/ntref/ntref_setup.sh /tmp/ntref/venv`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import main, time_compiled, timing_row  # noqa: E402
from _limits import RELU_FLOPS, limit  # noqa: E402

W_STD, B_STD = 1.5, 0.05
NT_IMPL = {"jacobian": "JACOBIAN_CONTRACTION", "ntvp": "NTK_VECTOR_PRODUCTS",
           "structured": "STRUCTURED_DERIVATIVES", "auto": "AUTO"}


def all_cases():
    cases = []
    for depth in (2, 10):
        for dt in ("f32", "f64"):
            for n in (1000, 2000, 4000, 8000):
                # compile-time targets read the N=4000 float32 cases: 3 processes each
                cases.append(dict(id=f"fc{depth}_N{n}_{dt}", kind="fc", depth=depth, n=n, dt=dt,
                                  min_repeats=10 if n <= 2000 else 0,
                                  compile_rounds=3 if (n, dt) == (4000, "f32") else 1))
    for dt in ("f32", "f64"):
        cases.append(dict(id=f"fc2_x2None_N4000_{dt}", kind="fc", depth=2, n=4000, dt=dt,
                          x2_none=True, compile_rounds=3 if dt == "f32" else 1))
    for trace in ("full", "trace"):
        for impl in ("structured", "ntvp", "jacobian", "auto"):
            cases.append(dict(id=f"entk_mlp_{trace}_{impl}_f32", kind="entk", trace=trace,
                              impl=impl, dt="f32", n=256,
                              nt_id=f"entk_mlp_{trace}_{NT_IMPL[impl]}_f32",
                              min_repeats=20 if impl in ("structured", "auto") else 0))
        # The same MLP as a plain function (no layer structure): what 'auto' picks without it.
        cases.append(dict(id=f"entk_mlpfn_{trace}_auto_f32", kind="entk", trace=trace,
                          impl="auto", plain=True, dt="f32", n=256, nt_id=None))
    # Compile time: the depth-10 kernel again with JAX's persistent compilation cache warm
    # (ntkgp only), and the same ReLU recursion written in plain JAX, compiled by each venv's
    # JAX (its ratio is the two JAX/XLA versions' own compile-time factor)
    cases.append(dict(id="fc10_cached_N4000_f32", kind="fc", depth=10, n=4000, dt="f32",
                      cached=True, nt_id=None, compile_rounds=3))
    cases.append(dict(id="plain_jax_fc2_N4000_f32", kind="plain", depth=2, n=4000, dt="f32",
                      nt_self=True, min_repeats=5))
    # Per-example kernels only (diagonal_axes=(0,)): N pairs instead of N^2, no NT baseline.
    for impl in ("structured", "jacobian"):
        cases.append(dict(id=f"entk_mlp_diag_{impl}_f32", kind="entk", trace="trace",
                          diag=True, impl=impl, dt="f32", n=256, nt_id=None))
    return cases


# ---------------------------------------------------------------------------------------------
def run_case(case, repeats):
    import jax
    if case["dt"] == "f64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    if case["kind"] == "plain":
        return plain_compile(case, repeats)

    from ntkgp import empirical, nn
    dtype = np.float64 if case["dt"] == "f64" else np.float32
    rng = np.random.default_rng(0)
    info = {}
    if case["kind"] == "fc":
        layers = []
        for _ in range(case["depth"]):
            layers += [nn.Dense(512, W_std=W_STD, b_std=B_STD), nn.Relu()]
        net = nn.serial(*layers, nn.Dense(1, W_std=W_STD, b_std=B_STD))
        x = jnp.asarray(rng.standard_normal((case["n"], 784)), dtype)
        if case.get("cached"):
            info["note"] = warm_cache(lambda a, b: net.kernel(a, b), (x, x))
        if case.get("x2_none"):
            compile_s, ts, out = time_compiled(lambda a: net.kernel(a, None), (x,), repeats)
        else:
            compile_s, ts, out = time_compiled(lambda a, b: net.kernel(a, b), (x, x), repeats)
        info["check"] = float(jnp.mean(out.ntk))
    else:
        net = nn.serial(nn.Dense(512), nn.Relu(), nn.Dense(512), nn.Relu(), nn.Dense(10))
        x = jnp.asarray(rng.standard_normal((case["n"], 784)), dtype)
        _, params = net.init(jax.random.PRNGKey(0), x.shape)
        trace_axes = () if case["trace"] == "full" else (-1,)
        f = (lambda p, xx: net.apply(p, xx)) if case.get("plain") else net  # per example
        if case["impl"] == "auto":
            info["picked"] = empirical.choose_implementation(f, params, x, None, trace_axes)
        diagonal_axes = (0,) if case.get("diag") else ()
        ntk_fn = empirical.empirical_ntk_fn(f, trace_axes, diagonal_axes, vmap_axes=0,
                                            implementation=case["impl"])
        compile_s, ts, out = time_compiled(lambda xx, p: ntk_fn(xx, None, p), (x, params),
                                            repeats)
        info["shape"] = list(out.shape)
        info["check"] = float(jnp.mean(out))
    row = timing_row(case["id"], compile_s, ts, **info)
    if case["kind"] == "fc" and not case.get("x2_none") and not case.get("cached"):
        row.update(fc_limit(case, dtype))  # after the row took the peak memory: rates allocate
    return row


def fc_limit(case, dtype):
    """The case's limit (`_limits.limit`): the input Gram (2 N^2 d flops), each ReLU layer's
    update of both kernels (`RELU_FLOPS` per entry) and one write of the NNGP and NTK."""
    import numpy as np
    n = case["n"]
    return limit(np.dtype(dtype).name, matmul_flops=2 * n * n * 784,
                 elementwise_flops=case["depth"] * RELU_FLOPS * n * n,
                 write_bytes=2 * n * n * np.dtype(dtype).itemsize)


def warm_cache(fn, args):
    """Fill a new persistent compilation cache with ``fn``'s program and drop JAX's in-memory
    caches, so that the timed compile that follows loads the program from disk, as a later
    process would (set by a user with ``JAX_COMPILATION_CACHE_DIR`` and
    ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0``: JAX caches nothing below 1 s of
    compile by default). Returns a note with the cold compile time."""
    import atexit
    import shutil
    import tempfile
    import time

    import jax
    path = tempfile.mkdtemp(prefix="ntkgp_cache_")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    t0 = time.perf_counter()
    jax.jit(fn).lower(*args).compile()
    cold = time.perf_counter() - t0
    jax.clear_caches()
    return f"cold compile {cold:.2f} s in the same process; the compile column loads the cache"


def plain_compile(case, repeats):
    """Trace + compile time of the FC ReLU kernel recursion (NNGP and NTK, ``depth`` layers,
    the same network as ``fc{depth}``) written in plain ``jax.numpy`` with ``jnp.arccos``: no
    library. Run in each venv, its ratio is that of the two JAX/XLA versions' compile times
    for the same program. The time column is the compile time (medians of fresh traces)."""
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np
    x = jnp.asarray(np.random.default_rng(0).standard_normal((case["n"], 784)), np.float32)

    def kernel(a, b):
        w, bb = W_STD ** 2, B_STD ** 2
        q1 = w * jnp.sum(a * a, 1) / a.shape[1] + bb
        q2 = w * jnp.sum(b * b, 1) / b.shape[1] + bb
        k = w * (a @ b.T) / a.shape[1] + bb
        t = k
        for _ in range(case["depth"]):
            s = jnp.sqrt(q1[:, None] * q2[None])
            c = jnp.clip(k / s, -1.0, 1.0)
            th = jnp.arccos(c)
            k_new = s * (jnp.sin(th) + (jnp.pi - th) * c) / (2 * jnp.pi)
            dk = (jnp.pi - th) / (2 * jnp.pi)
            t = w * (k_new + t * dk) + bb
            k = w * k_new + bb
            q1, q2 = w * q1 / 2 + bb, w * q2 / 2 + bb
        return k, t

    ts = []
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        jax.jit(lambda a, b: kernel(a, b)).lower(x, x).compile()  # a fresh trace each time
        ts.append(time.perf_counter() - t0)
    return timing_row(case["id"], float(np.median(ts)), ts, jax=jax.__version__)


# ---------------------------------------------------------------------------------------------
if __name__ == "__main__":
    main("kernels", all_cases, run_case, __file__, __doc__)
