r"""Shared pieces of the posterior predictions: input checks, time functions and the moments.

Notation (all kernels are of one output unit; outputs are independent and share them):
``D`` is the training kernel that drives the dynamics (the regularized NTK, or the regularized
NNGP when only the readout trains), ``P`` the prior covariance of the initial outputs on the
training points, ``d_td``/``p_td`` the test-train blocks of ``D``/``P``, ``p_tt`` the test-test
prior covariance, and ``m`` the number of target entries (``N`` times outputs). Gradient flow on
:math:`\mathcal L = \frac{1}{2m}\sum \|f - y\|^2` gives

.. math::
    \mu_t = D_{td} D^{-1}(I - e^{-tD/m}) y, \qquad
    \Sigma_t = P_{tt} + Z_t^\top P Z_t - Z_t^\top P_{dt} - P_{td} Z_t,
    \quad Z_t = D^{-1}(I - e^{-tD/m}) D_{dt}

(Lee et al. 2019, https://arxiv.org/abs/1902.06720, eqs. 15-16).
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.solve.linalg import clip_covariance

Array = jax.Array


#: the kernel that drives training, and the prior covariance of the initial outputs, per mode
DRIVER = {"nngp": "nngp", "ntk": "ntk", "ntkgp": "ntk"}
PRIOR = {"nngp": "nngp", "ntk": "nngp", "ntkgp": "ntk"}


def kernel_callable(kernel_fn) -> Callable:
    """``kernel_fn(x1, x2, get)`` from an ``ntkgp.nn`` network or a kernel function."""
    fn = getattr(kernel_fn, "kernel", kernel_fn)
    if not callable(fn):
        raise TypeError("`kernel_fn` must be an ntkgp.nn network or a function "
                        f"kernel_fn(x1, x2, get) -> Kernel; got {type(kernel_fn).__name__}.")
    return fn


def kernel_part(k, kind: str, what: str):
    """The ``kind`` array of a kernel function's output (a `Kernel` or an array)."""
    if hasattr(k, "nngp") and hasattr(k, "ntk"):
        v = getattr(k, kind)
        if v is None:
            raise ValueError(f"{what} has no {kind} kernel; compute it with get=('nngp', "
                             "'ntk') (e.g. `net.kernel(x1, x2)`).")
        return v
    if k is None:
        raise ValueError(f"{what} is missing.")
    return k


def check_learning_rate(learning_rate, momentum):
    """``(learning_rate or None, momentum)`` checked: a positive step or gradient flow, and
    heavy-ball momentum in [0, 1), which needs a step."""
    if learning_rate is not None:
        checks.check_scalar(learning_rate, "learning_rate")
        if learning_rate <= 0:
            raise ValueError("`learning_rate` must be None (gradient flow) or a positive number "
                             f"(gradient descent with that step); got {learning_rate!r}.")
        learning_rate = float(learning_rate)
    checks.check_scalar(momentum, "momentum")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"`momentum` must be a number in [0, 1); got {momentum!r}.")
    if momentum and learning_rate is None:
        raise ValueError("`momentum` needs a `learning_rate`: heavy-ball dynamics are defined "
                         "step by step (with learning_rate=None, gradient flow, leave "
                         "momentum=0).")
    return learning_rate, float(momentum)


class Gaussian(NamedTuple):
    """Mean and covariance of predicted outputs; unpacks as ``mean, cov``.

    Attributes:
        mean: array of shape ``(M, K)`` (``(M,)`` for 1-D targets), or ``(T, M, K)`` for ``T``
            times.
        cov: array of shape ``(M, M)`` or ``(T, M, M)``, shared by the ``K`` outputs (they are
            independent with the same covariance).
    """

    mean: Array
    cov: Array

    @property
    def covariance(self) -> Array:
        """The covariance (neural-tangents' name for ``cov``)."""
        return self.cov


def check_matrix(k, shape: tuple, name: str, hint: str = ""):
    """``k`` as a float array of exactly ``shape``, finite when concrete."""
    k = checks.as_float_array(k, name)
    if tuple(k.shape) != tuple(shape):
        raise ValueError(f"`{name}` must have shape {tuple(shape)}; got {tuple(k.shape)}.{hint}")
    checks.check_finite(k, name)
    return k


