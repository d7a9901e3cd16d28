"""NeuralKernel inside scikit-learn: values, gradients, GPR, KernelRidge, SVC, precomputed."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import WhiteKernel
from sklearn.kernel_ridge import KernelRidge
from sklearn.svm import SVC

from ntkgp import nn
from ntkgp.estimator import NeuralKernel
from tests.conftest import DTYPE, RTOL, needs_x64, rel_err
from tests.helpers import fc


def net(depth, w, b):
    return fc(depth, w, b, nn.Erf)


@pytest.fixture
def x(rng):
    return rng.normal(size=(25, 3)).astype(DTYPE)


@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_values_and_diag(x, kind):
    k = NeuralKernel(kind, "erf", depth=2, W_std=1.3, b_std=0.2)
    ref = np.asarray(net(2, 1.3, 0.2).kernel(x, None, kind))
    assert rel_err(k(x), ref) < RTOL
    assert rel_err(k(x[:5], x), ref[:5]) < RTOL
    assert rel_err(k.diag(x), np.diag(ref)) < RTOL
    assert k.hyperparameters[0].name == "W_std" and not k.is_stationary()
    assert clone(k).get_params() == k.get_params()


@needs_x64
@pytest.mark.parametrize("kind", ["nngp", "ntk"])
def test_gradient_matches_finite_differences(x, kind):
    k = NeuralKernel(kind, "relu", depth=2, W_std=1.3, b_std=0.2)
    _, g = k(x, eval_gradient=True)
    h = 1e-6
    for i in range(2):
        up, down = k.clone_with_theta(k.theta + h * np.eye(2)[i]), \
            k.clone_with_theta(k.theta - h * np.eye(2)[i])
        np.testing.assert_allclose(g[:, :, i], (up(x) - down(x)) / (2 * h), rtol=1e-6,
                                   atol=1e-8)
    fixed = NeuralKernel(kind, b_std=0.0, b_std_bounds="fixed")
    assert fixed(x, eval_gradient=True)[1].shape == (25, 25, 1)


def test_in_gaussian_process_regressor(rng):
    x = rng.normal(size=(60, 2))
    y = np.sin(2 * x[:, 0]) + 0.1 * rng.normal(size=60)
    kernel = NeuralKernel(depth=2) + WhiteKernel(0.1)
    gpr = GaussianProcessRegressor(kernel, optimizer=None).fit(x, y)
    fitted = GaussianProcessRegressor(kernel, normalize_y=True).fit(x, y)
    assert fitted.log_marginal_likelihood_value_ > gpr.log_marginal_likelihood_value_
    assert fitted.score(x, y) > 0.8


def test_kernel_ridge_svc_and_precomputed(rng):
    x = rng.normal(size=(50, 2))
    y = np.sign(x[:, 0] * x[:, 1])
    k = NeuralKernel("ntk", depth=3)
    a = KernelRidge(kernel=k, alpha=1.0).fit(x, y).predict(x[:7])
    b = KernelRidge(kernel="precomputed", alpha=1.0).fit(k(x), y).predict(k(x[:7], x))
    # the same kernel through two code paths (pairwise callable vs one matrix): equal to the
    # rounding of the kernel's dtype amplified by the solve
    assert rel_err(a, b) < 10 * RTOL
    s1 = SVC(kernel=k).fit(x, y)
    s2 = SVC(kernel="precomputed").fit(k(x), y)
    np.testing.assert_array_equal(s1.predict(x), s2.predict(k(x, x)))
    assert s1.score(x, y) > 0.8


def test_bad_arguments(x):
    with pytest.raises(ValueError, match="`kernel` must be 'nngp' or 'ntk'"):
        NeuralKernel("rbf")(x)
    with pytest.raises(ValueError, match="expects X of shape"):
        NeuralKernel()(x[0])
    with pytest.raises(ValueError, match="Gradient can only be evaluated when Y is None"):
        NeuralKernel()(x, x, eval_gradient=True)
