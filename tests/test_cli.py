import subprocess
import sys

from ntkgp._src.cli.main import main
from tests.conftest import ONLY_X32_PASS

# argument handling and output of the command line, whose default is float32: one pass
pytestmark = ONLY_X32_PASS


def test_kernel_command_runs(capsys):
    assert main(["kernel", "--n", "40", "--widths", "16", "64", "--mc-points", "8",
                 "--mc-samples", "2", "--depth", "2"]) == 0
    out = capsys.readouterr().out
    assert "analytic kernel (40, 40)" in out and "width" in out


def test_bad_arguments_exit_with_message():
    p = subprocess.run([sys.executable, "-m", "ntkgp.cli", "kernel", "--dataset", "nope"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "unknown dataset 'nope'" in p.stderr


def test_version():
    import ntkgp
    assert ntkgp.__version__
