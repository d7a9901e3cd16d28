#!/usr/bin/env python
"""Finite-width training benchmarks: ntkgp.train and the default `ntkgp compare` sweep.

neural-tangents has no training loop to compare with, so these rows have no reference; the
ratios that matter are inside the suite (same session, same machine):
  train_{net,linearized}_8seeds_{vmap,loop}_w4096_f32: 100 full-batch GD steps of a 1-hidden-
      layer ReLU net of width 4096 (the default `ntkgp compare` architecture at its widest) on
      diabetes (294 training points), 8 seeds: `vmap` over the seeds in one call, or a Python
      loop of 8 calls of one compiled loop; the net itself, or its linearization.
  compare_default_f32: the whole default `ntkgp compare` sweep (widths 64-4096, 8 seeds, 100
      steps; net, linearization, closed forms, NTK drift), one run, compile included.
Every case runs in its own process. First call (compilation) is reported separately.

Usage:
  python benchmarks/train.py [--cases REGEX] [--repeats 3] [--render]
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import block, main, timing_row  # noqa: E402

SEEDS, STEPS, WIDTH = 8, 100, 4096


def all_cases():
    cases = [dict(id=f"train_{m}_8seeds_{how}_w4096_f32", model=m, how=how, nt_id=None)
             for m in ("net", "linearized") for how in ("vmap", "loop")]
    cases.append(dict(id="compare_default_f32", model="compare", how=None, nt_id=None))
    return cases


def run_case(case, repeats):
    import jax
    import numpy as np

    from ntkgp import compare, data, nn, train
    x, y = data.load("diabetes")
    xtr, ytr, xte, yte = (a.astype(np.float32) for a in data.split(x, y[:, None], 294))
    info = {}
    if case["model"] == "compare":
        t0 = time.perf_counter()
        res = compare.width_sweep(lambda w: nn.from_spec("relu-x1", width=w),
                                  [64, 256, 1024, 4096], xtr, ytr, xte, yte, seeds=SEEDS,
                                  steps=STEPS, show_progress=False)
        ts, compile_s = [time.perf_counter() - t0], None
        info["slopes"] = res.slopes
        info["dist_b_widest"] = res.rows[-1].dist_net_closed_form
        info["note"] = (f"one run; (b) at 4096: {res.rows[-1].dist_net_closed_form:.3f}; "
                        "log-log slopes " + ", ".join(f"{k} {v:.2f}"
                                                      for k, v in res.slopes.items()))
    else:
        net = nn.from_spec("relu-x1", width=WIDTH)
        keys = jax.random.split(jax.random.PRNGKey(0), SEEDS)
        lr = 0.8

        def one(k):
            _, p0 = net.init(k, xtr.shape)
            f = train.linearize(net, p0) if case["model"] == "linearized" else net
            p, h = train.train(f, p0, xtr, ytr, steps=STEPS, learning_rate=lr,
                               record_every=STEPS)
            return h.train_loss[-1]

        if case["how"] == "vmap":
            fn = jax.jit(jax.vmap(one))

            def once():
                return block(fn(keys))
        else:
            fn = jax.jit(one)

            def once():
                return [block(fn(k)) for k in keys]

        t0 = time.perf_counter()
        once()
        compile_s = time.perf_counter() - t0
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = once()
            ts.append(time.perf_counter() - t0)
        info["final_loss"] = float(np.mean(np.asarray(out)))
    return timing_row(case["id"], compile_s, ts, **info)


if __name__ == "__main__":
    main("train", all_cases, run_case, __file__, __doc__)
