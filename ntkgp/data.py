"""Datasets bundled with installed packages; ntkgp never downloads data."""

from ntkgp._src.data import DATASETS as DATASETS
from ntkgp._src.data import load as load
