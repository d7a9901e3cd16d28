#!/usr/bin/env python
"""Kernel benchmarks: ntkgp against neural-tangents 0.6.5, case by case in one session.

Every case runs in its own subprocess (own memory high-water mark, own x64 setting). For each
case, neural-tangents runs first (in its reference venv, through the shared
`nt_baseline.py --_child`, which uses the same method), then ntkgp, alternating, so that drift
of the shared machine hits both alike. Method (both): trace + lower + XLA compile measured once
(`jax.jit(f).lower(*args).compile()`); one warm-up call; then up to `--repeats` timed calls
(cut to fit a 240 s budget per case; a warm-up slower than 20 s counts as a sample).

Usage:
  python benchmarks/kernels.py                      # all cases, writes benchmarks/RESULTS.md
  python benchmarks/kernels.py --cases 'fc10_N4000' --repeats 3
  python benchmarks/kernels.py --no-nt              # ntkgp only
  python benchmarks/kernels.py --render             # rewrite RESULTS.md from the saved rows
  NTREF_PYTHON=/path/venv/bin/python python benchmarks/kernels.py
The reference venv: `NTREF_LIGHT=1 bash ../shared/ntref/ntref_setup.sh /tmp/ntref/venv`.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
W_STD, B_STD = 1.5, 0.05
NT_IMPL = {"jacobian": "JACOBIAN_CONTRACTION", "ntvp": "NTK_VECTOR_PRODUCTS",
           "structured": "STRUCTURED_DERIVATIVES", "auto": "AUTO"}
# Targets from the issue: ratio ntkgp / neural-tangents (median run time, same session).
TARGETS = {"fc10_N4000_f32": 0.2, "fc2_N8000_f32": 0.5,
           "entk_mlp_full_structured_f32": 1.0, "entk_mlp_trace_structured_f32": 1.0}


def all_cases():
    cases = []
    for depth in (2, 10):
        for dt in ("f32", "f64"):
            for n in (1000, 2000, 4000, 8000):
                cases.append(dict(id=f"fc{depth}_N{n}_{dt}", kind="fc", depth=depth, n=n, dt=dt))
    for dt in ("f32", "f64"):
        cases.append(dict(id=f"fc2_x2None_N4000_{dt}", kind="fc", depth=2, n=4000, dt=dt,
                          x2_none=True))
    for trace in ("full", "trace"):
        for impl in ("structured", "ntvp", "jacobian", "auto"):
            cases.append(dict(id=f"entk_mlp_{trace}_{impl}_f32", kind="entk", trace=trace,
                              impl=impl, dt="f32", n=256,
                              nt_id=f"entk_mlp_{trace}_{NT_IMPL[impl]}_f32"))
        # The same MLP as a plain function (no layer structure): what 'auto' picks without it.
        cases.append(dict(id=f"entk_mlpfn_{trace}_auto_f32", kind="entk", trace=trace,
                          impl="auto", plain=True, dt="f32", n=256, nt_id=None))
    return cases


# ---------------------------------------------------------------------------------------------
def _block(x):
    import jax
    return jax.tree_util.tree_map(lambda a: a.block_until_ready(), x)


def _time_compiled(fn, args, repeats, budget=240.0):
    import jax
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = _block(compiled(*args))
    w = time.perf_counter() - t0
    ts = [w] if w > 20.0 else []
    n = max(1, min(repeats, int(budget // max(w, 1e-9)))) - len(ts)
    for _ in range(max(0, n)):
        t0 = time.perf_counter()
        _block(compiled(*args))
        ts.append(time.perf_counter() - t0)
    return compile_s, ts, out


def run_case(case, repeats):
    import jax
    if case["dt"] == "f64":
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np

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
        if case.get("x2_none"):
            compile_s, ts, out = _time_compiled(lambda a: net.kernel(a, None), (x,), repeats)
        else:
            compile_s, ts, out = _time_compiled(lambda a, b: net.kernel(a, b), (x, x), repeats)
        info["check"] = float(jnp.mean(out.ntk))
    else:
        net = nn.serial(nn.Dense(512), nn.Relu(), nn.Dense(512), nn.Relu(), nn.Dense(10))
        x = jnp.asarray(rng.standard_normal((case["n"], 784)), dtype)
        _, params = net.init(jax.random.PRNGKey(0), x.shape)
        trace_axes = () if case["trace"] == "full" else (-1,)
        f = (lambda p, xx: net.apply(p, xx)) if case.get("plain") else net
        if case["impl"] == "auto":
            info["picked"] = empirical.choose_implementation(f, params, x, None, trace_axes)
        ntk_fn = empirical.empirical_ntk_fn(f, trace_axes, case["impl"])
        compile_s, ts, out = _time_compiled(lambda xx, p: ntk_fn(xx, None, p), (x, params),
                                            repeats)
        info["shape"] = list(out.shape)
        info["check"] = float(jnp.mean(out))
    return dict(id=case["id"], compile_s=compile_s, median_s=statistics.median(ts),
                min_s=min(ts), max_s=max(ts), repeats=len(ts),
                maxrss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **info)


# ---------------------------------------------------------------------------------------------
def _subprocess(cmd, timeout):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", NTKGP_PROGRESS="0")
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("@@ROW ")]
    if not line:
        err = (p.stderr.strip().splitlines() or ["?"])[-1][:160]
        return {"error": err}
    return json.loads(line[-1][6:])


def machine_info():
    import jax
    import numpy as np
    cpu = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        cpu = re.search(r"Model name:\s*(.*)", out).group(1).strip()
    except Exception:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            mem = f"{int(fh.readline().split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    import ntkgp
    return dict(cpu=cpu, cores=os.cpu_count(), memory=mem, python=platform.python_version(),
                ntkgp=ntkgp.__version__, jax=jax.__version__, numpy=np.__version__,
                devices=", ".join(str(d) for d in jax.devices()),
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def nt_versions(py):
    try:
        out = subprocess.run([py, "-c", "import jax, neural_tangents as nt, numpy; "
                              "print(nt.__version__, jax.__version__, numpy.__version__)"],
                             capture_output=True, text=True, timeout=120,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")).stdout.split()
        return dict(neural_tangents=out[0], jax=out[1], numpy=out[2])
    except Exception:
        return None


def fmt(v, nd=3):
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.{nd}f}"


def write_results(rows, mi, ntv, path, args):
    lines = ["# Benchmark results", "",
             "Written by `benchmarks/kernels.py` (do not edit by hand; rerun it). Times are "
             "medians of the timed runs in seconds; compile time is separate; `rss` is the "
             "peak resident memory of the case's own process (includes ~0.3-0.5 GB for "
             "importing JAX). neural-tangents ran in its reference venv in the same session, "
             "case by case alternating with ntkgp. `ratio` = ntkgp / neural-tangents median.",
             "", "## Machine", "",
             "| | |", "|---|---|"]
    for k, v in mi.items():
        lines.append(f"| {k} | {v} |")
    if ntv:
        lines.append(f"| reference | neural-tangents {ntv['neural_tangents']}, jax "
                     f"{ntv['jax']}, numpy {ntv['numpy']} (CPU) |")
    lines.append(f"| command | `python benchmarks/kernels.py --repeats {args.repeats}"
                 + (f" --cases '{args.cases}'" if args.cases != "." else "") + "` |")
    sections = [("Analytic FC kernels, `kernel(x, x)` (NNGP + NTK), d=784, width-free; "
                 "`fc2` = 2 hidden ReLU layers, `fc10` = 10", lambda r: r.startswith("fc")),
                ("Empirical NTK, MLP 784-512-512-10 (669,706 params), N=256, `x2=None`; "
                 "`full` = 10x10 output blocks, `trace` = averaged over outputs",
                 lambda r: r.startswith("entk"))]
    for title, sel in sections:
        lines += ["", f"## {title}", "",
                  "| case | neural-tangents s | ntkgp s | ratio | target | compile s (nt / ntkgp) "
                  "| rss MB (nt / ntkgp) | note |",
                  "|---|---:|---:|---:|---|---|---|---|"]
        for row in rows:
            if not sel(row["id"]):
                continue
            nt, us = row.get("nt") or {}, row.get("ntkgp") or {}
            ratio = (us["median_s"] / nt["median_s"]
                     if "median_s" in us and "median_s" in nt else None)
            tgt = TARGETS.get(row["id"])
            tgt_s = "" if tgt is None else (f"≤{tgt}: " + ("**met**" if ratio is not None and
                                                           ratio <= tgt else "**missed**"))
            note = []
            if "error" in nt:
                note.append(f"nt: {nt['error']}")
            if "error" in us:
                note.append(f"ntkgp: {us['error']}")
            if us.get("picked"):
                note.append(f"auto picked {us['picked']}")
            if nt.get("repeats") and nt.get("repeats") < 3:
                note.append(f"nt reps={nt['repeats']}")
            lines.append(
                f"| {row['id']} | {fmt(nt.get('median_s'))} | {fmt(us.get('median_s'))} | "
                f"{fmt(ratio) if ratio is not None else '—'} | {tgt_s} | "
                f"{fmt(nt.get('compile_s'), 2)} / {fmt(us.get('compile_s'), 2)} | "
                f"{fmt(nt.get('maxrss_mb'), 0)} / {fmt(us.get('maxrss_mb'), 0)} | "
                f"{'; '.join(note)} |")
    extra = os.path.join(HERE, "RESULTS_NOTES.md")
    if os.path.exists(extra):
        with open(extra) as fh:
            lines += ["", fh.read().rstrip()]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=".", help="regex on case ids")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-nt", action="store_true", help="skip neural-tangents")
    ap.add_argument("--ntref-python", default=os.environ.get(
        "NTREF_PYTHON", "/tmp/ntref/venv/bin/python"))
    ap.add_argument("--ntref-dir", default=os.path.join(ROOT, "..", "shared", "ntref"))
    ap.add_argument("--json", default=os.path.join(HERE, "results_kernels.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--timeout", type=float, default=590.0)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite RESULTS.md from the saved --json rows (no runs)")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    cases = [c for c in all_cases() if re.search(a.cases, c["id"])]
    if a._child:
        case = next(c for c in all_cases() if c["id"] == a._child)
        print("@@ROW " + json.dumps(run_case(case, a.repeats)), flush=True)
        return
    if a.list:
        print("\n".join(c["id"] for c in cases))
        return
    if a.render:
        with open(a.json) as fh:
            saved = json.load(fh)
        write_results(saved["rows"], saved["machine"], saved["neural_tangents"], a.out, a)
        print(f"wrote {a.out} from {a.json}")
        return
    nt_script = os.path.join(a.ntref_dir, "nt_baseline.py")
    use_nt = not a.no_nt and os.path.exists(a.ntref_python) and os.path.exists(nt_script)
    if not a.no_nt and not use_nt:
        print(f"# neural-tangents venv not found ({a.ntref_python}); ntkgp only", flush=True)
    mi = machine_info()
    ntv = nt_versions(a.ntref_python) if use_nt else None
    print("# " + "; ".join(f"{k}={v}" for k, v in mi.items()), flush=True)
    print(f"{'case':36s} {'nt_s':>8s} {'ntkgp_s':>8s} {'ratio':>6s} {'nt_rss':>7s} "
          f"{'ntkgp_rss':>9s}", flush=True)
    rows = []
    for c in cases:
        row = {"id": c["id"]}
        nt_id = c.get("nt_id", c["id"])
        if use_nt and nt_id:
            row["nt"] = _subprocess([a.ntref_python, nt_script, "--_child", nt_id, "--repeats",
                                     str(a.repeats), "--backend", "nt"], a.timeout)
        row["ntkgp"] = _subprocess([sys.executable, os.path.abspath(__file__), "--_child",
                                    c["id"], "--repeats", str(a.repeats)], a.timeout)
        rows.append(row)
        nt, us = row.get("nt") or {}, row["ntkgp"]
        ratio = us.get("median_s", 0) / nt["median_s"] if "median_s" in nt and \
            "median_s" in us else float("nan")
        print(f"{c['id']:36s} {fmt(nt.get('median_s')):>8s} {fmt(us.get('median_s')):>8s} "
              f"{ratio:6.3f} {fmt(nt.get('maxrss_mb'), 0):>7s} "
              f"{fmt(us.get('maxrss_mb'), 0):>9s} {nt.get('error', '')} {us.get('error', '')}",
              flush=True)
        with open(a.json, "w") as fh:  # after every case: an interrupted run keeps its rows
            json.dump({"machine": mi, "neural_tangents": ntv, "rows": rows}, fh, indent=1)
    write_results(rows, mi, ntv, a.out, a)
    print(f"wrote {a.out}", flush=True)


if __name__ == "__main__":
    main()
