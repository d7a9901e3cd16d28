"""Estimators on padded training rows: exactly the predictions and evidence of the data rows,
and a bounded set of compiled programs however many training sizes a process fits."""

import logging
import resource

import jax
import numpy as np
import pytest
from sklearn.datasets import load_diabetes, load_digits

from ntkgp._src.solve.solvers import FactoredSolver
from ntkgp.estimator import NNGPRegressor, NTKClassifier, NTKRegressor
from ntkgp.predict import Posterior
from tests.conftest import ONLY_X64_PASS

X64 = jax.config.read("jax_enable_x64")
RTOL = 1e-10 if X64 else 2e-4


@pytest.fixture(scope="module")
def diabetes():
    x, y = load_diabetes(return_X_y=True)
    dtype = np.float64 if X64 else np.float32
    return ((x - x.mean(0)) / x.std(0)).astype(dtype), ((y - y.mean()) / y.std()).astype(dtype)


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y


@pytest.mark.parametrize("optimizer", [None, "fmin_l_bfgs_b"])
@pytest.mark.parametrize("cls", [NNGPRegressor, NTKRegressor])
def test_padded_posterior_predicts_as_the_data_rows_alone(diabetes, cls, optimizer):
    """101 rows are padded to 104: means, variances, covariances, the noise and the evidence
    equal those of a `Posterior` built on the 101 rows themselves. With the hyperparameters
    fitted, the posterior's kernels and factor are those the fit's program computed at them
    (padded the same way): the same numbers to rounding."""
    from ntkgp._src.estimator.padding import padded_rows

    x, y = diabetes
    assert padded_rows(101) > 101
    model = cls(depth=2, optimizer=optimizer).fit(x[:101], y[:101])
    # a fitted model's factor is its fit's own, not a second factorization
    assert isinstance(model.posterior_.solver, FactoredSolver) == (optimizer is not None)
    assert model.posterior_.x_train.shape[0] == padded_rows(101)
    X, Y = model.X_train_, np.asarray(model.targets_)
    ref = Posterior(model.kernel_, X, Y, mode=model.mode,
                    diag_reg=model.hyperparameters_["diag_reg"])
    xt = x[200:260].astype(X.dtype)
    for got, want in [(model.posterior_.predict(xt, return_var=True),
                       ref.predict(xt, return_var=True)),
                      (model.posterior_.predict(xt[:30], return_cov=True),
                       ref.predict(xt[:30], return_cov=True))]:
        for g, w in zip(got, want):
            np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=RTOL,
                                       atol=RTOL * np.max(np.abs(np.asarray(w))))
    np.testing.assert_allclose(float(model.posterior_.noise), float(ref.noise), rtol=RTOL)
    np.testing.assert_allclose(model.log_marginal_likelihood_value_,
                               float(ref.log_marginal_likelihood()), rtol=RTOL)
    # the estimator's own predictive spread (noise included) is the unpadded one's
    _, std = model.predict(x[200:210], return_std=True, predictive=True)
    want = np.sqrt(np.asarray(ref.as_mode("nngp" if model.mode == "nngp" else "ntkgp")
                              .predict(xt[:10], return_var=True)[1]) + float(ref.noise))
    np.testing.assert_allclose(std, want * model.y_scale_[0], rtol=10 * RTOL)


@pytest.mark.parametrize("cls", [NTKClassifier, NNGPRegressor])
def test_a_saved_fitted_model_predicts_exactly_as_the_fitted_one(diabetes, digits, cls,
                                                                 tmp_path):
    """The fitted model's posterior comes from its fit's last evaluation; a loaded model
    recomputes it from the saved hyperparameters by the same program: the same numbers."""
    from ntkgp.estimator import load_model, save_model

    x, y = digits if cls is NTKClassifier else diabetes
    y = y if cls is NTKClassifier else y.astype(x.dtype)
    model = cls(depth=2).fit(x[:150], y[:150])
    save_model(model, str(tmp_path / "m.npz"))
    loaded = load_model(str(tmp_path / "m.npz"))
    assert loaded.hyperparameters_ == model.hyperparameters_
    assert loaded.log_marginal_likelihood_value_ == model.log_marginal_likelihood_value_
    if cls is NTKClassifier:
        np.testing.assert_array_equal(loaded.predict_proba(x[150:190]),
                                      model.predict_proba(x[150:190]))
    else:
        for a, b in zip(model.predict(x[150:190], return_std=True),
                        loaded.predict(x[150:190], return_std=True)):
            np.testing.assert_array_equal(a, b)


def _compilations(caplog):
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith("Finished XLA compilation")]


@ONLY_X64_PASS  # which programs compile: the same padded shapes in both passes
def test_nearby_training_sizes_compile_nothing_new(digits, caplog):
    """After one fit and prediction, fits and predictions at other training and test sizes of
    the same padded sizes compile no program at all: fit, factor, evidence and prediction all
    run on padded shapes."""
    from ntkgp._src.estimator.padding import padded_rows

    x, y = digits
    sizes = [177, 178, 180, 182, 183]  # one padded size (184): folds of a cross-validation
    tests = [50, 49, 51, 53, 55]  # padded to 56
    assert len({padded_rows(n) for n in sizes}) == 1 and len({padded_rows(m) for m in tests}) == 1
    width = 4099  # an architecture no other test uses

    def fit_and_predict(n, m):
        model = NTKClassifier(depth=2, width=width).fit(x[:n], y[:n])
        return model.predict_proba(x[-m:])

    fit_and_predict(sizes[0], tests[0])
    caplog.clear()
    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        for n, m in zip(sizes[1:], tests[1:]):
            assert fit_and_predict(n, m).shape == (m, 10)
    assert _compilations(caplog) == []


def _map_count():
    try:
        with open("/proc/self/maps") as f:
            return sum(1 for _ in f)
    except OSError:  # not Linux: memory alone
        return 0


@pytest.mark.slow
def test_hundreds_of_fits_of_different_sizes_stay_within_memory(digits):
    """300 fits and predictions at random training sizes from 40 to 400 (every size a
    different shape): once each padded size has been compiled, the next 200 fits add no
    program, and neither the memory maps nor the peak memory keep growing (one compiled set
    per training size used to exhaust the process's memory maps after about 160 fits)."""
    from ntkgp._src.estimator.padding import padded_rows

    x, y = digits
    rng = np.random.default_rng(0)
    sizes = rng.integers(40, 401, size=300)
    first = {}
    for n in sorted(range(40, 401), key=padded_rows):  # one fit per padded size first
        first.setdefault(padded_rows(n), n)
    for n in first.values():
        NTKClassifier(depth=2).fit(x[:n], y[:n]).predict(x[-50:])
    maps, peak = _map_count(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for n in sizes:
        model = NTKClassifier(depth=2).fit(x[:n], y[:n])
        model.predict(x[-int(rng.integers(1, 400)):])
    assert _map_count() < maps + 500
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss < 1.2 * peak + 200_000
