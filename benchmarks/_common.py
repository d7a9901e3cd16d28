"""Shared benchmark plumbing: subprocess rows, machine description, and RESULTS.md.

Each benchmark script saves its rows in ``benchmarks/results_<suite>.json`` (after every case,
so an interrupted run keeps what finished) and then rewrites ``benchmarks/RESULTS.md`` from all
saved suites with `write_results`; ``notes_<suite>.md`` (hand-written analysis) follows each
suite's tables.
"""

import datetime
import json
import os
import platform
import re
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NTREF_PYTHON = os.environ.get("NTREF_PYTHON", "/tmp/ntref/venv/bin/python")
NT_SCRIPT = os.path.join(ROOT, "..", "shared", "ntref", "nt_baseline.py")
BACKEND = "ntkgp"  # the library a child process measures ("nt" in the reference venv)

# suite -> (script, [(section title, id regex)]); the targets are in targets.py
SUITES = {
    "kernels": ("kernels.py", [
        ("Analytic FC kernels, `kernel(x, x)` (NNGP + NTK), d=784, width-free; `fc2` = 2 hidden "
         "ReLU layers, `fc10` = 10", r"^fc\d+_(N|x2None)"),
        ("Compile time (the compile column): `fc10_cached` = the depth-10 kernel with JAX's "
         "persistent compilation cache warm (ntkgp only); `plain_jax_fc2` = the depth-2 ReLU "
         "recursion in plain `jax.numpy`, compiled by each venv's JAX (its time column is "
         "the compile time too)", r"^(fc10_cached|plain_jax)"),
        ("Empirical NTK, MLP 784-512-512-10 (669,706 params), N=256, `x2=None`; `full` = 10x10 "
         "output blocks, `trace` = averaged over outputs", r"^entk")]),
    "predict": ("predict.py", [
        ("Infinite-width prediction, FC net (`fc2`, d=784), N_test=500, NTK mean and covariance "
         "at t=inf, diag_reg=1e-4. `ensemble` = end to end from the inputs (kernels, "
         "factorization, prediction; a new predictor each run); `gp_inference` = kernels "
         "precomputed, factorization and prediction only", r".")]),
    "train": ("train.py", [
        ("Finite-width training (no neural-tangents counterpart): 100 GD steps, 1 hidden ReLU "
         "layer of 4096, diabetes (294 points), 8 seeds; and the default `ntkgp compare` "
         "sweep", r".")]),
    "cntk": ("cntk.py", [
        ("CNTK of 3 x [Conv(64, 3x3, SAME) + Relu] + GlobalAvgPool (`gap`) or Flatten + "
         "Dense(1) on digits (8x8), NNGP + NTK, `kernel(x, x)` unless `x2None`", r"^cnn3"),
        ("CNTK kernel regression vs finite CNNs trained with SGD (no neural-tangents "
         "counterpart; time = both kernels)", r"^acc")]),
    "sgd_bayes": ("sgd_bayes.py", [
        ("SGD vs Bayes (no neural-tangents counterpart): fit-until-correct runs per 1000 "
         "(vmapped vs one compiled call per run), P_B estimators per 128-point sign pattern "
         "(EP vs GHK), and the default `ntkgp sgd-vs-bayes`", r".")]),
    "scale": ("scale.py", [
        ("Large N (no neural-tangents counterpart): exact Cholesky vs matrix-free CG kernel "
         "regression (FC NTK, 1 hidden ReLU layer, time end to end incl. 1000 test means, one "
         "run each), and kernel tiles in one process vs a 2-worker Dask LocalCluster",
         r".")]),
    "features": ("features.py", [
        ("Random features (no neural-tangents counterpart): regression on NTK random features "
         "(`solver='features'`) against the exact solve, CG and scikit-learn's Nystroem + "
         "RidgeCV of the same dimension, in one process; time end to end, test RMSE or "
         "accuracy in the note", r".")]),
    "attention": ("attention.py", [
        ("Transformer kernels, `kernel(x, x)` (NNGP + NTK): Dense embedding, 2 blocks of "
         "[residual softmax self-attention (4 heads, summed positional embeddings) + "
         "LayerNorm, residual ReLU MLP + LayerNorm], GlobalAvgPool, Dense; L=16, C=32. "
         "`limit` = the least time this machine needs for the kernel's matrix products (at "
         "its measured float32 matmul peak) plus one write of the outputs", r".")]),
    "activations": ("activations.py", [
        ("Closed-form activation kernels, `kernel(x, x)` (NNGP + NTK): 3 x [Dense(512, 1.5, "
         "0.05) + activation] + Dense(1), N=4000, d=784; `relu` is the baseline of the "
         "time-vs-ReLU targets; `limit` = the input Gram at this machine's measured matmul "
         "rate plus one write of both kernels at its measured memory bandwidth",
         r".")]),
    "graphs": ("graphs.py", [
        ("Graph network kernels, `kernel(x, x, pattern=(A, A))` (NNGP + NTK): 2 x [Aggregate + "
         "Dense(512) + Relu] + GlobalAvgPool + Dense(1), 200 graphs of 24 nodes, 16 features, "
         "float32; dense adjacency tensors or the same arcs as edge lists", r".")]),
    "layers": ("layers.py", [
        ("Kernels of convolutional layers beyond `Conv`, `kernel(x, x)` (NNGP + NTK), float32, "
         "ending in GlobalAvgPool + Dense(1): 3-D convolutions on volumes (4, 4, 4, 2), "
         "transposed convolutions (stride 2), locally connected layers, linear image "
         "resizing, pooling variants, Index + DotGeneral on digits (32 channels); Dropout and "
         "FanInProd in an FC net (width irrelevant, N=2000)", r".")]),
    "estimators": ("estimators.py", [
        ("scikit-learn estimators against the scikit-learn model a user would pick instead "
         "(no neural-tangents counterpart), both fitted in one process: time = median fit "
         "after the first, compile = first fit minus that; the baseline's time and both "
         "scores in the note", r".")]),
    "tabular": ("tabular.py", []),  # accuracy tables, rendered by tabular.py ("markdown")
}


