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
  compare_xent_digits_f32: `ntkgp compare --dataset digits --loss xent --arch relu-1024x1
      --seeds 4` (widths 16-1024, softmax cross-entropy against the function-space ODE), one
      run, compile included.
  cnn_{scan,jit}_digits1000_w64_f32: 20 full-batch GD steps of 2 x [Conv(64, 3x3, SAME) +
      Relu] + Flatten + Dense(10) on 1000 digits (8x8), inside `train.train`'s `lax.scan`
      (scan) or as 20 calls of the same step jitted alone (jit): the loop must not be slower
      than its steps.
  tickets_default_f32: the default `ntkgp tickets` (digits 500/500, relu widths 64, 256,
      1024, 2 seeds, 1000 GD steps; the dense net, its linearization, two IMP chains and random
      masks at 4 sparsities), one run, compile included.
  parameterizations_default_f32: `ntkgp compare --parameterization ntk,standard,mup` (the
      default sweep in the NTK, standard and maximal-update parameterizations), one run,
      compile included; its slopes are stored as ``PARAM_NAME`` (e.g. ``mup_ntk_drift``).
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
    cases.append(dict(id="compare_xent_digits_f32", model="compare_xent", how=None, nt_id=None))
    cases += [dict(id=f"cnn_{how}_digits1000_w64_f32", model="cnn", how=how, nt_id=None)
              for how in ("scan", "jit")]
    cases.append(dict(id="tickets_default_f32", model="tickets", how=None, nt_id=None))
    cases.append(dict(id="parameterizations_default_f32", model="parameterizations", how=None,
                      nt_id=None))
    return cases


def _cnn_case(case, repeats):
    import jax
    import numpy as np

    from ntkgp import data, nn, train
    x, labels = data.load_images("digits", n=1000)
    x, y = x.astype(np.float32), data.onehot_targets(labels).astype(np.float32)
    net = nn.from_spec("conv-relu-64x2", n_outputs=10)
    _, p0 = net.init(jax.random.PRNGKey(0), x.shape)
    steps, lr = 20, 0.5
    if case["how"] == "scan":
        def once():
            return block(train.train(net, p0, x, y, steps=steps, learning_rate=lr,
                                     record_every=steps)[0])
    else:
        step = jax.jit(lambda p: jax.tree.map(
            lambda a, g: a - lr * g, p, jax.grad(lambda q: train.mse_loss(net.apply(q, x),
                                                                          y))(p)))

        def once():
            p = p0
            for _ in range(steps):
                p = step(p)
            return block(p)
    compile_s, ts, _ = _timed(once, repeats)
    return timing_row(case["id"], compile_s, ts)


def _timed(once, repeats):
    """(first call's seconds, the repeats' seconds, the last output)."""
    t0 = time.perf_counter()
    out = once()
    compile_s = time.perf_counter() - t0
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = once()
        ts.append(time.perf_counter() - t0)
    return compile_s, ts, out


def run_case(case, repeats):
    import jax
    import numpy as np

    from ntkgp import compare, data, nn, train
    x, y = data.load("diabetes")
    xtr, ytr, xte, yte = (a.astype(np.float32) for a in data.split(x, y[:, None], 294))
    info = {}
    if case["model"] == "cnn":
        return _cnn_case(case, repeats)
    if case["model"] == "tickets":
        from ntkgp import experiments
        xd, labels = data.load("digits")
        d = data.split(xd, data.mse_targets(labels), 500, 500, seed=0)
        t0 = time.perf_counter()
        res = experiments.lottery_tickets(
            lambda w: nn.from_spec("relu-x1", width=w, n_outputs=10), [64, 256, 1024],
            *(a.astype(np.float32) for a in d), show_progress=False)
        last = res.rows[-1]
        info = dict(slopes=res.slopes, note=f"one run; at width 1024 net vs linearized "
                    f"{last.dist['linearized']:.3f}, vs ticket θ0 at 50% "
                    f"{last.dist['ticket'][0]:.3f}; slopes linearized "
                    f"{res.slopes['linearized']:.2f}, ticket {res.slopes['ticket'][0]:.2f}")
        return timing_row(case["id"], None, [time.perf_counter() - t0], **info)
    if case["model"] == "parameterizations":
        from ntkgp import experiments
        t0 = time.perf_counter()
        res = experiments.parameterization_sweep(
            lambda w, p: nn.from_spec("relu-x1", width=w, parameterization=p),
            [64, 256, 1024, 4096], xtr, ytr, xte, yte, seeds=SEEDS, steps=STEPS,
            show_progress=False)
        slopes = {f"{p}_{k}": v for p, r in res.items() for k, v in r.slopes.items()}
        info = dict(slopes=slopes, note="one run; slopes of (a) / NTK drift: " + ", ".join(
            f"{p} {r.slopes['dist_net_linearized']:.2f} / {r.slopes['ntk_drift']:.2f}"
            for p, r in res.items()))
        return timing_row(case["id"], None, [time.perf_counter() - t0], **info)
    if case["model"] == "compare_xent":
        xd, labels = data.load("digits")
        d = data.split(xd, data.onehot_targets(labels), 300, seed=0)
        t0 = time.perf_counter()
        res = compare.width_sweep(lambda w: nn.from_spec("relu-x1", width=w, n_outputs=10),
                                  [16, 64, 256, 1024], *(a.astype(np.float32) for a in d),
                                  seeds=4, steps=STEPS, loss="xent", show_progress=False)
        info = dict(slopes=res.slopes, dist_b_widest=res.rows[-1].dist_net_closed_form,
                    floor=res.closed_form_floor,
                    note=f"one run; (b) at 1024: {res.rows[-1].dist_net_closed_form:.3f}, "
                         f"ODE vs discrete steps {res.closed_form_floor:.4f}; slope of (b) "
                         f"{res.slopes['dist_net_closed_form']:.2f}")
        return timing_row(case["id"], None, [time.perf_counter() - t0], **info)
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

        compile_s, ts, out = _timed(once, repeats)
        info["final_loss"] = float(np.mean(np.asarray(out)))
    return timing_row(case["id"], compile_s, ts, **info)


if __name__ == "__main__":
    main("train", all_cases, run_case, __file__, __doc__)
