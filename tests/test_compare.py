"""ntkgp.compare.width_sweep: finite nets approach their linearization and the closed forms."""

import math

import numpy as np
import pytest

from ntkgp import compare, nn
from tests.conftest import DTYPE


def make_net(width):
    return nn.serial(nn.Dense(width, W_std=1.5, b_std=0.1), nn.Relu(),
                     nn.Dense(width, W_std=1.5, b_std=0.1), nn.Relu(),
                     nn.Dense(1, W_std=1.5, b_std=0.1))


def _data(n, m):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n + m, 4)).astype(DTYPE)
    y = (np.sin(x[:, :1]) + 0.5 * x[:, 1:2]).astype(DTYPE)
    return x[:n], y[:n], x[n:], y[n:]


def _sweep(widths, seeds, steps, n=24, m=12):
    x, y, xt, yt = _data(n, m)
    return compare.width_sweep(make_net, widths, x, y, xt, yt, seeds=seeds, steps=steps,
                               show_progress=False)


@pytest.fixture(scope="module")
def small():
    return _sweep([64, 1024], seeds=3, steps=60)


def test_sweep_runs_and_round_trips_through_json(small):
    r = small
    assert [row.width for row in r.rows] == [64, 1024]
    assert math.isclose(r.t, r.learning_rate * 60)
    for row in r.rows:
        for v in (row.dist_net_linearized, row.dist_net_closed_form, row.param_change,
                  row.ntk_drift, row.test_rmse_net, row.ensemble_chi2):
            assert np.isfinite(v) and v >= 0
    back = compare.SweepResult.from_json(r.to_json())
    assert back == r


def _check_kernel_regime(r, max_ratio):
    first, last = r.rows[0], r.rows[-1]
    for name in ("dist_net_linearized", "dist_net_closed_form", "param_change", "ntk_drift"):
        assert getattr(last, name) < max_ratio * getattr(first, name), (name, r.rows)


def test_distances_fall_with_width_reduced(small):
    """CI version of the slow test: 16x width, distances at most 0.6x (theory 0.25x)."""
    _check_kernel_regime(small, 0.6)


@pytest.mark.slow
def test_distance_slopes_are_about_minus_one_half():
    r = _sweep([64, 256, 1024], seeds=8, steps=300, n=100, m=100)
    _check_kernel_regime(r, 0.4)
    for name in ("dist_net_linearized", "dist_net_closed_form"):
        assert -0.65 <= r.slopes[name] <= -0.35, r.slopes
    # the ensemble over seeds is a draw of the predicted Gaussian
    for row in r.rows:
        assert 0.3 <= row.ensemble_chi2 <= 3.0 and 0.6 <= row.ensemble_var_ratio <= 1.6, row


def test_bad_arguments():
    x, y, xt, yt = _data(8, 4)
    with pytest.raises(ValueError, match="`widths` must be a positive integer"):
        compare.width_sweep(make_net, [0, 8], x, y, xt, yt)
    with pytest.raises(ValueError, match=r"`y_test` must have 4 rows"):
        compare.width_sweep(make_net, [8], x, y, xt, yt[:2])
