"""Datasets that ship inside installed packages (never downloaded)."""

from __future__ import annotations

import numpy as np

DATASETS = ("diabetes", "breast_cancer", "wine", "digits")


def load(name: str = "diabetes", standardize: bool = True):
    """A bundled scikit-learn dataset as float64 arrays ``(x, y)``.

    Args:
        name: one of ``'diabetes'`` (442 x 10 regression), ``'breast_cancer'`` (569 x 30),
            ``'wine'`` (178 x 13), ``'digits'`` (1797 x 64).
        standardize: scale every feature to zero mean and unit variance (and ``y`` too for
            regression).

    Returns:
        ``x`` of shape ``(n, d)`` and ``y`` of shape ``(n,)``.
    """
    import sklearn.datasets as skd
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}.")
    x, y = getattr(skd, f"load_{name}")(return_X_y=True)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if standardize:
        sd = x.std(0)
        x = (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)
        if name == "diabetes":
            y = (y - y.mean()) / y.std()
    return x, y