def given_kernels(mode, n, k_test_train, k_test_test, want):
    """``(d_td, p_td, p_tt)`` from test kernels given by the caller, checked."""
    d_name, p_name = DRIVER[mode], PRIOR[mode]
    d_td = checks.as_float_array(kernel_part(k_test_train, d_name, "`k_test_train`"),
                                 "k_test_train")
    m = d_td.shape[0] if d_td.ndim == 2 else -1
    d_td = check_matrix(d_td, (m, n), "k_test_train",
                               f" It is the kernel of M test points (rows) against the {n} "
                               "training points (columns).")
    p_td, p_tt = d_td, None
    if want is not None:
        if k_test_test is None:
            raise ValueError("variances and covariances need the test kernel "
                             "`k_test_test` too.")
        p_tt = check_matrix(kernel_part(k_test_test, p_name, "`k_test_test`"),
                                   (m, m), "k_test_test")
        if p_name != d_name:
            p_td = check_matrix(kernel_part(k_test_train, p_name, "`k_test_train`"),
                                       (m, n), f"k_test_train.{p_name}")
    return d_td, p_td, p_tt


def normalize_times(t):
    """``(ts, scalar)``: ``t`` (None, a number, or a 1-D array or list; None means infinity)
    as a 1-D float array and whether it was a scalar."""
    if t is None:
        return jnp.array([np.inf]), True
    if isinstance(t, (list, tuple)):
        t = [np.inf if v is None else v for v in t]
    if isinstance(t, (str, bytes, bool)) or (isinstance(t, list) and any(
            isinstance(v, (str, bytes, bool)) for v in t)):
        raise TypeError(f"`t` must be a number, a 1-D array of times, or None; got {t!r}"
                        + (" (a string: pass the number without quotes)."
                           if isinstance(t, str) else "."))
    t = jnp.asarray(t)
    if not jnp.issubdtype(t.dtype, jnp.floating):
        t = t.astype(jnp.result_type(float))
    if t.ndim > 1:
        raise ValueError(f"`t` must be a number, a 1-D array of times, or None; got shape "
                         f"{tuple(t.shape)}.")
    if checks.is_concrete(t):
        tn = np.asarray(t, np.float64)
        if np.any(np.isnan(tn)) or np.any(tn < 0):
            raise ValueError(f"`t` must be >= 0 (training time = learning_rate x steps, or "
                             f"inf); got {np.asarray(t)}.")
    return jnp.atleast_1d(t), t.ndim == 0


def is_infinite(ts) -> bool:
    """``True`` when ``ts`` is concrete and all infinite (the Cholesky path)."""
    return checks.is_concrete(ts) and bool(np.all(np.isinf(np.asarray(ts))))


def spectral(evals, ts, m, learning_rate: Optional[float]):
    r"""Per-eigenvalue time functions, arrays of shape ``(T, N)``.

    ``decay`` :math:`e_t(\lambda) = e^{-t\lambda/m}` (gradient flow) or
    :math:`(1 - \eta\lambda/m)^{t/\eta}` (gradient descent with step :math:`\eta`),
    ``growth`` :math:`= 1 - e_t` (computed without cancellation), and
    ``h`` :math:`= (1 - e_t(\lambda))/\lambda`, which tends to :math:`t/m` as
    :math:`\lambda \to 0`. At :math:`t = \infty`, eigenvalues below the noise floor
    :math:`N\epsilon\lambda_{\max}` are treated as exactly zero: they never move
    (``decay = 1``, ``h = 0``, the pseudo-inverse). ``learning_rate`` may be a pair
    ``(step, momentum)`` for heavy-ball momentum (see `_momentum_sum`).
    """
    x = evals[None, :] / m
    t = ts[:, None].astype(evals.dtype)
    inf = jnp.isinf(t)
    tf = jnp.where(inf, 0.0, t)
    n = evals.shape[0]
    floor = n * jnp.finfo(evals.dtype).eps * jnp.max(evals) / m
    live = x > floor
    h_fin = None
    if learning_rate is None:
        one_minus = -jnp.expm1(-tf * x)
    elif isinstance(learning_rate, tuple):  # (step, heavy-ball momentum)
        lr = jnp.asarray(learning_rate[0], evals.dtype)
        q = _momentum_sum(lr * x, learning_rate[1], jnp.round(tf / lr))
        one_minus, h_fin = lr * x * q, lr * q / m  # q is finite as x -> 0: no division
    else:
        lr = jnp.asarray(learning_rate, evals.dtype)
        steps = jnp.round(tf / lr)
        b = 1.0 - lr * x
        odd = jnp.mod(steps, 2.0) == 1.0
        power = jnp.where(odd & (b < 0), -1.0, 1.0) * jnp.exp(steps * jnp.log(jnp.abs(b)))
        power = jnp.where(steps == 0, 1.0, power)
        smooth = -jnp.expm1(steps * jnp.log1p(-jnp.minimum(lr * x, 0.5)))
        one_minus = jnp.where(lr * x <= 0.5, smooth, 1.0 - power)
    if h_fin is None:
        h_fin = jnp.where(x > 0, one_minus / (jnp.where(x > 0, x, 1.0) * m), tf / m)
    h = jnp.where(inf, jnp.where(live, 1.0 / jnp.where(live, x * m, 1.0), 0.0), h_fin)
    growth = jnp.where(inf, jnp.where(live, 1.0, 0.0), one_minus)
    return 1.0 - growth, growth, h