def median(row, side):
    """The median time of one side (``'nt'`` or ``'ntkgp'``) of a saved row, or None."""
    return ((row or {}).get(side) or {}).get("median_s")


def nt_ratio(row):
    """ntkgp's median over neural-tangents' median, both from the same run of a case, or
    None when either side is missing or failed."""
    us, nt = median(row, "ntkgp"), median(row, "nt")
    return None if us is None or nt is None else us / nt


def block(x):
    import jax
    return jax.tree_util.tree_map(lambda a: a.block_until_ready(), x)


def time_compiled(fn, args, repeats, budget=240.0):
    """AOT compile time, then up to ``repeats`` timed runs after a warm-up (cut to ``budget``
    seconds; a warm-up slower than 20 s counts as a sample)."""
    import jax
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = block(compiled(*args))
    w = time.perf_counter() - t0
    ts = [w] if w > 20.0 else []
    n = max(1, min(repeats, int(budget // max(w, 1e-9)))) - len(ts)
    for _ in range(max(0, n)):
        t0 = time.perf_counter()
        block(compiled(*args))
        ts.append(time.perf_counter() - t0)
    return compile_s, ts, out


def timing_row(case_id, compile_s, ts, **info):
    """One case's row: median/min/max of the timed runs, compile time, and peak memory."""
    import resource
    import statistics
    return dict(id=case_id, compile_s=compile_s, median_s=statistics.median(ts), min_s=min(ts),
                max_s=max(ts), repeats=len(ts),
                maxrss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **info)


def kernel_row(case_id, network, x, repeats):
    """Time ``kernel(x, x)`` (NNGP + NTK) of ``network(lib)``, built from this process's
    library (neural-tangents' ``stax`` in the reference venv, else ``ntkgp.nn``: the same
    names and arguments)."""
    import numpy as np
    if BACKEND == "nt":
        from neural_tangents import stax
        kernel_fn = network(stax)[2]
        run = lambda a, b: kernel_fn(a, b, ("nngp", "ntk"))  # noqa: E731
    else:
        from ntkgp import nn
        net = network(nn)
        run = lambda a, b: net.kernel(a, b)  # noqa: E731
    compile_s, ts, out = time_compiled(run, (x, x), repeats)
    return timing_row(case_id, compile_s, ts, check=float(np.mean(out.ntk)),
                      finite=bool(np.all(np.isfinite(np.asarray(out.ntk)))))


#: glibc's allocator keeping freed blocks up to 1 GiB for reuse (what
#: `ntkgp.batching.reuse_large_buffers()` sets at run time), for a case's `env`: both
#: libraries' processes run under it
REUSE_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(2 ** 31 - 1)}


def subprocess_row(cmd, timeout, env=None):
    """Run one case in a fresh process (with the environment variables ``env`` added); its
    last ``@@ROW {json}`` line, or ``{'error': ...}``."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", NTKGP_PROGRESS="0", **(env or {}))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("@@ROW ")]
    if not line:
        err = (p.stderr.strip().splitlines() or ["?"])[-1][:160]
        return {"error": err}
    return json.loads(line[-1][6:])


def merged_rounds(rows):
    """One row from the rows of the same case run in several processes: medians of the
    compile times and of the run times' medians (all compile times kept in
    ``compile_rounds``); the first failed round's row if any failed."""
    import statistics
    if len(rows) == 1:
        return rows[0]
    failed = [r for r in rows if "error" in r]
    if failed:
        return failed[0]
    out = dict(rows[0])
    out["compile_rounds"] = [r["compile_s"] for r in rows]
    out["compile_s"] = statistics.median(out["compile_rounds"])
    out["median_s"] = statistics.median(r["median_s"] for r in rows)
    out["min_s"] = min(r["min_s"] for r in rows)
    out["max_s"] = max(r["max_s"] for r in rows)
    out["repeats"] = sum(r["repeats"] for r in rows)
    out["maxrss_mb"] = max(r["maxrss_mb"] for r in rows)
    return out


def machine_info():
    import jax
    import numpy as np

    import ntkgp
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
    return dict(cpu=cpu, cores=os.cpu_count(), memory=mem, python=platform.python_version(),
                ntkgp=ntkgp.__version__, jax=jax.__version__, numpy=np.__version__,
                devices=", ".join(str(d) for d in jax.devices()),
                date=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))


