"""`ntkgp compare` end to end on a tiny configuration, and its answers to bad input."""

import json
import subprocess
import sys

import pytest

from ntkgp import compare
from ntkgp._src.cli.main import main
from tests.conftest import X64

TINY = ["compare", "--widths", "16,64", "--seeds", "2", "--steps", "10", "--n-train", "40",
        "--n-test", "20", "--quiet"]


@pytest.mark.skipif(not X64, reason="end-to-end CLI run, once per CI (the float32 pass runs "
                    "the CLI in test_compare_on_a_csv_and_a_classification_set)")
def test_compare_runs_and_writes_json_and_png(tmp_path, capsys):
    """The CLI picks its dtype from --x64, not from the environment: checked here with --x64,
    and the float32 default in the float32 pass below."""
    assert main(TINY + ["--out", str(tmp_path), "--x64"]) == 0
    out = capsys.readouterr().out
    assert "(a) net-lin" in out and "log-log slopes" in out
    assert "float64" in out
    res = compare.SweepResult.from_json((tmp_path / "compare.json").read_text())
    assert [r.width for r in res.rows] == [16, 64] and res.info["dataset"] == "diabetes"
    json.loads((tmp_path / "compare.json").read_text())
    pytest.importorskip("matplotlib")
    assert (tmp_path / "compare.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob("*.tmp*"))


@pytest.mark.skipif(not X64, reason="the CLI computes in float32 without --x64 whatever the "
                    "environment says; one run of this end-to-end test is enough (the float64 "
                    "pass)")
def test_compare_on_a_csv_and_a_classification_set(tmp_path, capsys):
    csv = tmp_path / "d.csv"
    csv.write_text("a,b,y\n" + "\n".join(f"{i % 7},{i % 3},{(i % 5) * 0.5}" for i in range(30)))
    assert main(["compare", "--widths", "16", "--seeds", "2", "--steps", "5", "--dataset",
                 str(csv), "--target", "y", "--out", str(tmp_path / "o"), "--quiet"]) == 0
    assert "float32" in capsys.readouterr().out  # the default, without --x64
    assert main(["compare", "--widths", "16", "--seeds", "2", "--steps", "5", "--dataset",
                 "iris", "--out", str(tmp_path / "i"), "--n-test", "20", "--centered",
                 "--quiet"]) == 0
    res = compare.SweepResult.from_json((tmp_path / "i" / "compare.json").read_text())
    assert len(res.y_test) == 20 * 3  # three classes, one-hot


@pytest.mark.skipif(not X64, reason="float32 in either pass (no --x64): runs once, in the "
                    "float64 pass")
def test_compare_cross_entropy_on_images_with_a_cnn(tmp_path, capsys):
    assert main(["compare", "--dataset", "digits", "--arch", "conv-relu-x1", "--widths",
                 "4", "--seeds", "1", "--steps", "3", "--n-train", "20", "--n-test", "10",
                 "--loss", "xent", "--pool", "2", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "4x4x1" in out and "acc ODE" in out and "cross-entropy ODE" in out
    res = compare.SweepResult.from_json((tmp_path / "compare.json").read_text())
    assert res.loss == "xent" and res.info["arch"] == "conv-relu-x1"
    assert len(res.y_test) == 10 * 10 and sorted(set(res.y_test)) == [0.0, 1.0]


def _csv(tmp_path, text):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("args,message", [
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--arch", "relu512"], "malformed architecture 'relu512'"),
    (["--arch", "tanh-8x2"], "unknown activation 'tanh'"),
    (["--dataset", "iris", "--n-train", "150"], "leaves no test points"),
    (["--optimizer", "sgd"], "needs --batch-size"),
    (["--dataset", "missing.csv", "--target", "y"], "no CSV file"),
    (["--loss", "xent"], "needs a classification dataset"),
    (["--arch", "conv-relu-8x1", "--dataset", "iris"], "needs an image dataset"),
])
def test_bad_input_is_one_clear_line(args, message, capsys, tmp_path):
    assert main(TINY + ["--out", str(tmp_path)] + args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_bad_csvs(tmp_path, capsys):
    no_target = _csv(tmp_path, "a,b\n1,2\n3,4\n")
    assert main(TINY + ["--dataset", no_target, "--target", "y"]) == 2
    assert "has no column 'y'; its columns are a, b" in capsys.readouterr().err
    text = _csv(tmp_path, "a,y\n1,2\nred,4\n")
    assert main(TINY + ["--dataset", text, "--target", "y"]) == 2
    assert "line 3, column 'a': 'red' is not a finite number" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["--widths", "0,64"], "widths must be positive"),
    (["--widths", "a,b"], "widths must be whole numbers"),
    (["--seeds", "-1"], "must be > 0"),
])
def test_bad_numbers_are_argparse_errors(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(TINY + args)
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_no_traceback_from_the_console_script():
    p = subprocess.run([sys.executable, "-m", "ntkgp.cli", "compare", "--arch", "relu-x"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert p.stderr.strip().startswith("ntkgp compare: error: malformed architecture")


@pytest.mark.slow
def test_default_run_shows_the_kernel_regime(tmp_path):
    """The README's run: (a) and (b) fall like width^-1/2 (slopes in [-0.65, -0.35]), the
    parameter change and the kernel drift fall, and at the largest width the nets are within
    a few percent of the closed form from their own init."""
    assert main(["compare", "--out", str(tmp_path), "--quiet"]) == 0
    res = compare.SweepResult.from_json((tmp_path / "compare.json").read_text())
    assert res.widths == [64, 256, 1024, 4096]
    for name in ("dist_net_linearized", "dist_net_closed_form"):
        assert -0.65 <= res.slopes[name] <= -0.35, res.slopes
    assert res.slopes["param_change"] < -0.35 and res.slopes["ntk_drift"] < -0.35
    assert res.rows[-1].dist_net_closed_form < 0.05
    assert all(0.3 < r.ensemble_chi2 < 3 for r in res.rows)


@pytest.mark.skipif(not X64 or sys.platform == "win32", reason="terminal output, the same in "
                    "both passes (the command runs in float32, as a user runs it): once, in "
                    "the float64 pass, on a POSIX pseudo-terminal")
def test_in_a_terminal_the_table_is_printed_once(tmp_path):
    import os
    import pty
    main_fd, term = pty.openpty()  # stdout and stderr on one terminal, as a user runs it
    argv = [a for a in TINY if a != "--quiet"] + ["--out", str(tmp_path)]
    env = dict(os.environ, NTKGP_PROGRESS="1", COLUMNS="200", JAX_ENABLE_X64="0")
    p = subprocess.Popen([sys.executable, "-c", "from ntkgp.cli import run; run()", *argv],
                         stdout=term, stderr=term, env=env, cwd=tmp_path)
    os.close(term)
    chunks = []
    while True:
        try:
            data = os.read(main_fd, 4096)
        except OSError:  # the terminal closed: the process ended
            break
        if not data:
            break
        chunks.append(data)
    assert p.wait(timeout=300) == 0
    text = b"".join(chunks).decode(errors="replace")
    assert text.count("RMSE net") == 1, text  # the header of the rows, once
    assert text.count("log-log slopes") == 1 and "took" in text
