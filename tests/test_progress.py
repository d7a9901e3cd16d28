"""Progress bars are time-based: nothing for quick work, a bar once work has taken DELAY
seconds (estimator fits, tiled kernels), none at all with NTKGP_PROGRESS=0."""

import numpy as np

from ntkgp import batching, nn
from ntkgp._src import progress
from ntkgp.estimator import NNGPRegressor
from tests.conftest import DTYPE, ONLY_X32_PASS

pytestmark = ONLY_X32_PASS  # output handling does not depend on the dtype


def _run_counter(n):
    bar = progress.progress_counter(n, desc="work")
    for _ in range(n):
        bar.update()
    bar.close()


def test_quick_work_prints_nothing_and_slow_work_shows_a_bar(monkeypatch, capsys):
    monkeypatch.setenv("NTKGP_PROGRESS", "1")
    _run_counter(5)  # far below DELAY
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(progress, "DELAY", 0.0)  # as if the work had taken long
    _run_counter(5)
    assert "work" in capsys.readouterr().err
    monkeypatch.setenv("NTKGP_PROGRESS", "0")
    _run_counter(5)
    assert capsys.readouterr().err == ""


def test_estimator_fit_and_tiled_kernel_show_their_progress(monkeypatch, capsys):
    monkeypatch.setenv("NTKGP_PROGRESS", "1")
    monkeypatch.setattr(progress, "DELAY", 0.0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 3)).astype(DTYPE)
    NNGPRegressor(depth=1).fit(x, np.sin(x[:, 0]))
    assert "NNGPRegressor: marginal likelihood evaluations (24 rows)" in capsys.readouterr().err
    net = nn.serial(nn.Dense(1), nn.Relu(), nn.Dense(1))
    k = batching.batch(net.kernel, 8)(x, None, get="nngp")  # 6 tiles: a bar by default now
    assert "kernel tiles" in capsys.readouterr().err
    np.testing.assert_allclose(k, net.kernel(x, None, get="nngp"), rtol=1e-5, atol=1e-6)


def test_disabled_bars_are_silent_whatever_the_delay(monkeypatch, capsys):
    monkeypatch.setenv("NTKGP_PROGRESS", "1")
    monkeypatch.setattr(progress, "DELAY", 0.0)
    for _ in progress.progress_bar(range(3), desc="work", enabled=False):
        pass
    assert capsys.readouterr().err == ""
