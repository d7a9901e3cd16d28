"""`predict.gradient_descent`: the function-space ODE for any loss against neural-tangents
0.6.5 (tests/data/nt_gradient_descent.py), against the closed form for the squared error, and
its errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkgp import predict
from tests.conftest import DTYPE, X64, rel_err
from tests.helpers import load_reference

REF, META = load_reference("nt_gradient_descent")
LOSSES = {
    "xent": lambda f, y: -jnp.mean(jax.nn.log_softmax(f) * y),
    "mse": lambda f, y: 0.5 * jnp.mean((f - y) ** 2),
}
# float64: the bar is 1e-5; both solve to rtol 1.4e-8 (observed <= 1e-8). float32: the
# solver's default tolerance there is 1e-6, and rounding of the gradients.
TOL = 1e-7 if X64 else 1e-4


def _case(name):
    return {k: REF[f"{name}__{k}"].astype(DTYPE) for k in
            ("k", "kt", "y", "f0", "ft0", "t", "train", "test")}


@pytest.mark.parametrize("name", sorted(META["cases"]))
def test_matches_neural_tangents(name):
    c, r = META["cases"][name], _case(name)
    fn = predict.gradient_descent(LOSSES[c["loss"]], r["k"], r["y"], c["learning_rate"],
                                  c["momentum"], tuple(c["trace_axes"]))
    train, test = fn(r["t"], r["f0"], r["ft0"], r["kt"])
    assert train.shape == r["train"].shape and test.shape == r["test"].shape
    assert rel_err(train, r["train"]) <= TOL
    assert rel_err(test, r["test"]) <= TOL


def test_squared_error_follows_the_closed_form_at_any_times():
    """With 0.5 * mean((f - y)^2) the ODE is gradient_descent_mse's; times may come in any
    order and shape, with repeats and zero."""
    r = _case("mse_gd")
    fn = predict.gradient_descent(LOSSES["mse"], r["k"], r["y"])
    t = np.array([[4.0, 0.0], [1.5, 4.0]], DTYPE)
    train, test = fn(t, r["f0"], r["ft0"], r["kt"])
    assert train.shape == (2, 2, 12, 3) and test.shape == (2, 2, 4, 3)
    closed = predict.gradient_descent_mse(r["k"], r["y"])
    for idx in np.ndindex(2, 2):
        a, b = closed(float(t[idx]), r["f0"], r["ft0"], r["kt"])
        assert rel_err(train[idx], a) <= (1e-7 if X64 else 1e-4)
        assert rel_err(test[idx], b) <= (1e-7 if X64 else 1e-4)
    np.testing.assert_allclose(train[0, 1], r["f0"], rtol=1e-6)
    # fx_train_0=None: test outputs only, the training outputs starting at zero (as in
    # neural-tangents)
    only_test = fn(np.array([1.5], DTYPE), None, r["ft0"], r["kt"])
    both = fn(np.array([1.5], DTYPE), np.zeros_like(r["f0"]), r["ft0"], r["kt"])
    assert rel_err(only_test, both[1]) <= 1e-5


def test_cross_entropy_fits_the_training_labels_and_logits_grow():
    r = _case("xent_gd")
    fn = predict.gradient_descent(LOSSES["xent"], r["k"], r["y"])
    out = fn(np.array([1.0, 100.0, 1000.0], DTYPE), r["f0"])
    assert np.all(out[-1].argmax(1) == r["y"].argmax(1))
    norms = np.linalg.norm(out.reshape(3, -1), axis=1)
    assert norms[0] < norms[1] < norms[2]  # no fixed point: the logits keep growing


BAD = {
    "loss not scalar": (lambda r: predict.gradient_descent(lambda f, y: f - y, r["k"], r["y"]),
                        TypeError, "must return a scalar"),
    "loss of one argument": (lambda r: predict.gradient_descent(lambda f: f.sum(), r["k"],
                                                                r["y"]),
                             TypeError, "calling it failed"),
    "kernel of other points": (lambda r: predict.gradient_descent(LOSSES["mse"], r["k"][:5, :5],
                                                                  r["y"]),
                               ValueError, r"must have shape \(12, 12\)"),
    "negative time": (lambda r: predict.gradient_descent(LOSSES["mse"], r["k"], r["y"])(
        np.array([1.0, -1.0]), r["f0"]), ValueError, "finite and >= 0"),
    "no time": (lambda r: predict.gradient_descent(LOSSES["mse"], r["k"], r["y"])(),
                ValueError, "need not converge"),
    "test outputs without their kernel": (
        lambda r: predict.gradient_descent(LOSSES["mse"], r["k"], r["y"])(1.0, r["f0"],
                                                                          r["ft0"]),
        ValueError, "needs `k_test_train`"),
    "test kernel of other training points": (
        lambda r: predict.gradient_descent(LOSSES["mse"], r["k"], r["y"])(
            1.0, r["f0"], r["ft0"], r["kt"][:, :5]), ValueError, r"got \(4, 5\)"),
    "momentum of one": (lambda r: predict.gradient_descent(LOSSES["mse"], r["k"], r["y"],
                                                           momentum=1.0),
                        ValueError, r"in \[0, 1\)"),
    "examples traced": (lambda r: predict.gradient_descent(LOSSES["mse"], r["k"], r["y"],
                                                           trace_axes=(0, 1)),
                        ValueError, "may not include the examples"),
    "diverging loss": (lambda r: predict.gradient_descent(
        lambda f, y: jnp.mean(jnp.sqrt(f) * y), r["k"], r["y"])(
        np.array([1.0, 2.0]), r["f0"]), ValueError, "not finite"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_gets_a_clear_error(case):
    make, err, match = BAD[case]
    with pytest.raises(err, match=match):
        make(_case("mse_gd"))
