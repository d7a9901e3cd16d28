"""Progress bars (tqdm) that stay quiet in tests and when output is not wanted."""

from __future__ import annotations

import os


def progress_bar(iterable, total=None, desc=None, enabled=True):
    """``tqdm(iterable)`` when ``enabled`` and ``NTKGP_PROGRESS`` is not ``0``; else as is."""
    if not enabled or os.environ.get("NTKGP_PROGRESS", "1") == "0":
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc, leave=False)
