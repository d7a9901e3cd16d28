"""scikit-learn's own estimator checks, for every ntkgp estimator."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from ntkgp.estimator import NNGPClassifier, NNGPRegressor, NTKClassifier, NTKRegressor
from tests.conftest import X64

# Written reasons for the checks an estimator is expected to fail.
_PROBA_REASON = (
    "predict_proba uses each point's own predictive variance (P(argmax = c) under the model's "
    "Gaussian), while decision_function is the plain regression output of Arora et al.; "
    "where variances differ between points the two order points differently by design.")


def expected_failures(estimator):
    if isinstance(estimator, (NTKClassifier, NNGPClassifier)):
        return {"check_decision_proba_consistency": _PROBA_REASON}
    return {}


# CI runs the checks with the hyperparameters as given (optimizer=None), each estimator in one
# of the two dtype modes (each check fits on new shapes, so the checks are compile-bound: about
# 35 s per estimator); the slow variant runs the default estimators (optimizer on) in both.
FAST = ([NTKRegressor(optimizer=None), NNGPClassifier(optimizer=None)] if X64 else
        [NNGPRegressor(optimizer=None), NTKClassifier(optimizer=None)])
DEFAULT = [NTKRegressor(), NNGPRegressor(), NTKClassifier(), NNGPClassifier(depth=2)]


@parametrize_with_checks(FAST, expected_failed_checks=expected_failures)
def test_sklearn_checks(estimator, check):
    check(estimator)


@pytest.mark.slow
@parametrize_with_checks(DEFAULT, expected_failed_checks=expected_failures)
def test_sklearn_checks_default(estimator, check):
    check(estimator)
