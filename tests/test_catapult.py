"""Where the tangent-space picture breaks. Large learning rates: below the critical step the net
and its linearization agree; above it the linearization diverges while the net catapults (its
NTK's top eigenvalue falls) and converges; far above, both diverge. The laziness scale: large
alpha keeps the net its linearization, small alpha does not."""

import json

import numpy as np
import pytest

from ntkgp import experiments, nn
from ntkgp._src.cli.main import main
from tests.conftest import DTYPE, ONLY_X64_PASS, X64


def _net(width):
    return nn.serial(nn.Dense(width, W_std=1.5, b_std=0.1), nn.Relu(),
                     nn.Dense(1, W_std=1.5, b_std=0.1))


@ONLY_X64_PASS  # the phases, not rounding: one pass
def test_three_phases():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((48, 5)).astype(DTYPE)
    y = (np.sin(x[:, :1]) + 0.3 * x[:, 1:2]).astype(DTYPE)
    res = experiments.learning_rate_sweep(_net, 1024, x[:32], y[:32], x[32:], y[32:],
                                          factors=[0.5, 1.5, 4.0], steps=200,
                                          show_progress=False)
    lazy, cat, far = res.rows
    assert not lazy.diverged_net and not lazy.diverged_linearized
    assert abs(lazy.lambda_max[-1] - 1) < 0.05 and lazy.dist_net_linearized[-1] < 0.1
    assert cat.diverged_linearized and not cat.diverged_net
    assert max(v for v in cat.loss_net if v is not None) > cat.loss_net[0]  # the catapult
    assert cat.lambda_max[-1] < 0.8 and cat.test_rmse_net is not None
    assert far.diverged_net and far.diverged_linearized and far.test_rmse_net is None
    assert res.critical_learning_rate > 0
    back = experiments.RateResult.from_json(res.to_json())
    assert back.rows[1].lambda_max == cat.lambda_max
    json.loads(res.to_json())
    with pytest.raises(ValueError, match="positive multiples"):
        experiments.learning_rate_sweep(_net, 8, x, y, x, y, factors=[0.0])


@pytest.mark.skipif(not X64, reason="end-to-end CLI run, once per CI (the float64 pass)")
def test_cli_lr_factors(tmp_path, capsys):
    args = ["compare", "--widths", "512", "--steps", "60", "--n-train", "60", "--n-test", "20",
            "--lr-factors", "0.5,1.5", "--quiet", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "eta_c" in out and "λmax" in out
    res = experiments.RateResult.from_json((tmp_path / "catapult.json").read_text())
    assert [r.factor for r in res.rows] == [0.5, 1.5] and res.width == 512
    pytest.importorskip("matplotlib")
    assert (tmp_path / "catapult.png").read_bytes()[:4] == b"\x89PNG"
    assert main(args[:-5] + ["--lr-factors", "1", "--loss", "xent", "--dataset", "iris",
                             "--out", str(tmp_path)]) == 2
    assert "full-batch gradient descent on the squared" in capsys.readouterr().err


@ONLY_X64_PASS
def test_laziness_scale():
    """Chizat et al.: the same tangent-space dynamics at every alpha, but large alpha keeps
    the net its linearization and small alpha does not (a smooth activation: ReLU's kinks
    slow the approach, see README)."""

    def erf_net(width):
        return nn.serial(nn.Dense(width, W_std=1.5, b_std=0.1), nn.Erf(),
                         nn.Dense(1, W_std=1.5, b_std=0.1))

    rng = np.random.default_rng(1)
    x = rng.standard_normal((36, 4)).astype(DTYPE)
    y = (np.sin(x[:, :1]) + 0.5 * x[:, 1:2]).astype(DTYPE)
    res = experiments.laziness_sweep(erf_net, 256, x[:24], y[:24], x[24:], y[24:],
                                     alphas=[0.1, 1.0, 10.0], seeds=2, steps=60,
                                     show_progress=False)
    small, _, large = res.rows
    assert large.dist_net_linearized < 0.2 * small.dist_net_linearized
    assert large.ntk_drift < 0.2 * small.ntk_drift
    assert res.slopes["dist_net_linearized"] < -0.7
    assert res.alphas == [0.1, 1.0, 10.0]
    back = experiments.LazinessResult.from_json(res.to_json())
    assert back.rows[2].dist_net_linearized == large.dist_net_linearized
    with pytest.raises(ValueError, match="positive scales"):
        experiments.laziness_sweep(_net, 8, x, y, x, y, alphas=[-1.0])


@pytest.mark.skipif(not X64, reason="end-to-end CLI run, once per CI (the float64 pass)")
def test_cli_alphas(tmp_path, capsys):
    args = ["compare", "--arch", "erf-x1", "--widths", "256", "--steps", "20", "--seeds", "1",
            "--n-train", "40", "--n-test", "20", "--quiet", "--out", str(tmp_path)]
    assert main(args + ["--alphas", "0.1,10"]) == 0
    out = capsys.readouterr().out
    assert "laziness scale alpha at width 256" in out and "log-log slopes vs alpha" in out
    res = experiments.LazinessResult.from_json((tmp_path / "laziness.json").read_text())
    assert res.alphas == [0.1, 10.0] and res.width == 256
    assert res.rows[1].dist_net_linearized < res.rows[0].dist_net_linearized
    png = (tmp_path / "laziness.png").exists()
    for extra, message in ((["--alphas", "1", "--lr-factors", "1"], "pass one of"),
                           (["--alphas", "1", "--optimizer", "momentum"],
                            "full-batch gradient descent")):
        assert main(args + extra) == 2
        assert message in capsys.readouterr().err
    pytest.importorskip("matplotlib")
    assert png and (tmp_path / "laziness.png").read_bytes()[:4] == b"\x89PNG"
