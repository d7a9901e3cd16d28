"""Progress bars (tqdm) that stay quiet in tests and when output is not wanted.

Bars are time-based: one appears only once its work has taken `DELAY` seconds, so quick calls
print nothing and anything longer shows where it is. ``NTKGP_PROGRESS=0`` silences them all.
"""

from __future__ import annotations

import os

#: seconds of work before a bar appears
DELAY = 2.0


def progress_bar(iterable, total=None, desc=None, enabled=True):
    """``tqdm(iterable)`` when ``enabled`` and ``NTKGP_PROGRESS`` is not ``0``; else as is."""
    if not enabled or os.environ.get("NTKGP_PROGRESS", "1") == "0":
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, total=total, desc=desc, leave=False, delay=DELAY)


class _Quiet:
    def update(self, n=1):
        pass

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass


def progress_counter(total, desc=None, enabled=True):
    """A bar advanced by hand (``.update(n)``, ``.close()``): ``tqdm`` when enabled and
    ``NTKGP_PROGRESS`` is not ``0``, else an object whose methods do nothing."""
    if not enabled or os.environ.get("NTKGP_PROGRESS", "1") == "0":
        return _Quiet()
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, leave=False, delay=DELAY)
