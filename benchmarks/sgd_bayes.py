#!/usr/bin/env python
"""SGD-vs-Bayes benchmarks: the vmapped SGD runs and the P_B estimators.

neural-tangents has no counterpart (it has neither the training runs nor orthant
probabilities), so the ratios that matter are inside the suite (same session, same machine):
  sgdruns_{vmap,loop}_w64_f32: networks (7-bit and_or, |S|=64, 2 hidden ReLU layers of 64,
      batch 16) trained until they fit S (`sample_sgd_functions`); `vmap` = 1000 runs through
      the default number of vmapped slots, `loop` = 100 runs through one slot (time scaled to
      1000 runs). Time per 1000 runs.
  sgdruns_digits500_w64_f32: the same network on 500 binarized digits (classes 0-4 against
      5-9, 30 held out): 4000 runs; time per 1000 runs, and the minutes 10^5 runs take at that
      rate.
  images_digits500_f32: `sgd_vs_bayes` on that problem, 10^4 runs, P_B by the tilted sampler
      for every function found twice: one run, compile included; the decades of P_SGD the
      repeated functions span, correlation and slope.
  pb_{ep,ghk}_128: log P(sign g = s) on the full 128-point orthant of the NNGP of that
      network, for 32 sign patterns (the target's labels, then near-target functions: 1 to 8
      held-out labels flipped, like the functions SGD finds); EP batched, GHK with 50000
      samples each. Time per pattern; the note gives EP - GHK (in nats, and in units of GHK's
      standard error).
  pb_tilted_128: the same 32 patterns by Botev's minimax-tilted sampler (`method='tilted'`,
      4000 draws each): time per pattern, its median standard error, and its difference to
      GHK with 50000 draws and to EP.
  pb_tilted_equicorr_n400: 400 equicorrelated unit Gaussians (correlation 0.8), whose orthant
      probability has a one-dimensional integral: the tilted sampler's error (in its own
      standard errors) and EP's, in nats.
  default_cli_f32: the default `ntkgp sgd-vs-bayes` (one setting, 4000 runs, P_B for every
      function found twice), one run, compile included.
Every case runs in its own process. First call (compilation) is reported separately.

Usage:
  python benchmarks/sgd_bayes.py [--cases REGEX] [--repeats 3] [--render]
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import main, timing_row  # noqa: E402


def all_cases():
    return [dict(id=f"sgdruns_{how}_w64_f32", how=how, nt_id=None) for how in ("vmap", "loop")] \
        + [dict(id="sgdruns_digits500_w64_f32", how="digits", nt_id=None),
           dict(id="images_digits500_f32", how="images", nt_id=None)] \
        + [dict(id=f"pb_{m}_128", how=m, nt_id=None) for m in ("ep", "ghk", "tilted")] \
        + [dict(id="pb_tilted_equicorr_n400", how="equicorr", nt_id=None)] \
        + [dict(id="default_cli_f32", how="cli", nt_id=None)]


def _patterns(problem, n=32):
    """The target's labels, then near-target functions like those SGD finds: 1 to 8 of the
    held-out labels flipped."""
    import numpy as np
    rng = np.random.default_rng(0)
    out = [problem.y]
    for i in range(n - 1):
        s = problem.y.copy()
        flip = rng.choice(problem.test, 1 + i % 8, replace=False)
        s[flip] *= -1
        out.append(s)
    return np.stack(out)


def run_case(case, repeats):
    import numpy as np

    from ntkgp import experiments
    from ntkgp._src.predict import orthant
    problem = experiments.boolean_problem(7, "and_or", 64)
    net = experiments.default_net(64)
    info = {}
    if case["how"] in ("vmap", "loop", "digits"):
        if case["how"] == "digits":
            problem = experiments.image_problem("digits", 500, 30)
        runs, chunk = {"vmap": (1000, None), "loop": (100, 1), "digits": (4000, None)}[
            case["how"]]

        def once(seed, n=runs, max_epochs=500):
            return experiments.sample_sgd_functions(net, problem, runs=n, chunk=chunk,
                                                    seed=seed, max_epochs=max_epochs,
                                                    show_progress=False)

        t0 = time.perf_counter()   # compiles for the same slot count (one epoch each)
        once(0, 256 if chunk is None else 1, max_epochs=1)
        compile_s = time.perf_counter() - t0
        ts = []
        for r in range(repeats):
            t0 = time.perf_counter()
            got = once(r + 1)
            ts.append((time.perf_counter() - t0) * 1000 / runs)
        info["note"] = (f"{got.fitted}/{runs} fitted, {got.mean_epochs:.1f} epochs; time per "
                        "1000 runs")
        if case["how"] == "digits":
            info["minutes_1e5"] = float(np.median(ts)) * 100 / 60
            info["note"] += f"; 10^5 runs in {info['minutes_1e5']:.0f} min at this rate"
    elif case["how"] == "images":
        problem = experiments.image_problem("digits", 500, 30)
        t0 = time.perf_counter()
        r = experiments.sgd_vs_bayes(problem, runs=10000, optimizers=["sgd"],
                                     pb_method="tilted", show_progress=False)
        ts, compile_s = [time.perf_counter() - t0], None
        row = r.rows[0]
        seen = [c for c in row.counts if c >= 2]
        info.update(decades=float(np.log10(max(seen) / min(seen))),
                    pb_missing=sum(b is None for c, b in zip(row.counts, row.log_p_b) if c >= 2),
                    note=(f"one run; {len(row.functions)} distinct, {len(seen)} seen twice "
                          f"(P_SGD over {np.log10(max(seen) / min(seen)):.1f} decades), corr "
                          f"{row.correlation:.2f} [{row.correlation_ci[0]:.2f}, "
                          f"{row.correlation_ci[1]:.2f}], slope {row.slope:.2f} "
                          f"[{row.slope_ci[0]:.2f}, {row.slope_ci[1]:.2f}], top-10 mass SGD "
                          f"{row.top_mass_sgd:.3f} / B {row.top_mass_b:.3f}"))
    elif case["how"] in ("ep", "ghk"):
        k = np.asarray(net.kernel(problem.x, None, "nngp"), np.float64)
        pats = _patterns(problem)
        ts, compile_s = [], None
        for _ in range(repeats):
            t0 = time.perf_counter()
            if case["how"] == "ep":
                vals = orthant.ep_log_probabilities(k, pats)
            else:
                vals = [orthant._ghk(k, s, 50000, np.random.default_rng(0)) for s in pats]
            ts.append((time.perf_counter() - t0) / len(pats))
        if case["how"] == "ghk":
            ep = orthant.ep_log_probabilities(k, pats)
            d = np.array([e - g for e, (g, _) in zip(ep, vals)])
            z = np.array([(e - g) / se for e, (g, se) in zip(ep, vals)])
            info["note"] = (f"per pattern; EP - GHK median {np.median(d):+.2f} nats (range "
                            f"{d.min():+.2f} to {d.max():+.2f}), {np.median(z):+.1f} se; GHK se "
                            f"median {np.median([v[1] for v in vals]):.3f}; log p median "
                            f"{np.median(ep):.1f}")
        else:
            info["note"] = "per pattern (32 batched)"
    elif case["how"] == "tilted":
        k = np.asarray(net.kernel(problem.x, None, "nngp"), np.float64)
        pats = _patterns(problem)
        ts, compile_s = [], None
        for _ in range(repeats):
            t0 = time.perf_counter()
            vals = [orthant.log_orthant_probability(k, s, method="tilted", samples=4000)
                    for s in pats]
            ts.append((time.perf_counter() - t0) / len(pats))
        ghk = [orthant._ghk(k, s, 50000, np.random.default_rng(1)) for s in pats]
        ep = orthant.ep_log_probabilities(k, pats)
        d_ghk = np.array([v.log_p - g for v, (g, _) in zip(vals, ghk)])
        d_ep = np.array([e - v.log_p for e, v in zip(ep, vals)])
        se = float(np.median([v.stderr for v in vals]))
        info.update(median_se=se, note=(
            f"per pattern, 4000 draws; se median {se:.4f}; tilted - GHK(50000) median "
            f"{np.median(d_ghk):+.3f} nats; EP - tilted median {np.median(d_ep):+.2f} (range "
            f"{d_ep.min():+.2f} to {d_ep.max():+.2f})"))
    elif case["how"] == "equicorr":
        from scipy import special
        n, rho = 400, 0.8
        k = np.full((n, n), rho) + (1 - rho) * np.eye(n)
        t = np.linspace(-12, 12, 40001)
        log_f = (-0.5 * t * t - 0.5 * np.log(2 * np.pi)
                 + n * special.log_ndtr(np.sqrt(rho / (1 - rho)) * t))
        exact = log_f.max() + np.log(np.trapezoid(np.exp(log_f - log_f.max()), t))
        ts, compile_s = [], None
        for r in range(repeats):
            t0 = time.perf_counter()
            v = orthant.log_orthant_probability(k, np.ones(n), method="tilted", samples=4000,
                                                seed=r)
            ts.append(time.perf_counter() - t0)
        ep = float(orthant.ep_log_probabilities(k, np.ones((1, n)))[0])
        z = abs(v.log_p - exact) / v.stderr
        info.update(z=float(z), note=(
            f"log p {exact:.4f}: tilted {v.log_p - exact:+.4f} (se {v.stderr:.4f}, "
            f"{z:.1f} se), EP {ep - exact:+.4f} nats"))
    else:
        t0 = time.perf_counter()
        r = experiments.sgd_vs_bayes(problem, runs=4000, show_progress=False)
        ts, compile_s = [time.perf_counter() - t0], None
        row = r.rows[0]
        info["note"] = (f"one run; {len(row.functions)} distinct, corr {row.correlation:.2f}, "
                        f"top-10 mass SGD {row.top_mass_sgd:.3f} / B {row.top_mass_b:.3f}")
    return timing_row(case["id"], compile_s, ts, **info)


if __name__ == "__main__":
    main("sgd_bayes", all_cases, run_case, __file__, __doc__)
