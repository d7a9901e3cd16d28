"""The benchmark runner measures every target, renders RESULTS.md from the saved rows and
keeps what was measured when a rerun fails. Not timings: these guard the promises of
``python -m benchmarks --quick`` (it runs every case a target of RESULTS.md is computed from)."""

import importlib
import importlib.util
import os
import re
import sys

import jax
import pytest

# nothing here depends on the dtype: once, in the float32 pass
pytestmark = pytest.mark.skipif(bool(jax.config.read("jax_enable_x64")),
                                reason="dtype-independent: runs in the float32 pass")

BENCH = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, BENCH)
    try:
        spec = importlib.util.spec_from_file_location("bench_runner",
                                                      os.path.join(BENCH, "__main__.py"))
        runner = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(runner)
        import targets
        yield runner, targets
    finally:
        sys.path.remove(BENCH)


def _cases(suite):
    spec = importlib.util.spec_from_file_location(f"bench_{suite}",
                                                  os.path.join(BENCH, f"{suite}.py"))
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    return [c["id"] for c in m.all_cases()]


def _arg(args, flag, default="."):
    return args[args.index(flag) + 1] if flag in args else default


def test_quick_run_measures_every_target(bench):
    """Every case a target reads exists, is selected by the quick plan of its suite (but for
    the few named in QUICK_SKIPS), and (for a ratio against neural-tangents) runs
    neural-tangents too."""
    runner, targets = bench
    problems = []
    for suite, what, measure, _ in targets.TARGETS:
        quick = runner.PLAN[suite][1]
        ids = _cases(suite)
        for case in measure.cases:
            if case in runner.QUICK_SKIPS:
                continue
            if case not in ids:
                problems.append(f"{suite}/{case}: no such case ({what})")
            elif not re.search(_arg(quick, "--cases"), case):
                problems.append(f"{suite}/{case}: not in the quick run ({what})")
            elif (case == getattr(measure, "nt_case", None) or case in getattr(
                    measure, "nt_cases", ())) and not re.search(_arg(quick, "--nt-cases"), case):
                problems.append(f"{suite}/{case}: quick run skips neural-tangents ({what})")
    assert not problems, problems


def test_targets_met_missed_and_not_measured(bench):
    _, targets = bench

    def row(case, us, nt):
        return dict(id=case, date="D", ntkgp=dict(median_s=us), nt=dict(median_s=nt))

    saved = {"kernels": {"machine": {"date": "D"}, "rows": [
        row("fc10_N4000_f32", 0.5, 4.0), row("fc2_N8000_f32", 3.0, 4.0)]},
        "scale": {"machine": {"date": "E"}, "rows": [
            dict(id="cg_N2000_f64", ntkgp=dict(median_s=1.0, rel_diff_exact=2e-8)),
            dict(id="cg_N5000_f64", ntkgp=dict(median_s=1.0, iterations=30)),
            dict(id="cg_noprec_N5000_f64", ntkgp=dict(median_s=1.0, iterations=60))]}}
    res = targets.evaluate(saved)

    def by(words):
        return next(r for r in res if words in r["what"])

    assert by("depth 10")["status"] == "met"
    assert abs(by("depth 10")["value"] - 0.125) < 1e-12
    assert by("depth 2, N=8000")["status"] == "missed"
    assert by("N=2000, float64")["status"] == "met" and by("N=2000, float64")["date"] == "E"
    assert by("without / with")["status"] == "missed" and by("without / with")["value"] == 2.0
    assert by("N=10000, float64")["status"] == "not measured"
    assert by("GlobalAvgPool, N=50")["status"] == "not measured"
    lines = targets.render(saved)
    assert f"**2 met, 2 missed**, {len(targets.TARGETS) - 4} not measured" in lines[2]
    assert all(ln.count("|") == 8 for ln in lines if ln.startswith("| ") and "suite" not in ln)


def test_runner_lists_its_plan_and_refuses_unknown_suites(bench, capsys):
    runner, _ = bench
    assert runner.main(["--list", "--quick"]) == 0
    out = capsys.readouterr().out
    assert all(s in out for s in runner.PLAN)
    with pytest.raises(SystemExit):
        runner.main(["--suites", "kernals"])
    assert "unknown suite(s) kernals" in capsys.readouterr().err


