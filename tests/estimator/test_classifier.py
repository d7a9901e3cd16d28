"""NTKClassifier / NNGPClassifier: one-hot kernel regression and argmax probabilities."""

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.datasets import load_iris

from ntkgp._src.estimator.classifier import argmax_probabilities
from ntkgp.estimator import NNGPClassifier, NTKClassifier, NTKRegressor
from tests.conftest import DTYPE, RTOL, rel_err


@pytest.fixture
def iris():
    x, y = load_iris(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(DTYPE)
    idx = np.random.default_rng(0).permutation(len(y))
    return x[idx[:100]], y[idx[:100]], x[idx[100:]], y[idx[100:]]


def test_outputs_are_one_hot_regression(iris):
    x, y, xt, _ = iris
    clf = NTKClassifier(depth=2, optimizer=None).fit(x, y)
    onehot = np.eye(3)[y] - 1 / 3
    reg = NTKRegressor(depth=2, optimizer=None, normalize_y=False).fit(x, onehot)
    assert rel_err(clf.decision_function(xt), reg.predict(xt)) < RTOL
    np.testing.assert_array_equal(clf.predict(xt), np.argmax(reg.predict(xt), 1))


@pytest.mark.parametrize("cls", [NTKClassifier, NNGPClassifier])
def test_labels_of_any_type_and_probabilities(iris, cls):
    x, y, xt, yt = iris
    names = np.array(["setosa", "versicolor", "virginica"], dtype=object)[y]
    clf = cls(depth=2).fit(x, names)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    assert clf.score(xt, names[:0].tolist() + list(np.array(
        ["setosa", "versicolor", "virginica"], dtype=object)[yt])) > 0.9
    p = clf.predict_proba(xt)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-9)
    np.testing.assert_array_equal(clf.classes_[np.argmax(p, 1)], clf.predict(xt))
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(xt)), p, rtol=1e-9)


def test_binary_decision_function_and_probability(iris):
    x, y, xt, _ = iris
    keep, keep_t = y < 2, slice(None)
    clf = NNGPClassifier(depth=1, optimizer=None, diag_reg=0.1).fit(x[keep], y[keep] == 1)
    d = clf.decision_function(xt[keep_t])
    assert d.shape == (len(xt),)
    np.testing.assert_array_equal(clf.predict(xt), d > 0)
    # two outputs with a common std s: P(class 1) = Phi((mu1 - mu0) / (s sqrt 2))
    mean, var = clf._latent(xt, var=True)
    ref = norm.cdf((mean[:, 1] - mean[:, 0]) / np.sqrt(2 * var))
    np.testing.assert_allclose(clf.predict_proba(xt)[:, 1], ref, atol=1e-6)


def test_argmax_probabilities_against_monte_carlo():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=(5, 4))
    std = np.array([0.1, 0.5, 1.0, 2.0, 5.0])
    f = mean[:, None, :] + std[:, None, None] * rng.normal(size=(5, 200_000, 4))
    mc = np.stack([(f.argmax(-1) == c).mean(1) for c in range(4)], 1)
    np.testing.assert_allclose(argmax_probabilities(mean, std), mc, atol=5e-3)


def test_one_class_is_an_error(iris):
    x, _, _, _ = iris
    with pytest.raises(ValueError, match="at least 2 classes; got only one class"):
        NTKClassifier(optimizer=None).fit(x, np.zeros(len(x)))
    with pytest.raises(ValueError, match="Unknown label type"):
        NTKClassifier(optimizer=None).fit(x, np.linspace(0, 1, len(x)))


def test_nearby_training_sizes_share_one_compiled_fit(iris):
    """Data sets a few rows apart (the folds of a cross-validation) are padded to one size for
    the marginal-likelihood fit, so its program compiles once; the fit still sees only the
    data (the same hyperparameters as on the unpadded size)."""
    from ntkgp._src.estimator.network import lml_function
    from ntkgp._src.estimator.padding import padded_rows

    x, y, _, _ = iris
    width = 4097  # an architecture no other test uses: a fresh cache
    names = ("W_std", "b_std", "diag_reg")
    value_and_grad = lml_function("ntk", "relu", 2, "ntk", width, None, names)[1]
    sizes = [97, 98, 100]
    assert len({padded_rows(n) for n in sizes}) == 1 and padded_rows(97) > 97
    fits = [NTKClassifier(depth=2, width=width).fit(x[:n], y[:n]) for n in sizes]
    assert value_and_grad._cache_size() == 1
    moved = [np.max(np.abs(f.theta_ - np.log([1.5, 0.05, 1e-2]))) for f in fits]
    assert min(moved) > 0.1  # each fit moved from its start
    # the padded program's value is that of the data alone (the unpadded program's)
    padded, _ = fits[1].log_marginal_likelihood(fits[1].theta_, eval_gradient=True)
    np.testing.assert_allclose(padded, fits[1].log_marginal_likelihood(fits[1].theta_),
                               rtol=10 * RTOL)


