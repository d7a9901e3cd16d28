"""Finite networks against their linearizations and infinite-width closed forms, over widths."""

from ntkgp._src.experiments.compare import SweepResult as SweepResult
from ntkgp._src.experiments.compare import WidthResult as WidthResult
from ntkgp._src.experiments.compare import width_sweep as width_sweep
from ntkgp._src.experiments.plots import plot as plot
