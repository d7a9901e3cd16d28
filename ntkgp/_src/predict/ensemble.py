r"""`gradient_descent_mse_ensemble`: the outputs of infinitely wide networks trained by gradient
descent on MSE, over random initializations, at any training time."""

from __future__ import annotations

import warnings
from typing import Callable, Optional

import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.predict import common
from ntkgp._src.solve import linalg
from ntkgp._src.util import check_fits_in_memory

GETS = ("nngp", "ntk")


def _kernel_callable(kernel_fn) -> Callable:
    fn = getattr(kernel_fn, "kernel", kernel_fn)  # an ntkgp.nn Layer, or kernel_fn itself
    if not callable(fn):
        raise TypeError("`kernel_fn` must be an ntkgp.nn network or a function "
                        f"kernel_fn(x1, x2, get) -> Kernel; got {type(kernel_fn).__name__}.")
    return fn


def check_learning_rate(learning_rate):
    if learning_rate is None:
        return None
    checks.check_scalar(learning_rate, "learning_rate")
    if learning_rate <= 0:
        raise ValueError("`learning_rate` must be None (gradient flow) or a positive number "
                         f"(gradient descent with that step); got {learning_rate!r}.")
    return float(learning_rate)


def check_momentum(momentum, learning_rate):
    """``momentum`` as a float in [0, 1); it needs a discrete ``learning_rate``."""
    checks.check_scalar(momentum, "momentum")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"`momentum` must be a number in [0, 1); got {momentum!r}.")
    if momentum and learning_rate is None:
        raise ValueError("`momentum` needs a `learning_rate`: heavy-ball dynamics are defined "
                         "step by step (with learning_rate=None, gradient flow, leave "
                         "momentum=0).")
    return float(momentum)


def rate(learning_rate, momentum):
    """The static time argument of `common.spectral`: ``None``, a step, or (step, momentum)."""
    return (learning_rate, momentum) if momentum else learning_rate


def check_steps(ts, learning_rate):
    """With a learning rate, times must be whole numbers of steps (or infinite)."""
    if learning_rate is None or not checks.is_concrete(ts):
        return
    t = np.asarray(ts, np.float64)
    t = t[np.isfinite(t)]
    steps = t / learning_rate
    if np.any(np.abs(steps - np.round(steps)) > 1e-6 * np.maximum(1.0, steps)):
        raise ValueError(f"With learning_rate={learning_rate}, `t` = learning_rate x steps must "
                         f"be a whole number of steps; got t={t} ({steps} steps). Pass "
                         "learning_rate=None for continuous-time gradient flow.")


def warn_if_divergent(evals, m, learning_rate, momentum=0.0):
    if learning_rate is None:
        return
    lr_max = 2.0 * (1.0 + momentum) * m / float(jnp.max(evals))
    if learning_rate >= lr_max:
        warnings.warn(f"learning_rate={learning_rate} is at or above the largest stable step "
                      f"{lr_max:.4g} for this kernel (2 (1 + momentum) m / lambda_max); "
                      "gradient descent diverges, and so do the predicted outputs.",
                      RuntimeWarning, stacklevel=4)


