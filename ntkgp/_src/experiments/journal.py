"""An append-only journal of finished chunks of training runs, so that a long sampling run
killed or interrupted loses at most the chunk in flight.

One JSON object per line: the settings' fingerprint, the chunk's index, its payload and the
SHA-256 of (fingerprint, index, payload). Reading checks every line: a changed line is an
error (the file was edited or damaged), while a last line cut short without its newline (the
process was killed while appending) is dropped with a warning, and that chunk runs again.
Nothing in the file is executed: it is parsed as JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings


class JournalError(ValueError):
    """A journal line does not match its checksum or its settings."""


def fingerprint(settings: dict) -> str:
    """A short hash naming a set of settings (JSON-serializable)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _digest(fp: str, index: int, payload) -> str:
    text = json.dumps([fp, index, payload], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


class Journal:
    """Finished chunks of one set of settings in ``folder/runs-<fingerprint>.jsonl``.

    Args:
        folder: where the journal lives (created if missing).
        settings: everything that determines the runs (problem, network, optimizer, seed,
            chunk size...); its fingerprint names the file, so other settings never mix in.
    """

    def __init__(self, folder: str, settings: dict):
        self.fp = fingerprint(settings)
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, f"runs-{self.fp}.jsonl")

    def read(self) -> dict:
        """``{chunk index: payload}`` of the finished chunks.

        Raises:
            JournalError: a complete line that fails its checksum or names other settings.
        """
        if not os.path.exists(self.path):
            return {}
        with open(self.path, "rb") as fh:
            data = fh.read()
        lines = data.split(b"\n")
        cut = lines.pop()   # after the last newline: empty unless the last append was cut
        if cut:
            warnings.warn(f"{self.path}: the last line was cut short (a run killed while "
                          "writing); that chunk runs again.", RuntimeWarning, stacklevel=2)
            self._truncate(len(data) - len(cut))
        done = {}
        for n, line in enumerate(lines, 1):
            try:
                rec = json.loads(line)
                ok = (rec["fingerprint"] == self.fp and
                      rec["sha256"] == _digest(self.fp, rec["chunk"], rec["payload"]))
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                raise JournalError(f"{self.path}, line {n}: does not match its checksum or "
                                   "these settings (the file was changed). Move it away to "
                                   "start these runs afresh.")
            done[int(rec["chunk"])] = rec["payload"]
        return done

    def _truncate(self, size: int) -> None:
        with open(self.path, "r+b") as fh:
            fh.truncate(size)

    def append(self, index: int, payload) -> None:
        """Add a finished chunk (one line, flushed and synced before returning)."""
        rec = {"fingerprint": self.fp, "chunk": int(index), "payload": payload,
               "sha256": _digest(self.fp, int(index), payload)}
        with open(self.path, "ab") as fh:
            fh.write((json.dumps(rec, sort_keys=True) + "\n").encode())
            fh.flush()
            os.fsync(fh.fileno())
