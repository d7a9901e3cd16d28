"""`ntkgp fit` / `ntkgp predict` on CSV files."""

import csv

import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_iris

from ntkgp.cli import main
from ntkgp.estimator import load_model
from tests.conftest import ONLY_X32_PASS

# argument handling, files and output of `ntkgp fit`/`predict` (float32 unless --x64): one
# pass
pytestmark = ONLY_X32_PASS


def write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture
def regression_csv(tmp_path):
    x, y = load_diabetes(return_X_y=True)
    header = [f"f{i}" for i in range(x.shape[1])] + ["target"]
    write_csv(tmp_path / "train.csv", header, np.column_stack([x[:80], y[:80]]).tolist())
    # new data: columns in another order, without the target
    write_csv(tmp_path / "new.csv", header[::-1][1:], x[80:90, ::-1].tolist())
    return tmp_path


def read_rows(path):
    with open(path) as fh:
        return list(csv.reader(fh))


def test_fit_and_predict_regression(regression_csv, capsys):
    d = regression_csv
    assert main(["fit", str(d / "train.csv"), "--target", "target", "--out",
                 str(d / "m.npz"), "--depth", "1", "--no-fit"]) == 0
    assert "NTKRegressor" in capsys.readouterr().out
    assert main(["predict", str(d / "m.npz"), str(d / "new.csv"), "--std", "--interval",
                 "0.9", "--out", str(d / "pred.csv")]) == 0
    err = capsys.readouterr().err
    assert "std_latent is the spread of the noise-free function" in err
    assert "90% predictive interval of a new target" in err
    rows = read_rows(d / "pred.csv")
    assert rows[0] == ["prediction", "std_latent", "lower_90", "upper_90"] and len(rows) == 11
    model = load_model(d / "m.npz")
    x, _ = load_diabetes(return_X_y=True)
    np.testing.assert_allclose([float(r[0]) for r in rows[1:]], model.predict(x[80:90]),
                               rtol=1e-6)
    assert all(float(r[1]) > 0 for r in rows[1:])
    lo, hi = model[-1].predict_interval(model[:-1].transform(x[80:90]), 0.9)
    np.testing.assert_allclose([[float(r[2]), float(r[3])] for r in rows[1:]],
                               np.stack([lo, hi], 1), rtol=1e-6)
    # the interval holds the noise: wider than the latent std's interval around the mean
    assert all(float(r[3]) - float(r[2]) > 2 * 1.64 * float(r[1]) for r in rows[1:])


@pytest.mark.parametrize("solver,says", [("cg", "solved by conjugate gradients:"),
                                         ("nystrom", "solved on 128 Nystrom landmarks")])
def test_fit_with_a_matrix_free_solver_saves_a_model_that_predicts(regression_csv, capsys,
                                                                   solver, says):
    d = regression_csv
    assert main(["fit", str(d / "train.csv"), "--target", "target", "--out",
                 str(d / "m.npz"), "--depth", "1", "--no-fit", "--solver", solver,
                 "--n-features", "128"]) == 0
    out = capsys.readouterr().out
    assert says in out
    assert main(["predict", str(d / "m.npz"), str(d / "new.csv"), "--std",
                 "--out", str(d / "pred.csv")]) == 0
    rows = read_rows(d / "pred.csv")
    model = load_model(d / "m.npz")
    assert model[-1].solver_ == solver and len(rows) == 11
    assert all(float(r[1]) > 0 for r in rows[1:])