def test_depth_auto_takes_the_depth_of_the_largest_evidence(iris, monkeypatch, tmp_path):
    """depth='auto' fits every depth of AUTO_DEPTHS on the same rows and keeps the one with
    the largest maximized evidence: the same model as fitting that depth alone. The saved
    model remembers the chosen depth."""
    from ntkgp._src.estimator import base
    from ntkgp.estimator import load_model, save_model

    monkeypatch.setattr(base, "AUTO_DEPTHS", (1, 3))  # two depths keep the test short
    x, y, xt, _ = iris
    alone = {d: NTKClassifier(depth=d, random_state=0).fit(x, y) for d in (1, 3)}
    auto = NTKClassifier(depth="auto", random_state=0).fit(x, y)
    want = max(alone, key=lambda d: alone[d].log_marginal_likelihood_value_)
    assert auto.depth_ == want and alone[want].depth_ == want
    assert sorted(auto.evidence_by_depth_) == [1, 3]
    for d in (1, 3):
        np.testing.assert_allclose(auto.evidence_by_depth_[d],
                                   alone[d].log_marginal_likelihood_value_, rtol=10 * RTOL)
    assert abs(auto.evidence_by_depth_[1] - auto.evidence_by_depth_[3]) > 1.0  # a real choice
    assert rel_err(auto.predict_proba(xt), alone[want].predict_proba(xt)) < 10 * RTOL
    path = str(tmp_path / "auto.npz")
    save_model(auto, path)
    loaded = load_model(path)
    assert loaded.depth == "auto" and loaded.depth_ == want
    save_model(alone[1], str(tmp_path / "one.npz"))
    assert load_model(str(tmp_path / "one.npz")).depth_ == 1
    assert rel_err(loaded.predict_proba(xt), auto.predict_proba(xt)) < 10 * RTOL


def test_activation_auto_takes_the_activation_of_the_largest_evidence(iris, monkeypatch,
                                                                    tmp_path):
    """activation='auto' fits every activation of AUTO_ACTIVATIONS and keeps the largest
    maximized evidence (the same model as that activation alone); with depth='auto' too, every
    pair. The saved model remembers the chosen activation."""
    from ntkgp._src.estimator import base
    from ntkgp.estimator import load_model, save_model

    monkeypatch.setattr(base, "AUTO_ACTIVATIONS", ("relu", "erf"))
    x, y, xt, _ = iris
    alone = {a: NTKClassifier(a, depth=2, random_state=0).fit(x, y) for a in ("relu", "erf")}
    auto = NTKClassifier("auto", depth=2, random_state=0).fit(x, y)
    want = max(alone, key=lambda a: alone[a].log_marginal_likelihood_value_)
    assert auto.activation_ == want and alone[want].activation_ == want
    assert sorted(auto.evidence_by_architecture_) == [("erf", 2), ("relu", 2)]
    for a in ("relu", "erf"):
        np.testing.assert_allclose(auto.evidence_by_architecture_[a, 2],
                                   alone[a].log_marginal_likelihood_value_, rtol=10 * RTOL)
    assert abs(auto.evidence_by_architecture_["relu", 2] -
               auto.evidence_by_architecture_["erf", 2]) > 1.0  # a real choice
    assert rel_err(auto.predict_proba(xt), alone[want].predict_proba(xt)) < 10 * RTOL
    path = str(tmp_path / "auto.npz")
    save_model(auto, path)
    loaded = load_model(path)
    assert loaded.activation == "auto" and loaded.activation_ == want
    assert rel_err(loaded.predict_proba(xt), auto.predict_proba(xt)) < 10 * RTOL

    monkeypatch.setattr(base, "AUTO_DEPTHS", (1, 3))
    both = NTKClassifier("auto", depth="auto", random_state=0).fit(x, y)
    grid = both.evidence_by_architecture_
    assert sorted(grid) == [("erf", 1), ("erf", 3), ("relu", 1), ("relu", 3)]
    assert (both.activation_, both.depth_) == max(grid, key=grid.get)
    assert both.evidence_by_depth_ == {d: grid[both.activation_, d] for d in (1, 3)}
    both.set_params(activation="relu", depth=2).fit(x, y)  # a refit forgets the comparison
    assert not hasattr(both, "evidence_by_architecture_")
    assert not hasattr(both, "evidence_by_depth_")


def test_auto_architecture_needs_the_estimators_own_network(iris):
    from ntkgp import nn

    x, y, _, _ = iris
    net = nn.serial(nn.Dense(1), nn.Relu(), nn.Dense(1))
    with pytest.raises(ValueError, match="depth='auto' chooses the depth"):
        NTKClassifier(depth="auto", network=net).fit(x, y)
    with pytest.raises(ValueError, match="activation='auto' chooses the activation"):
        NTKClassifier("auto", network=net).fit(x, y)
    with pytest.raises((ValueError, TypeError), match="depth"):
        NTKClassifier(depth="deep").fit(x, y)
    with pytest.raises(ValueError, match=r"`activation` must be one of .* or 'auto'; got 'tanh'"):
        NTKClassifier("tanh").fit(x, y)
