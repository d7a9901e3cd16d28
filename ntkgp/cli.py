"""The ``ntkgp`` command line."""

from ntkgp._src.cli import main as main

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
