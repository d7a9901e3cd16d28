"""ntkgp.compare.width_sweep: finite nets approach their linearization and the closed forms."""

import math

import numpy as np
import pytest

from ntkgp import compare, nn
from tests.conftest import DTYPE, ONLY_X64_PASS


def make_net(width):
    return nn.serial(nn.Dense(width, W_std=1.5, b_std=0.1), nn.Relu(),
                     nn.Dense(width, W_std=1.5, b_std=0.1), nn.Relu(),
                     nn.Dense(1, W_std=1.5, b_std=0.1))


def make_net1(width):
    """One hidden Erf layer: the cheap network of the fast tests (compiles in a third of the
    time of make_net's two layers)."""
    return nn.serial(nn.Dense(width, W_std=1.5, b_std=0.1), nn.Erf(),
                     nn.Dense(1, W_std=1.5, b_std=0.1))


def _data(n, m):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n + m, 4)).astype(DTYPE)
    y = (np.sin(x[:, :1]) + 0.5 * x[:, 1:2]).astype(DTYPE)
    return x[:n], y[:n], x[n:], y[n:]


def _sweep(widths, seeds, steps, n=24, m=12, net=make_net):
    x, y, xt, yt = _data(n, m)
    return compare.width_sweep(net, widths, x, y, xt, yt, seeds=seeds, steps=steps,
                               show_progress=False)


@pytest.fixture(scope="module")
def small():
    return _sweep([64, 1024], seeds=3, steps=60, net=make_net1)


@ONLY_X64_PASS
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


@ONLY_X64_PASS
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
    with pytest.raises(ValueError, match="`widths` must be an integer >= 1"):
        compare.width_sweep(make_net, [0, 8], x, y, xt, yt)
    with pytest.raises(ValueError, match=r"`y_test` must have 4 rows"):
        compare.width_sweep(make_net, [8], x, y, xt, yt[:2])


@ONLY_X64_PASS
def test_json_is_standard_and_plot_writes_png(small, tmp_path):
    import json
    d = json.loads(small.to_json())  # strict JSON: no NaN
    assert d["rows"][0]["width"] == 64 and len(d["y_test"]) == 12
    assert len(d["rows"][0]["train_loss_net"]) == len(d["curve_steps"])
    pytest.importorskip("matplotlib")
    import matplotlib
    matplotlib.use("Agg")
    path = tmp_path / "sweep.png"
    compare.plot(small, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@ONLY_X64_PASS
def test_training_curves_start_at_the_same_loss(small):
    """At step 0 each net's loss is the closed form's (same initial outputs)."""
    for row in small.rows:
        assert np.isclose(row.train_loss_net[0], row.train_loss_closed_form[0], rtol=1e-4)


@ONLY_X64_PASS
def test_centered_nets_approach_the_deterministic_mean():
    x, y, xt, yt = _data(24, 12)
    r = compare.width_sweep(make_net1, [64, 1024], x, y, xt, yt, seeds=2, steps=40,
                            centered=True, show_progress=False)
    assert r.centered and all(row.ensemble_chi2 is None for row in r.rows)
    _check_kernel_regime(r, 0.6)
    assert r.rows[-1].dist_net_closed_form < 0.1


@ONLY_X64_PASS
@pytest.mark.parametrize("optimizer,batch", [("momentum", None), ("sgd", 8)])
def test_other_optimizers(optimizer, batch):
    """Momentum's closed form is exact, so (b) falls with width; SGD's (a) uses the same
    minibatches for the net and its linearization, so (a) falls too."""
    x, y, xt, yt = _data(24, 12)
    r = compare.width_sweep(make_net1, [64, 1024], x, y, xt, yt, seeds=2, steps=40,
                            optimizer=optimizer, batch_size=batch, show_progress=False)
    first, last = r.rows
    assert last.dist_net_linearized < 0.6 * first.dist_net_linearized
    if optimizer == "momentum":
        assert last.dist_net_closed_form < 0.6 * first.dist_net_closed_form


@ONLY_X64_PASS
def test_cross_entropy_sweep_follows_the_infinite_width_ode():
    """Softmax cross-entropy on three classes: (b) is the function-space ODE from each net's
    own initial outputs; distances fall with width, the ODE is close to the discrete steps,
    accuracies are reported, and the result round-trips through JSON."""
    x, _, xt, _ = _data(30, 15)
    labels = lambda a: (a[:, 0] > 0).astype(int) + (a[:, 1] > 0.5).astype(int)  # noqa: E731
    y, yt = np.eye(3, dtype=DTYPE)[labels(x)], np.eye(3, dtype=DTYPE)[labels(xt)]

    def net(width):
        return nn.serial(nn.Dense(width, W_std=1.5, b_std=0.1), nn.Erf(),
                         nn.Dense(3, W_std=1.5, b_std=0.1))

    r = compare.width_sweep(net, [64, 1024], x, y, xt, yt, seeds=2, steps=40, loss="xent",
                            show_progress=False)
    assert r.loss == "xent" and r.closed_form_floor < 0.02
    first, last = r.rows
    assert last.dist_net_closed_form < 0.6 * first.dist_net_closed_form, r.rows
    assert last.dist_net_linearized < 0.6 * first.dist_net_linearized, r.rows
    for v in (last.test_acc_net, last.test_acc_linearized, last.test_acc_closed_form,
              r.test_acc_ntk, r.test_acc_nngp):
        assert 0 <= v <= 1
    assert r.rows[-1].train_loss_net[-1] < r.rows[-1].train_loss_net[0]
    assert compare.SweepResult.from_json(r.to_json()) == r
    with pytest.raises(ValueError, match="gradient flow"):
        compare.width_sweep(net, [8], x, y, xt, yt, loss="xent", optimizer="momentum")