class Ensemble:
    r"""Predictions of `gradient_descent_mse_ensemble`; factorizations are made on first use and
    reused (Cholesky for :math:`t=\infty`, eigendecomposition for finite times), so new test
    points or times cost only their kernels and matrix products.

    Call it as ``ensemble(t=None, x_test=None, get='ntk', compute_cov=False)``.
    """

    def __init__(self, kernel_fn, x_train, y_train, *, learning_rate=None, momentum=0.0,
                 diag_reg=0.0, diag_reg_absolute_scale=False, jitter=None):
        self._kfn = _kernel_callable(kernel_fn)
        x_train, _ = checks.check_inputs(x_train, None, ndim=None)
        n = x_train.shape[0]
        check_fits_in_memory(n, x_train.dtype, 5, "the training kernels (NNGP and NTK), "
                             "their factorizations and work space")
        self.x_train = x_train
        self.y_train, self._y_was_1d = common.check_targets(y_train, n)
        self.learning_rate = check_learning_rate(learning_rate)
        self.momentum = check_momentum(momentum, self.learning_rate)
        self.diag_reg = checks.check_nonneg(diag_reg, "diag_reg")
        self.absolute = bool(diag_reg_absolute_scale)
        self.jitter = jitter
        k = self._kfn(x_train, None, ("nngp", "ntk"))
        self.k_train_train = {"nngp": getattr(k, "nngp", None), "ntk": getattr(k, "ntk", None)}
        # ntkgp kernels of x with itself are exactly symmetric by construction
        self._symmetric = bool(getattr(k, "x1_is_x2", False))
        for g, v in self.k_train_train.items():
            if v is None:
                raise ValueError(f"`kernel_fn(x_train, None, ('nngp', 'ntk'))` returned no {g}; "
                                 "it must return a Kernel with both.")
        self.y_train = self.y_train.astype(self.k_train_train["nngp"].dtype)
        self.m = self.y_train.size
        self._chol, self._eig = {}, {}

    def _cholesky(self, get):
        if get not in self._chol:
            self._chol[get] = linalg.cholesky(
                self.k_train_train[get], self.diag_reg, diag_reg_absolute_scale=self.absolute,
                jitter=self.jitter, name=get.upper(), symmetrize=not self._symmetric)
        return self._chol[get]

    def _eigh(self, get):
        if get not in self._eig:
            e = linalg.eigh(self.k_train_train[get], self.diag_reg,
                            diag_reg_absolute_scale=self.absolute, name=get.upper())
            w = e.evals if get == "nngp" else common.rotate(e.evecs, self.k_train_train["nngp"])
            self._eig[get] = (e, w)
        warn_if_divergent(self._eig[get][0].evals, self.m, self.learning_rate, self.momentum)
        return self._eig[get]

    @property
    def n_factorizations(self) -> int:
        """How many factorizations this predictor has made (each is made once)."""
        return len(self._chol) + len(self._eig)

    def __call__(self, t=None, x_test=None, get: str = "ntk", compute_cov: bool = False):
        r"""Mean (and covariance) of the outputs at training time ``t``.

        Args:
            t: training time :math:`t = \eta \times \text{steps}`: a number, a 1-D array of
                ``T`` times, or ``None``/``inf`` for convergence.
            x_test: test inputs of shape ``(M, d)``, or ``None`` for the training points.
            get: ``'ntk'`` (all layers trained) or ``'nngp'`` (only the readout layer).
            compute_cov: whether to return the covariance too.

        Returns:
            The mean, of shape ``(M, K)`` (``(T, M, K)`` for an array of times; no ``K`` axis
            for 1-D targets), or a `Gaussian` ``(mean, cov)`` with ``cov`` of shape ``(M, M)``
            (``(T, M, M)``).
        """
        checks.check_choice(get, "get", GETS)
        ts, scalar = common.normalize_times(t)
        check_steps(ts, self.learning_rate)
        compute_cov = bool(compute_cov)
        y = self.y_train
        if x_test is None:
            if common.is_infinite(ts) and scalar:
                self._cholesky(get)  # the same checks (and warnings) as test predictions
                n = y.shape[0]
                mean = y
                cov = jnp.zeros((n, n), y.dtype) if compute_cov else None
            else:
                e, w = self._eigh(get)
                mean, cov = common.moments_train(e.evals, e.evecs, w, y, ts, self.m,
                                                 rate(self.learning_rate, self.momentum),
                                                 compute_cov)
            return common.finish(mean, cov, scalar, self._y_was_1d, compute_cov)
        x_test, _ = checks.check_inputs(x_test, self.x_train[:1], ndim=None)
        x_test = x_test.astype(self.x_train.dtype)
        k_td = self._kfn(x_test, self.x_train, (("nngp", "ntk") if get == "ntk" else ("nngp",)))
        d_td = getattr(k_td, get)
        p_td = k_td.nngp
        p_tt = self._kfn(x_test, None, "nngp") if compute_cov else None
        if common.is_infinite(ts) and scalar:
            p_dd = self.k_train_train["nngp"] if get == "ntk" else None
            mean, cov = common.moments_cholesky(self._cholesky(get), y, d_td, p_td, p_tt,
                                                p_dd, compute_cov)
        else:
            e, w = self._eigh(get)
            mean, cov = common.moments_eigh(e.evals, e.evecs, w, y, d_td, p_td, p_tt, ts,
                                            self.m, rate(self.learning_rate, self.momentum),
                                            compute_cov)
        return common.finish(mean, cov, scalar, self._y_was_1d, compute_cov)

    predict = __call__


