"""Width sweeps in the NTK, standard and maximal-update (μP) parameterizations: the first two
become lazy as the width grows (the standard one at a step that shrinks like 1/width), μP keeps
learning features (its NTK moves by the same amount at every width)."""

import json

import numpy as np
import pytest

from ntkgp import compare, experiments, nn
from ntkgp._src.cli.main import main
from tests.conftest import DTYPE, ONLY_X64_PASS


def _net(width, parameterization="ntk"):
    return nn.serial(nn.Dense(width, W_std=1.5, b_std=0.1, parameterization=parameterization),
                     nn.Erf(),
                     nn.Dense(1, W_std=1.5, b_std=0.1, parameterization=parameterization))


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((36, 4)).astype(DTYPE)
    y = (np.sin(x[:, :1]) + 0.5 * x[:, 1:2]).astype(DTYPE)
    return x[:24], y[:24], x[24:], y[24:]


@ONLY_X64_PASS
def test_mup_keeps_learning_features_while_ntk_and_standard_become_lazy():
    sweeps = experiments.parameterization_sweep(_net, [64, 1024], *_data(), seeds=2,
                                                steps=60, show_progress=False)
    assert list(sweeps) == ["ntk", "standard", "mup"]
    ntk, std, mup = (sweeps[p].rows for p in sweeps)
    # lazy: the NTK and the distance to the linearization fall with the width
    for rows in (ntk, std):
        assert rows[1].ntk_drift < 0.3 * rows[0].ntk_drift
        assert rows[1].dist_net_linearized < 0.2 * rows[0].dist_net_linearized
    # μP: the NTK moves by about as much at every width, far more than in the lazy ones
    assert mup[1].ntk_drift > 0.7 * mup[0].ntk_drift
    assert mup[1].ntk_drift > 0.3 and mup[1].ntk_drift > 10 * ntk[1].ntk_drift
    assert mup[1].dist_net_linearized > 3 * ntk[1].dist_net_linearized
    # standard: the kernel and the step belong to each width; the step shrinks like 1/width
    assert all(r.learning_rate is not None and r.test_rmse_ntk is not None for r in std)
    ratio = std[0].learning_rate / std[1].learning_rate
    assert 8 < ratio < 24, ratio
    assert sweeps["standard"].learning_rate == std[0].learning_rate
    assert ntk[0].learning_rate is None and sweeps["mup"].rows[0].ensemble_chi2 is None
    back = experiments.sweeps_from_json(experiments.sweeps_to_json(sweeps))
    assert back["mup"].parameterization == "mup"
    assert back["standard"].rows[1].learning_rate == std[1].learning_rate


@ONLY_X64_PASS
def test_mup_is_the_laziness_scale_inverse_sqrt_width():
    """Centered, μP trains exactly alpha (f - f0) with alpha = width^-1/2 on loss / alpha^2."""
    data = _data()
    kw = dict(seeds=1, steps=20, centered=True, show_progress=False)
    mup = compare.width_sweep(_net, [256], *data, parameterization="mup", **kw)
    lazy = compare.width_sweep(_net, [256], *data, alpha=256 ** -0.5, **kw)
    np.testing.assert_array_equal(mup.rows[0].example_net, lazy.rows[0].example_net)
    assert mup.rows[0].ntk_drift == lazy.rows[0].ntk_drift


def test_errors():
    data = _data()
    with pytest.raises(ValueError, match="parameterization='standard'"):
        compare.width_sweep(lambda w: _net(w, "standard"), [8, 64], *data,
                            show_progress=False)
    with pytest.raises(ValueError, match="drop one of them"):
        compare.width_sweep(_net, [8], *data, alpha=2.0, parameterization="mup")
    with pytest.raises(ValueError, match="parameterization"):
        compare.width_sweep(_net, [8], *data, parameterization="mean_field")
    with pytest.raises(ValueError, match="unknown parameterization 'sp'"):
        experiments.parameterization_sweep(_net, [8], *data, parameterizations=["sp"])


@ONLY_X64_PASS
def test_cli_parameterizations(tmp_path, capsys):
    args = ["compare", "--arch", "erf-x1", "--widths", "64,256", "--steps", "20", "--seeds",
            "1", "--n-train", "40", "--n-test", "20", "--quiet", "--out", str(tmp_path)]
    assert main(args + ["--parameterization", "ntk,mup"]) == 0
    out = capsys.readouterr().out
    assert "slopes vs width" in out and "mup" in out
    sweeps = experiments.sweeps_from_json((tmp_path / "parameterizations.json").read_text())
    assert list(sweeps) == ["ntk", "mup"] and [r.width for r in sweeps["mup"].rows] == [64, 256]
    png = (tmp_path / "parameterizations.png").exists()
    assert main(args + ["--parameterization", "standard"]) == 0
    res = compare.SweepResult.from_json((tmp_path / "compare.json").read_text())
    assert res.parameterization == "standard" and res.rows[1].learning_rate < res.learning_rate
    assert json.loads((tmp_path / "compare.json").read_text())["info"]["parameterization"] \
        == "standard"
    capsys.readouterr()
    with pytest.raises(SystemExit):  # argparse's usage error
        main(args + ["--parameterization", "ntk,ntk"])
    assert "each once" in capsys.readouterr().err
    for extra, message in ((["--parameterization", "ntk,mup", "--alphas", "1"], "pass one of"),
                           (["--parameterization", "mup", "--lr-factors", "1"],
                            "drop --parameterization")):
        assert main(args + extra) == 2
        assert message in capsys.readouterr().err
    pytest.importorskip("matplotlib")
    assert png and (tmp_path / "parameterizations.png").read_bytes()[:4] == b"\x89PNG"
