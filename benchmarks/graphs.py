#!/usr/bin/env python
"""Graph network kernels (`Aggregate`) against neural-tangents 0.6.5's, same network, same
graphs.

Cases (each in its own subprocess, neural-tangents first; this script is also the
neural-tangents side, run in its reference venv with `--backend nt`):
  gcn2_{dense,sparse}_N200_V24_f32   `kernel(x, x, pattern=(A, A))` (NNGP + NTK) of
      2 x [Aggregate + Dense(512, 1.5, 0.05) + Relu] + GlobalAvgPool + Dense(1) on 200
      graphs of 24 nodes with 16 features, float32; `dense`: weighted adjacency tensors
      (N, V, V) with about 25% of arcs present; `sparse`: the same graphs as integer edge
      lists (N, E, 2), E = 144 arcs per graph (padding edges for graphs with fewer)

Usage:
  python benchmarks/graphs.py [--cases REGEX] [--repeats 3] [--no-nt]
The reference venv: `NTREF_LIGHT=1 bash ../shared/ntref/ntref_setup.sh /tmp/ntref`, then
`NTREF_PYTHON=/tmp/ntref/bin/python`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
from _common import main, time_compiled, timing_row  # noqa: E402

N, V, C, E = 200, 24, 16, 144


def all_cases():
    return [dict(id=f"gcn2_{impl}_N{N}_V{V}_f32", impl=impl, nt_self=True)
            for impl in ("dense", "sparse")]


def graphs(rng):
    """Dense weights (N, V, V) and the same arcs as padded edge lists (N, E, 2)."""
    import numpy as np
    present = rng.uniform(size=(N, V, V)) < 0.25
    dense = np.where(present, 1.0, 0.0).astype(np.float32)
    edges = np.full((N, E, 2), -1, np.int32)
    for n in range(N):
        tails, heads = np.nonzero(present[n])
        m = min(E, tails.size)
        edges[n, :m, 0], edges[n, :m, 1] = tails[:m], heads[:m]
        dense[n] = 0.0
        dense[n, tails[:m], heads[:m]] = 1.0  # exactly the arcs the edge list keeps
        edges[n, m:, 0] = 0
    return dense, edges


def network(lib, impl):
    """``lib`` is ntkgp's `nn` or neural-tangents' `stax`."""
    layers = []
    for _ in range(2):
        layers += [lib.Aggregate(implementation=impl.upper()),
                   lib.Dense(512, W_std=1.5, b_std=0.05), lib.Relu()]
    return lib.serial(*layers, lib.GlobalAvgPool(), lib.Dense(1, W_std=1.5, b_std=0.05))


def run_case(case, repeats):
    import jax.numpy as jnp
    import numpy as np
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((N, V, C)), jnp.float32)
    dense, edges = graphs(rng)
    p = jnp.asarray(dense if case["impl"] == "dense" else edges)
    if _common.BACKEND == "nt":
        from neural_tangents import stax
        kernel_fn = network(stax, case["impl"])[2]
        run = lambda a, b, p: kernel_fn(a, b, ("nngp", "ntk"), pattern=(p, p))  # noqa: E731
    else:
        from ntkgp import nn
        net = network(nn, case["impl"])
        run = lambda a, b, p: net.kernel(a, b, pattern=(p, p))  # noqa: E731
    compile_s, ts, out = time_compiled(run, (x, x, p), repeats)
    return timing_row(case["id"], compile_s, ts, check=float(np.mean(out.ntk)),
                      finite=bool(np.all(np.isfinite(np.asarray(out.ntk)))))


if __name__ == "__main__":
    main("graphs", all_cases, run_case, __file__, __doc__)