def gradient_descent_mse_ensemble(kernel_fn, x_train, y_train, *,
                                  learning_rate: Optional[float] = None, momentum: float = 0.0,
                                  diag_reg=0.0, diag_reg_absolute_scale: bool = False,
                                  jitter: Optional[float] = None) -> Ensemble:
    r"""What infinitely wide networks trained by gradient descent on MSE predict, at any time.

    Over random initializations :math:`f_0 \sim \mathcal{GP}(0, K)` (NNGP :math:`K`), a network
    trained on the loss :math:`\frac{1}{2NK}\sum_{i}\|f(x_i) - y_i\|^2` (mean over all ``N x K``
    target entries) with learning rate :math:`\eta` for ``s`` steps, at time
    :math:`t = \eta s`, has Gaussian outputs (Lee et al. 2019) with

    .. math::
        \mu_t(x) = \Theta_{xd}\,\Theta^{-1}(I - e^{-t\Theta/(NK)})\,y, \qquad
        \Sigma_t = K_{xx} + Z_t^\top K Z_t - Z_t^\top K_{dx} - K_{xd} Z_t,

    :math:`Z_t = \Theta^{-1}(I - e^{-t\Theta/(NK)})\Theta_{dx}`, where :math:`\Theta` is the NTK
    of the training points plus ``diag_reg`` on its diagonal (relative to its mean diagonal by
    default). ``get='nngp'`` trains only the readout layer: :math:`\Theta` becomes the NNGP
    :math:`K + \sigma^2 I`, and then ``diag_reg`` acts as observation noise in the prior too,
    so that :math:`t=\infty` is exactly the Bayesian posterior of `gp_inference`. With
    ``learning_rate=None`` the dynamics are gradient flow; with a step :math:`\eta`,
    :math:`e^{-t\Theta/(NK)}` becomes :math:`(I - \eta\Theta/(NK))^{s}`, the exact
    discrete-step dynamics of the linearized network; with ``momentum`` :math:`\beta` too, the
    exact heavy-ball dynamics (optax ``sgd(eta, momentum=beta)``: :math:`v \leftarrow \beta v +
    g`, :math:`\theta \leftarrow \theta - \eta v`).

    Conventions match neural-tangents' ``gradient_descent_mse_ensemble`` at its default
    ``learning_rate=1``: its time is ours, its loss normalization ``y_train.size`` is our
    ``N K``, and its ``diag_reg`` is relative to the mean diagonal as ours.

    Args:
        kernel_fn: an ``ntkgp.nn`` network, or ``kernel_fn(x1, x2, get) -> Kernel``.
        x_train: training inputs of shape ``(N, ...)``.
        y_train: targets of shape ``(N,)`` or ``(N, K)``.
        learning_rate: ``None`` for gradient flow, or the step :math:`\eta > 0`; then every
            finite ``t`` must be a whole number of steps.
        momentum: heavy-ball momentum :math:`\beta \in [0, 1)` (needs ``learning_rate``).
        diag_reg: :math:`\ge 0`, regularization of the training kernel's diagonal.
        diag_reg_absolute_scale: whether ``diag_reg`` is in the kernel's units.
        jitter: see `ntkgp.linalg.cholesky`.

    Returns:
        An `Ensemble`: ``ensemble(t, x_test, get, compute_cov)`` returns the mean, or a
        `Gaussian` ``(mean, cov)``; see `Ensemble.__call__` for shapes.

    Raises:
        ValueError: for inputs of the wrong shape, NaN/inf, or bad options.
        MemoryError: when the training kernels would not fit in memory.

    References:
        Lee et al. 2019, https://arxiv.org/abs/1902.06720.

    Example:
        >>> import numpy as np
        >>> from ntkgp import nn, predict
        >>> net = nn.serial(nn.Dense(512), nn.Relu(), nn.Dense(1))
        >>> x, y = np.random.default_rng(0).normal(size=(2, 8, 3))
        >>> ens = predict.gradient_descent_mse_ensemble(net, x, y, diag_reg=1e-3)
        >>> mean, cov = ens(t=[0.0, 10.0, None], x_test=x[:2], compute_cov=True)
        >>> mean.shape, cov.shape
        ((3, 2, 3), (3, 2, 2))
    """
    return Ensemble(kernel_fn, x_train, y_train, learning_rate=learning_rate, momentum=momentum,
                    diag_reg=diag_reg,
                    diag_reg_absolute_scale=diag_reg_absolute_scale, jitter=jitter)
