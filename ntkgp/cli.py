"""The ``ntkgp`` command line."""

from ntkgp._src.cli.main import main as main
from ntkgp._src.cli.main import run as run

if __name__ == "__main__":  # pragma: no cover
    run()