def nt_versions(py=NTREF_PYTHON):
    try:
        out = subprocess.run([py, "-c", "import jax, neural_tangents as nt, numpy; "
                              "print(nt.__version__, jax.__version__, numpy.__version__)"],
                             capture_output=True, text=True, timeout=120,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")).stdout.split()
        return dict(neural_tangents=out[0], jax=out[1], numpy=out[2])
    except Exception:
        return None


def have_nt(py=NTREF_PYTHON):
    return os.path.exists(py) and os.path.exists(NT_SCRIPT)


def fmt(v, nd=3):
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.{nd}f}"


def save_rows(suite, machine, ntv, rows, command, order=None):
    """Save this run's rows; with ``order`` (every case id of the suite), rows of earlier runs
    whose cases this run did not repeat are kept (a rerun of some cases replaces just those)."""
    path = os.path.join(HERE, f"results_{suite}.json")
    if order is not None and os.path.exists(path):
        with open(path) as fh:
            old_saved = json.load(fh)
        old = {r["id"]: r for r in old_saved["rows"]}
        for r in old.values():  # rows saved before rows carried dates: their run's date
            r.setdefault("date", old_saved["machine"].get("date"))
        new = {r["id"]: _keep_measured(old.get(r["id"]), r) for r in rows}
        merged = {**old, **new}
        rows = [merged[i] for i in order if i in merged]
        if any(i not in new for i in merged):
            command += " (some rows from an earlier run of this script)"
    with open(path, "w") as fh:
        json.dump({"machine": machine, "neural_tangents": ntv, "command": command,
                   "rows": rows}, fh, indent=1)


def _keep_measured(old, new):
    """A rerun row that failed (timeout, crash) does not replace a row that has a measurement:
    the old row stays, with the failure noted."""
    failed = "error" in (new.get("ntkgp") or {})
    if old is None or not failed or median(old, "ntkgp") is None:
        return new
    kept = json.loads(json.dumps(old))
    kept["rerun_failed"] = f"{new.get('date')}: {new['ntkgp']['error']}"
    return kept