def _momentum_sum(a, beta, steps):
    r"""Heavy-ball momentum on one eigendirection: with :math:`a = \eta\lambda/m` the residual
    obeys :math:`r_{s+1} = (1+\beta-a) r_s - \beta r_{s-1}`, :math:`r_1 = (1-a) r_0`. Returns
    :math:`q_s = (1 - r_s/r_0)/a`, which obeys :math:`q_{s+1} = 1 + (1+\beta-a)q_s - \beta
    q_{s-1}` from :math:`q_0 = q_{-1} = 0` (no cancellation as :math:`a \to 0`), by binary
    powering of its 3x3 companion matrix (``steps`` may be traced; up to :math:`2^{31}`)."""
    shape = jnp.broadcast_shapes(a.shape, jnp.shape(steps))
    a = jnp.broadcast_to(a, shape)
    c = 1.0 + beta - a
    z, o = jnp.zeros_like(a), jnp.ones_like(a)
    base = jnp.stack([jnp.stack([c, -beta * o, o], -1), jnp.stack([o, z, z], -1),
                      jnp.stack([z, z, o], -1)], -2)  # (..., 3, 3)
    eye = jnp.broadcast_to(jnp.eye(3, dtype=a.dtype), base.shape)
    n = jnp.broadcast_to(steps, shape).astype(jnp.int32)

    def body(i, carry):
        acc, b = carry
        bit = ((n >> i) & 1)[..., None, None] == 1
        acc = jnp.where(bit, jnp.einsum("...ij,...jk->...ik", acc, b,
                                        precision=jax.lax.Precision.HIGHEST), acc)
        return acc, jnp.einsum("...ij,...jk->...ik", b, b, precision=jax.lax.Precision.HIGHEST)

    acc, _ = jax.lax.fori_loop(0, 31, body, (eye, base))
    return acc[..., 0, 2]  # (M^s e_3)_0 with e_3 = (q_0, q_{-1}, 1)


def _times(w, b):
    """``W @ b`` where ``w`` is a matrix ``W`` or the vector of a diagonal ``W``."""
    if w.ndim == 1:
        return w[:, None] * b
    return jnp.matmul(w, b, precision=jax.lax.Precision.HIGHEST)


@functools.partial(jax.jit, static_argnames=("compute_cov",))
def moments_cholesky(factor, y, d_td, p_td, p_tt, p_dd, compute_cov):
    r""":math:`t=\infty` moments from the Cholesky factor of ``D``.

    ``p_dd=None`` means ``P = D`` (Bayesian GP posterior): then
    :math:`\Sigma = P_{tt} - V^\top V`, :math:`V = L^{-1} D_{dt}`, exactly PSD in exact
    arithmetic. Returns ``(mean (M, K), cov (M, M) or None)``.
    """
    hi = jax.lax.Precision.HIGHEST
    v = factor.solve_lower(d_td.T)  # (N, M)
    mean = jnp.matmul(v.T, factor.solve_lower(y), precision=hi)
    if not compute_cov:
        return mean, None
    if p_dd is None:
        cov = p_tt - jnp.matmul(v.T, v, precision=hi)
    else:
        z = factor.solve_upper(v)  # D^{-1} D_dt
        # z'Pz - z'P_dt - P_td z, as the symmetric part of z'(Pz - 2 P_dt): one M x N x M
        # product fewer
        cov = p_tt + jnp.matmul(z.T, _times(p_dd, z) - 2.0 * p_td.T, precision=hi)
    return mean, clip_covariance(cov)


@functools.partial(jax.jit, static_argnames=("compute_cov", "learning_rate"))
def moments_eigh(evals, evecs, w, y, d_td, p_td, p_tt, ts, m, learning_rate, compute_cov):
    r"""Moments at times ``ts`` (T,) from :math:`D = V\Lambda V^\top`; ``w`` is
    :math:`V^\top P V` (a matrix, or the vector ``evals`` when ``P = D``).
    Returns ``(mean (T, M, K), cov (T, M, M) or None)``."""
    hi = jax.lax.Precision.HIGHEST
    _, _, h = spectral(evals, ts, m, learning_rate)
    q = jnp.matmul(evecs.T, d_td.T, precision=hi)  # (N, M)
    yv = jnp.matmul(evecs.T, y, precision=hi)  # (N, K)
    mean = jnp.einsum("nm,tn,nk->tmk", q, h, yv, precision=hi)
    if not compute_cov:
        return mean, None
    r = jnp.matmul(evecs.T, p_td.T, precision=hi)  # (N, M)

    def one(ht):
        z = ht[:, None] * q
        return clip_covariance(p_tt + jnp.matmul(z.T, _times(w, z) - 2.0 * r, precision=hi))

    return mean, jax.lax.map(one, h)