def test_fit_chooses_the_activation_and_depth(tmp_path, capsys, monkeypatch):
    """--activation auto --depth auto: the pair of the largest evidence, said and saved."""
    from ntkgp._src.estimator import base

    monkeypatch.setattr(base, "AUTO_ACTIVATIONS", ("relu", "erf"))
    monkeypatch.setattr(base, "AUTO_DEPTHS", (1, 2))
    x, y = load_iris(return_X_y=True)
    write_csv(tmp_path / "iris.csv", ["a", "b", "c", "d", "species"],
              [list(map(str, r)) + [str(c)] for r, c in zip(x, y)])
    assert main(["fit", str(tmp_path / "iris.csv"), "--target", "species", "--task",
                 "classification", "--out", str(tmp_path / "iris.npz"), "--activation", "auto",
                 "--depth", "auto"]) == 0
    out = capsys.readouterr().out
    model = load_model(tmp_path / "iris.npz")[-1]  # after the StandardScaler
    assert f"({model.activation_} (auto), depth {model.depth_} (auto))" in out
    assert model.activation_ in ("relu", "erf") and model.depth_ in (1, 2)


def test_fit_and_predict_classification_with_string_labels(tmp_path, capsys):
    x, y = load_iris(return_X_y=True)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    write_csv(tmp_path / "iris.csv", ["a", "b", "c", "d", "species"],
              [list(map(str, r)) + [n] for r, n in zip(x, names)])
    assert main(["fit", str(tmp_path / "iris.csv"), "--target", "species", "--out",
                 str(tmp_path / "iris.npz"), "--mode", "nngp"]) == 0
    out = capsys.readouterr().out
    assert "NNGPClassifier" in out and "training accuracy" in out
    assert main(["predict", str(tmp_path / "iris.npz"), str(tmp_path / "iris.csv"),
                 "--std"]) == 0
    rows = list(csv.reader(capsys.readouterr().out.splitlines()))
    assert rows[0] == ["prediction", "p_setosa", "p_versicolor", "p_virginica"]
    assert np.mean([r[0] == n for r, n in zip(rows[1:], names)]) > 0.9


def test_errors(regression_csv, tmp_path, capsys):
    d = regression_csv
    cases = [
        (["fit", str(d / "train.csv"), "--target", "nope", "--out", str(d / "x.npz")],
         "has no column 'nope'"),
        (["fit", str(d / "missing.csv"), "--target", "t", "--out", str(d / "x.npz")],
         "no CSV file"),
        (["predict", str(d / "missing.npz"), str(d / "new.csv")], "no model file"),
        (["predict", str(d / "train.csv"), str(d / "new.csv")], "is not an ntkgp model file"),
    ]
    np.savez(d / "other.npz", a=np.ones(3))
    cases.append((["predict", str(d / "other.npz"), str(d / "new.csv")],
                  "has no readable model description"))
    write_csv(d / "bad.csv", ["a", "target"], [["1", "2"], ["x", "3"]])
    cases.append((["fit", str(d / "bad.csv"), "--target", "target", "--out",
                   str(d / "x.npz")], "line 3, column 'a': 'x' is not a finite number"))
    for argv, match in cases:
        assert main(argv) == 2
        assert match in capsys.readouterr().err
    main(["fit", str(d / "train.csv"), "--target", "target", "--out", str(d / "m.npz"),
          "--no-fit", "--depth", "1"])
    before = (d / "m.npz").read_bytes()
    assert main(["fit", str(d / "train.csv"), "--target", "target", "--out",
                 str(d / "m.npz")]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert (d / "m.npz").read_bytes() == before  # nothing saved is lost
    write_csv(d / "short.csv", ["f0", "f1"], [["1", "2"]])
    assert main(["predict", str(d / "m.npz"), str(d / "short.csv")]) == 2
    assert "lacks the feature column(s) f2" in capsys.readouterr().err
    assert main(["predict", str(d / "m.npz"), str(d / "new.csv"), "--interval", "95"]) == 2
    assert "`coverage` must be a probability in (0, 1), e.g. 0.95; got 95.0" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["fit", str(d / "train.csv"), "--target", "target", "--out", str(d / "y.npz"),
              "--depth", "deep"])
    assert "expected a number of hidden layers >= 1 or 'auto'; got 'deep'" in \
        capsys.readouterr().err