def _table(rows, regex, targets, date=None):
    lines = ["| case | neural-tangents s | ntkgp s | ratio | target | compile s (nt / ntkgp) "
             "| rss MB (nt / ntkgp) | note |", "|---|---:|---:|---:|---|---|---|---|"]
    for row in rows:
        if not re.search(regex, row["id"]):
            continue
        nt, us = row.get("nt") or {}, row.get("ntkgp") or {}
        ratio = nt_ratio(row)
        tgt = targets.get(row["id"])
        tgt_s = "" if tgt is None else (f"≤{tgt}: " + ("**met**" if ratio is not None and
                                                       ratio <= tgt else "**missed**"))
        note = [f"nt: {nt['error']}"] if "error" in nt else []
        if "error" in us:
            note.append(f"ntkgp: {us['error']}")
        if us.get("picked"):
            note.append(f"auto picked {us['picked']}")
        if us.get("note"):
            note.append(us["note"])
        if nt.get("repeats") and nt.get("repeats") < 3:
            note.append(f"nt reps={nt['repeats']}")
        if us.get("compile_rounds"):
            note.append(f"compile: median of {len(us['compile_rounds'])} processes each")
        if row.get("date") and date and row["date"] != date:
            note.append(f"measured {row['date']} (earlier run)")
        if row.get("rerun_failed"):
            note.append(f"a rerun failed ({row['rerun_failed']}); this is the earlier row")
        lines.append(
            f"| {row['id']} | {fmt(nt.get('median_s'))} | {fmt(us.get('median_s'))} | "
            f"{fmt(ratio) if ratio is not None else '—'} | {tgt_s} | "
            f"{fmt(nt.get('compile_s'), 2)} / {fmt(us.get('compile_s'), 2)} | "
            f"{fmt(nt.get('maxrss_mb'), 0)} / {fmt(us.get('maxrss_mb'), 0)} | "
            f"{'; '.join(note)} |")
    return lines


def load_saved():
    """{suite: its saved JSON} for every suite with saved rows."""
    saved = {}
    for suite in SUITES:
        p = os.path.join(HERE, f"results_{suite}.json")
        if os.path.exists(p):
            with open(p) as fh:
                saved[suite] = json.load(fh)
    return saved


def write_results(path=None):
    """Rewrite RESULTS.md from every saved suite: the targets first, then the figures, then
    each suite's machine, versions, date, tables and notes."""
    import targets as tg
    from _limits import limit_table
    from figures import plot_all
    path = path or os.path.join(HERE, "RESULTS.md")
    saved_all = load_saved()
    lines = ["# Benchmark results", "",
             "Written by `python -m benchmarks` and the scripts in `benchmarks/` (do not edit by "
             "hand; rerun them). Times are medians of the timed runs in seconds; compile time "
             "(or, for end-to-end cases, the first call) is separate; `rss` is the peak "
             "resident memory of the case's own process (includes ~0.3-0.5 GB for importing "
             "JAX). neural-tangents ran in its reference venv in the same session, case by case "
             "alternating with ntkgp. `ratio` = ntkgp / neural-tangents median.", ""]
    lines += tg.render(saved_all) + limit_table(saved_all)
    figs = plot_all(saved_all, os.path.join(os.path.dirname(path), "figures"))
    if figs:
        lines += ["", "## Figures", ""] + [f"![{f}]({f})" for f in figs]
    nt_bound = tg.nt_ratio_bounds()
    for suite, (script, sections) in SUITES.items():
        if suite not in saved_all:
            continue
        saved = saved_all[suite]
        lines += ["", f"# `{script}`", "", "| | |", "|---|---|"]
        for k, v in saved["machine"].items():
            lines.append(f"| {k} | {v} |")
        ntv = saved.get("neural_tangents")
        if ntv:
            lines.append(f"| reference | neural-tangents {ntv['neural_tangents']}, jax "
                         f"{ntv['jax']}, numpy {ntv['numpy']} (CPU) |")
        if saved.get("command"):
            lines.append(f"| command | `{saved['command']}` |")
        for title, regex in sections:
            lines += ["", f"## {title}", ""] + _table(saved["rows"], regex, nt_bound,
                                                      saved["machine"].get("date"))
        lines += saved.get("markdown", [])
        notes = os.path.join(HERE, f"notes_{suite}.md")
        if os.path.exists(notes):
            with open(notes) as fh:
                lines += ["", fh.read().rstrip()]
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")


