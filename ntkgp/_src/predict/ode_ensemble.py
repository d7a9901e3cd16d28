r"""Infinite-width networks trained on any loss, over random initializations.

At initialization an infinitely wide network's outputs on the training and test points are a
draw of the NNGP, :math:`f_0 \sim \mathcal N(0, K \otimes I_K)`; training then moves them by
the deterministic NTK flow :math:`\dot f = -\Theta \nabla_f L(f(X), y)` (`gradient_descent`).
For the squared error the result is Gaussian with a closed form
(`gradient_descent_mse_ensemble`); for cross-entropy it is not, and the ensemble is sampled:
``n_samples`` joint draws of the initial outputs, each integrated (``vmap``-ed ODE solves),
summarized by the mean and spread of the outputs and of the softmax probabilities.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from ntkgp._src import checks
from ntkgp._src.predict.common import kernel_callable
from ntkgp._src.predict.ode import gradient_descent
from ntkgp._src.solve import linalg
from ntkgp._src.util import check_fits_in_memory


@dataclasses.dataclass(frozen=True)
class SampledEnsemble:
    r"""Test outputs of `gradient_descent_ensemble` at the requested times (leading axes
    ``T = t.shape``), over ``S`` sampled initializations.

    Attributes:
        samples: ``T + (S, M, K)``, the outputs of each sampled network.
        mean, std: ``T + (M, K)``, their mean and standard deviation over samples.
        prob_mean, prob_std: ``T + (M, K)``, the same of the softmax probabilities
            :math:`\operatorname{softmax}(f)` (over the last axis).
    """

    samples: jax.Array
    mean: jax.Array
    std: jax.Array
    prob_mean: jax.Array
    prob_std: jax.Array


def gradient_descent_ensemble(loss: Callable, kernel_fn, x_train, y_train,
                              learning_rate: float = 1.0, *, n_samples: int = 64, key=None,
                              rtol: Optional[float] = None, atol: Optional[float] = None,
                              jitter: Optional[float] = None) -> Callable:
    r"""What infinitely wide networks trained by gradient flow on any ``loss`` predict, over
    random initializations, by sampling.

    Each sample draws the initial outputs on the training and test points jointly from the
    NNGP (:math:`f_0 = L z`, :math:`L L^\top = K`, independent outputs) and integrates
    :math:`\dot f = -\Theta \nabla_f L(f(X), y)` with the analytic NTK (`gradient_descent`,
    its time convention: ``learning_rate * t``). For the squared error
    ``0.5 * mean((f - y)**2)`` the samples are draws of `gradient_descent_mse_ensemble`'s
    Gaussian.

    Args:
        loss: ``loss(outputs, targets) -> scalar`` on ``(N, K)`` arrays, e.g.
            ``ntkgp.train.cross_entropy_loss``.
        kernel_fn: an ``ntkgp.nn`` network or ``kernel_fn(x1, x2, get) -> Kernel`` (with
            ``'nngp'`` and ``'ntk'``).
        x_train: inputs ``(N, ...)``.
        y_train: targets ``(N, K)`` (e.g. one-hot classes).
        learning_rate: :math:`\eta`; scales time.
        n_samples: ``S``, sampled initializations (the Monte-Carlo error of the mean falls as
            :math:`S^{-1/2}`).
        key: PRNG key of the samples (default ``PRNGKey(0)``).
        rtol, atol: tolerances of the ODE solver (see `gradient_descent`).
        jitter: of the NNGP's Cholesky factor (see `ntkgp.linalg.cholesky`).

    Returns:
        ``predict_fn(t, x_test) -> SampledEnsemble``: ``t`` a time or an array of times
        (:math:`\ge 0`), ``x_test`` inputs ``(M, ...)``.

    Raises:
        ValueError: bad shapes, NaN/inf, a non-finite solution, or kernels too large for
            memory; TypeError: a ``loss`` that is not a scalar function of (outputs, targets).

    Example:
        >>> import numpy as np
        >>> from ntkgp import nn, predict, train
        >>> net = nn.serial(nn.Dense(512), nn.Erf(), nn.Dense(3))
        >>> rng = np.random.default_rng(0)
        >>> x, y = rng.normal(size=(8, 2)), np.eye(3)[rng.integers(0, 3, 8)]
        >>> ens = predict.gradient_descent_ensemble(train.cross_entropy_loss, net, x, y,
        ...                                         n_samples=16)
        >>> out = ens(t=[1.0, 10.0], x_test=rng.normal(size=(2, 2)))
        >>> out.prob_mean.shape, out.samples.shape
        ((2, 2, 3), (2, 16, 2, 3))
    """
    kfn = kernel_callable(kernel_fn)
    x_train, _ = checks.check_inputs(x_train, None, ndim=None)
    y, _ = checks.check_targets(y_train, x_train.shape[0])
    y = jnp.asarray(y, x_train.dtype)
    checks.check_loss(loss, y)
    n_samples = checks.check_positive_int(n_samples, "n_samples")
    key = jax.random.PRNGKey(0) if key is None else key
    k_dd = kfn(x_train, None, ("nngp", "ntk"))
    flow = gradient_descent(loss, k_dd.ntk, y, learning_rate, rtol=rtol, atol=atol)

    def predict_fn(t, x_test) -> SampledEnsemble:
        xt, _ = checks.check_inputs(x_test, None, ndim=None)
        xt = jnp.asarray(xt, x_train.dtype)
        n, m = x_train.shape[0], xt.shape[0]
        check_fits_in_memory(n + m, x_train.dtype, 3, "the joint NNGP of training and test "
                                                      "points and its factor")
        k_td = kfn(xt, x_train, ("nngp", "ntk"))
        k_tt = kfn(xt, None, ("nngp",)).nngp
        joint = jnp.block([[k_dd.nngp, k_td.nngp.T], [k_td.nngp, k_tt]])
        factor = linalg.cholesky(joint, jitter=jitter, name="joint NNGP (train and test)")
        z = jax.random.normal(key, (n_samples, n + m, y.shape[1]), joint.dtype)
        f0 = jnp.einsum("ij,sjk->sik", factor.chol, z)
        out = jax.vmap(lambda a, b: flow(t, a, b, k_td.ntk)[1])(f0[:, :n], f0[:, n:])
        out = jnp.moveaxis(out, 0, out.ndim - 3)  # T + (S, M, K)
        if not bool(jnp.all(jnp.isfinite(out))):
            raise ValueError("The ODE solution of some samples is not finite at the requested "
                             "times (the outputs diverged): ask for earlier times.")
        probs = jax.nn.softmax(out, axis=-1)
        return SampledEnsemble(out, out.mean(-3), out.std(-3), probs.mean(-3), probs.std(-3))

    return predict_fn