def test_results_render_from_the_saved_rows(bench, tmp_path):
    """RESULTS.md is rewritten from the committed results: targets first, every suite with its
    machine and date; figures next to it when matplotlib is there (no file of the repository
    is touched)."""
    import _common
    out = tmp_path / "RESULTS.md"
    _common.write_results(str(out))
    text = out.read_text()
    assert text.startswith("# Benchmark results")
    assert text.index("## Targets") < text.index("# `kernels.py`")
    for suite, (script, _) in _common.SUITES.items():
        if os.path.exists(os.path.join(BENCH, f"results_{suite}.json")):
            assert f"# `{script}`" in text
    assert "| date |" in text and "| not measured |" not in text.split("# `kernels.py`")[0]
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "figures" / "ratios.png").stat().st_size > 10000


def test_a_failed_rerun_keeps_the_measured_row(bench, tmp_path, monkeypatch):
    """A case that times out on a rerun must not wipe the row measured before (it did once: a
    590 s timeout replaced the 25-minute N=100,000 solve); the failure is noted instead."""
    import json

    import _common
    monkeypatch.setattr(_common, "HERE", str(tmp_path))
    good = {"id": "a", "date": "D1", "ntkgp": {"median_s": 1.0}}
    other = {"id": "b", "date": "D1", "ntkgp": {"median_s": 2.0}}
    _common.save_rows("s", {"date": "D1"}, None, [good, other], "first")
    failed = {"id": "a", "date": "D2", "ntkgp": {"error": "timeout after 590 s"}}
    _common.save_rows("s", {"date": "D2"}, None, [failed], "rerun", order=["a", "b"])
    rows = {r["id"]: r for r in json.loads((tmp_path / "results_s.json").read_text())["rows"]}
    assert rows["a"]["ntkgp"] == {"median_s": 1.0} and rows["a"]["date"] == "D1"
    assert rows["a"]["rerun_failed"] == "D2: timeout after 590 s"
    assert rows["b"] == other
    table = "\n".join(_common._table(list(rows.values()), ".", {}, "D2"))
    assert "a rerun failed (D2: timeout after 590 s)" in table
    fixed = {"id": "a", "date": "D3", "ntkgp": {"median_s": 0.9}}
    _common.save_rows("s", {"date": "D3"}, None, [fixed], "again", order=["a", "b"])
    rows = {r["id"]: r for r in json.loads((tmp_path / "results_s.json").read_text())["rows"]}
    assert rows["a"] == fixed  # a successful rerun replaces it


def test_convolution_terms_count_every_shifted_pair(bench):
    """The CNTK limit's count of shifted terms equals a direct enumeration: every pair of
    positions (or position with itself) and filter offset with both shifted positions inside
    the image, for square and oblong images and filters."""
    import itertools

    import _limits

    for size, filt in [((8, 8), (3, 3)), ((5, 7), (3, 1)), ((6,), (5,))]:
        for diagonal in (False, True):
            positions = list(itertools.product(*(range(s) for s in size)))
            offsets = list(itertools.product(*(range(-(f // 2), f - f // 2) for f in filt)))
            pairs = [(p, p) for p in positions] if diagonal else \
                list(itertools.product(positions, positions))
            inside = lambda q: all(0 <= v < s for v, s in zip(q, size))  # noqa: E731
            direct = sum(inside([a + o for a, o in zip(p, s)]) and
                         inside([b + o for b, o in zip(q, s)])
                         for p, q in pairs for s in offsets)
            assert _limits.conv_terms(size, filt, diagonal=diagonal) == direct


def test_limit_table_lists_rows_with_a_limit(bench, monkeypatch):
    """Rows that carry a limit appear in the limit table with their time over it and their
    ratio to neural-tangents; rows without one do not; a case's limit adds its parts at the
    measured rates."""
    import _limits

    monkeypatch.setitem(_limits._RATES, "float32", (100.0, 10.0, 2.0))
    got = _limits.limit("float32", matmul_flops=2e9, elementwise_flops=1e9, write_bytes=4e9)
    assert got["limit_s"] == pytest.approx(2e9 / 100e9 + 1e9 / 10e9 + 4e9 / 2e9)
    assert "2 GFLOP of matrix products at 100 GFLOP/s" in got["limit_counts"]
    saved = {"kernels": {"rows": [
        {"id": "with", "nt": {"median_s": 2.0},
         "ntkgp": {"median_s": 0.5, "limit_s": 0.25, "limit_counts": "counted here"}},
        {"id": "without", "nt": {"median_s": 2.0}, "ntkgp": {"median_s": 0.5}}]}}
    lines = _limits.limit_table(saved)
    rows = [ln for ln in lines if ln.startswith("| kernels")]
    assert rows == ["| kernels | with | 0.25 | 0.5 | 2 | 0.25 | counted here |"]
    assert _limits.limit_table({"kernels": {"rows": saved["kernels"]["rows"][1:]}}) == []