def main(suite, all_cases, run_case, script, doc):
    """Command line of a benchmark script: run cases alternating neural-tangents and ntkgp,
    each in its own process; ``--_child ID`` runs one case here and prints its row."""
    import argparse
    import sys
    ap = argparse.ArgumentParser(description=doc.split("\n")[0])
    ap.add_argument("--cases", default=".", help="regex on case ids")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-nt", action="store_true", help="skip neural-tangents")
    ap.add_argument("--nt-cases", default=".",
                    help="regex: run neural-tangents only on these of the selected cases")
    ap.add_argument("--timeout", type=float, default=590.0)
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite RESULTS.md from the saved rows (no runs)")
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--backend", default="ntkgp", help=argparse.SUPPRESS)
    a = ap.parse_args()
    cases = [c for c in all_cases() if re.search(a.cases, c["id"])]
    if a._child:
        case = next(c for c in all_cases() if c["id"] == a._child)
        global BACKEND
        BACKEND = a.backend
        print("@@ROW " + json.dumps(run_case(case, a.repeats)), flush=True)
        return
    if a.list:
        print("\n".join(c["id"] for c in cases))
        return
    if a.render:
        write_results()
        print("rewrote benchmarks/RESULTS.md")
        return
    use_nt = not a.no_nt and have_nt()
    if not a.no_nt and not use_nt:
        print(f"# neural-tangents venv not found ({NTREF_PYTHON}); ntkgp only", flush=True)
    mi = machine_info()
    ntv = nt_versions() if use_nt else None
    command = os.environ.get("NTKGP_BENCH_COMMAND") or (
        f"python benchmarks/{os.path.basename(script)} --repeats {a.repeats}"
        + (f" --cases '{a.cases}'" if a.cases != "." else ""))
    print("# " + "; ".join(f"{k}={v}" for k, v in mi.items()), flush=True)
    print(f"{'case':36s} {'nt_s':>8s} {'ntkgp_s':>8s} {'ratio':>6s} {'nt_rss':>7s} "
          f"{'ntkgp_rss':>9s}", flush=True)
    rows = []
    for c in cases:
        row = {"id": c["id"], "date": mi["date"]}
        # fast cases (tens of ms) set `min_repeats`: the median of two such runs is noise;
        # both libraries get the same number of runs
        reps = str(max(a.repeats, c.get("min_repeats", 0)))
        nt_id = c.get("nt_id", c["id"])
        with_nt = use_nt and nt_id and re.search(a.nt_cases, c["id"])
        # a case whose compile time a target reads sets `compile_rounds`: that many process
        # pairs, alternating (one compile per process; single compiles moved by 40% between
        # runs minutes apart)
        nt_rows, us_rows = [], []
        for _ in range(c.get("compile_rounds", 1)):
            if with_nt:
                # a suite whose neural-tangents side the shared baseline lacks runs it itself
                nt_script = os.path.abspath(script) if c.get("nt_self") else NT_SCRIPT
                nt_rows.append(subprocess_row([NTREF_PYTHON, nt_script, "--_child", nt_id,
                                               "--repeats", reps, "--backend", "nt"],
                                              a.timeout, c.get("env")))
            # a case that fits millions of rows sets its own longer `timeout`
            # a case that sets `env` (e.g. the allocator's) runs both libraries under it
            us_rows.append(subprocess_row([sys.executable, os.path.abspath(script), "--_child",
                                           c["id"], "--repeats", reps],
                                          max(a.timeout, c.get("timeout", 0)), c.get("env")))
        if nt_rows:
            row["nt"] = merged_rounds(nt_rows)
        row["ntkgp"] = merged_rounds(us_rows)
        rows.append(row)
        nt, us = row.get("nt") or {}, row["ntkgp"]
        ratio = nt_ratio(row)
        print(f"{c['id']:36s} {fmt(nt.get('median_s')):>8s} {fmt(us.get('median_s')):>8s} "
              f"{fmt(ratio):>6s} {fmt(nt.get('maxrss_mb'), 0):>7s} "
              f"{fmt(us.get('maxrss_mb'), 0):>9s} {nt.get('error', '')} {us.get('error', '')}",
              flush=True)
        # after every case: interrupted runs keep rows; a partial rerun keeps the others
        save_rows(suite, mi, ntv, rows, command,
                  order=[c["id"] for c in all_cases()] if a.cases != "." else None)
    write_results()
    print("wrote benchmarks/RESULTS.md", flush=True)