@functools.partial(jax.jit, static_argnames=("compute_cov", "learning_rate"))
def moments_train(evals, evecs, w, y, ts, m, learning_rate, compute_cov):
    r"""Moments on the training points: :math:`\mu_t = (I - E_t) y`,
    :math:`\Sigma_t = E_t P E_t` with :math:`E_t = e^{-tD/m}`."""
    hi = jax.lax.Precision.HIGHEST
    decay, growth, _ = spectral(evals, ts, m, learning_rate)
    yv = jnp.matmul(evecs.T, y, precision=hi)
    mean = jnp.einsum("in,tn,nk->tik", evecs, growth, yv, precision=hi)
    if not compute_cov:
        return mean, None

    def one(et):
        ve = evecs * et[None, :]
        if w.ndim == 1:
            cov = jnp.matmul(ve * w[None, :], ve.T, precision=hi)
        else:
            cov = jnp.matmul(ve, jnp.matmul(w, ve.T, precision=hi), precision=hi)
        return clip_covariance(cov)

    return mean, jax.lax.map(one, decay)


def _shape(mean, c, scalar, was_1d, want):
    """Final shapes inside a compiled program: no time axis for a scalar ``t``, no output
    axis for 1-D targets, variances from the covariance's diagonal."""
    if c is not None and want == "var":
        c = jnp.diagonal(c, axis1=-2, axis2=-1)
    if scalar:
        mean, c = mean[0], (None if c is None else c[0])
    return (mean[..., 0] if was_1d else mean), c


@functools.partial(jax.jit, static_argnames=("times", "scalar", "was_1d", "want"))
def at_infinity(factor, y, d_td, p_td, p_tt, p_dd, times, scalar, was_1d, want):
    """`moments_cholesky` for ``times`` infinite times, in final shapes (see `_shape`)."""
    mean, c = moments_cholesky(factor, y, d_td, p_td, p_tt, p_dd, want is not None)
    mean = jnp.broadcast_to(mean, (times,) + mean.shape)
    c = None if c is None else jnp.broadcast_to(c, (times,) + c.shape)
    return _shape(mean, c, scalar, was_1d, want)


@functools.partial(jax.jit, static_argnames=("learning_rate", "scalar", "was_1d", "want"))
def at_times(evals, evecs, w, y, d_td, p_td, p_tt, ts, m, learning_rate, scalar, was_1d, want):
    """`moments_eigh` in final shapes (see `_shape`)."""
    mean, c = moments_eigh(evals, evecs, w, y, d_td, p_td, p_tt, ts, m, learning_rate,
                           want is not None)
    return _shape(mean, c, scalar, was_1d, want)


@jax.jit
def rotate(evecs, p_dd):
    """:math:`V^\\top P V`."""
    hi = jax.lax.Precision.HIGHEST
    return jnp.matmul(evecs.T, jnp.matmul(p_dd, evecs, precision=hi), precision=hi)


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
    """Warn when gradient descent with this step diverges on a kernel with these eigenvalues."""
    if learning_rate is None or not checks.is_concrete(evals):
        return
    lr_max = 2.0 * (1.0 + momentum) * m / float(jnp.max(evals))
    if learning_rate >= lr_max:
        warnings.warn(f"learning_rate={learning_rate} is at or above the largest stable step "
                      f"{lr_max:.4g} for this kernel (2 (1 + momentum) m / lambda_max); "
                      "gradient descent diverges, and so do the predicted outputs.",
                      RuntimeWarning, stacklevel=4)


def result(mean, second, want):
    """``mean``, ``(mean, var)`` or a `Gaussian` as ``want`` is None, 'var', 'cov'."""
    if want == "cov":
        return Gaussian(mean, second)
    return (mean, second) if want == "var" else mean


def finish(mean, second, scalar: bool, was_1d: bool, want):
    """The result of a prediction: drop the time axis for a scalar ``t`` and the output axis
    for 1-D targets; ``mean``, ``(mean, var)`` or a `Gaussian` as ``want`` is None, 'var',
    'cov'."""
    if scalar:
        mean = mean[0]
        second = None if second is None else second[0]
    if was_1d:
        mean = mean[..., 0]
    if want == "cov":
        return Gaussian(mean, second)
    return (mean, second) if want == "var" else mean
