"""The ``ntkgp`` command line: what its commands compute and how they fail (the commands with
their own files have their own tests: ``test_cli_compare``, ``test_cli_fit``)."""

import re
import subprocess
import sys

import numpy as np
import pytest

from ntkgp import data, nn
from ntkgp._src.cli.main import build_parser, main
from tests.conftest import ONLY_X32_PASS

# argument handling and output of the command line, whose default is float32: one pass
pytestmark = ONLY_X32_PASS


def test_kernel_command_reports_the_analytic_kernel_and_finite_nets_converging(capsys):
    assert main(["kernel", "--n", "40", "--widths", "16", "1024", "--mc-points", "8",
                 "--mc-samples", "2", "--depth", "2"]) == 0
    out = capsys.readouterr().out
    x = data.load("diabetes")[0][:40].astype(np.float32)
    k = nn.mlp(2, 1, "relu").kernel(x, None)
    diag = re.search(r"mean diag: NNGP ([\d.e+-]+), NTK ([\d.e+-]+)", out)
    assert float(diag[1]) == pytest.approx(float(np.mean(np.diag(k.nngp))), rel=1e-3)
    assert float(diag[2]) == pytest.approx(float(np.mean(np.diag(k.ntk))), rel=1e-3)
    rows = {int(m[1]): (float(m[2]), float(m[3]))
            for m in re.finditer(r"^\s+(\d+)\s+([\d.]+)\s+([\d.]+)", out, re.M)}
    assert sorted(rows) == [16, 1024]
    # 64x wider: errors ~8x smaller in theory; from 2 samples, at least 2x
    assert rows[1024][0] < rows[16][0] / 2 and rows[1024][1] < rows[16][1] / 2


@pytest.mark.parametrize("command", ["compare", "sgd-vs-bayes", "kernel", "fit", "predict"])
def test_every_command_takes_x64(command):
    required = {"fit": ["d.csv", "--target", "y", "--out", "m.npz"],
                "predict": ["m.npz", "d.csv"]}.get(command, [])
    args = build_parser().parse_args([command, *required, "--x64"])
    assert args.x64 is True
    assert build_parser().parse_args([command, *required]).x64 is False


def test_x64_computes_in_float64():
    p = subprocess.run([sys.executable, "-m", "ntkgp.cli", "kernel", "--x64", "--n", "20",
                        "--widths", "8", "--mc-points", "4", "--mc-samples", "1"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "float64" in p.stdout.splitlines()[0]


def test_bad_arguments_exit_with_status_2_and_one_line():
    p = subprocess.run([sys.executable, "-m", "ntkgp.cli", "kernel", "--dataset", "nope"],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "unknown dataset 'nope'" in p.stderr


def test_version():
    import ntkgp
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+)?", ntkgp.__version__)


@ONLY_X32_PASS  # argparse only
def test_help_says_each_default_once():
    """No option's help repeats a default its text already gives, and none shows Python
    values (None, False, [64])."""
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and "compare" in a.choices)
    for name, command in sub.choices.items():
        text = " ".join(command.format_help().split())
        assert "(default: None)" not in text and "(default: False)" not in text, name
        assert "(default: [" not in text, name
        assert not re.search(r"default[^()]*\) \(default", text), name
    compare = " ".join(sub.choices["sgd-vs-bayes"].format_help().split())
    assert "(default: 64)" in compare and "(default: sgd,adam)" in compare
    kernel = " ".join(sub.choices["kernel"].format_help().split())
    assert "shrinks like width^-1/2" in kernel and "(default: 64 256 1024)" in kernel
