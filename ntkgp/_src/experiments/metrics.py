"""Distances, errors and fitted slopes shared by the width experiments."""

from __future__ import annotations

import numpy as np


def rel(a, b) -> float:
    r""":math:`\|a - b\| / \|b\|` over all entries, in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def rmse(a, b) -> float:
    """Root mean squared difference over all entries."""
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def rms(values) -> float:
    """Root mean square of a list (the average of distances over seeds)."""
    return float(np.sqrt(np.mean(np.square(values))))


def accuracy(f, y) -> float:
    """Fraction of rows where the largest output is the target's class (one-hot or centered
    one-hot targets)."""
    f, y = np.asarray(f), np.asarray(y)
    return float(np.mean(np.argmax(f, -1) == np.argmax(y, -1)))


def slope(widths, values):
    """Least-squares slope of log(value) against log(width); ``None`` with fewer than two
    widths or a value that is not positive."""
    if len(widths) < 2 or any(v is None or not v > 0 for v in values):
        return None
    w, v = np.log(np.asarray(widths, np.float64)), np.log(np.asarray(values, np.float64))
    return float(np.polyfit(w, v, 1)[0])
