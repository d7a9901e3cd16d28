"""The journal of finished chunks of SGD runs: a resumed run equals an uninterrupted one,
changed lines are detected, a line cut short by a kill is dropped and redone."""

import json

import numpy as np
import pytest

from ntkgp import experiments
from ntkgp._src.experiments import sgd_runs
from ntkgp._src.experiments.journal import Journal, JournalError
from tests.conftest import ONLY_X64_PASS


@ONLY_X64_PASS  # files only
def test_round_trip_tampering_and_a_cut_last_line(tmp_path):
    book = Journal(str(tmp_path), {"seed": 0})
    assert book.read() == {}
    book.append(0, {"names": ["0a"], "size": 1})
    book.append(1, {"names": ["ff", "0a"], "size": 2})
    assert book.read() == {0: {"names": ["0a"], "size": 1}, 1: {"names": ["ff", "0a"],
                                                                  "size": 2}}
    assert Journal(str(tmp_path), {"seed": 1}).path != book.path   # other settings, other file
    with open(book.path, "ab") as fh:                             # killed while appending
        fh.write(b'{"chunk": 2, "fingerp')
    with pytest.warns(RuntimeWarning, match="cut short"):
        assert sorted(book.read()) == [0, 1]
    assert open(book.path, "rb").read().endswith(b"}\n")         # the cut line is gone
    lines = open(book.path).read().splitlines()
    rec = json.loads(lines[1])
    rec["payload"]["names"] = ["00", "0a"]                       # a silent change on disk
    with open(book.path, "w") as fh:
        fh.write(lines[0] + "\n" + json.dumps(rec) + "\n")
    with pytest.raises(JournalError, match="line 2"):
        book.read()


@ONLY_X64_PASS
def test_an_interrupted_sampling_resumes_to_the_same_functions(tmp_path, monkeypatch):
    p = experiments.boolean_problem(4, "and_or", n_train=10, seed=0)
    net = experiments.default_net(16)
    kw = dict(runs=48, batch_size=5, chunk=16, max_epochs=200, show_progress=False)
    whole = experiments.sample_sgd_functions(net, p, **kw)
    real, stops = sgd_runs._epoch, []

    def stop_after_two_groups(*args, **kwargs):
        if len(list(tmp_path.glob("runs-*.jsonl"))) and \
                len(next(tmp_path.glob("runs-*.jsonl")).read_text().splitlines()) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sgd_runs, "_epoch", stop_after_two_groups)
    with pytest.raises(KeyboardInterrupt):
        experiments.sample_sgd_functions(net, p, journal=str(tmp_path), **kw)
    (path,) = tmp_path.glob("runs-*.jsonl")
    assert len(path.read_text().splitlines()) == 2              # two groups of runs kept
    monkeypatch.setattr(sgd_runs, "_epoch", real)
    count = sgd_runs._Groups.stopped
    monkeypatch.setattr(sgd_runs._Groups, "stopped",
                        lambda self, *a: (stops.append(a[0]), count(self, *a))[1])
    resumed = experiments.sample_sgd_functions(net, p, journal=str(tmp_path), **kw)
    done = {int(json.loads(line)["chunk"]) for line in path.read_text().splitlines()[:2]}
    assert sorted(stops) == [r for r in range(48) if r // 16 not in done]  # only the rest ran
    assert resumed == whole
    stops.clear()
    again = experiments.sample_sgd_functions(net, p, journal=str(tmp_path), **kw)
    assert stops == [] and again == whole                       # nothing left to run
    assert np.sum(whole.counts) == whole.fitted
