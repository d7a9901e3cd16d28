r"""Probabilities of sign patterns of a Gaussian process: :math:`\log P(\operatorname{sign} g = s)`.

For :math:`g \sim \mathcal N(0, K)` on ``n`` points and signs :math:`s \in \{-1, +1\}^n`, the
probability that every :math:`s_i g_i > 0` is a Gaussian orthant probability. It is what a
network's NNGP prior, with its outputs thresholded, gives a Boolean function: the Bayesian
posterior of a function ``f`` on test points given the labels ``y`` of a training set ``S`` is

.. math::
    P_B(f \mid S) = \frac{P(\operatorname{sign} g_S = y,\ \operatorname{sign} g_T = f)}
                         {P(\operatorname{sign} g_S = y)}.

Four estimators, all in float64 with NumPy (independent of ``jax_enable_x64``):

* ``'exact'``: closed forms for ``n <= 3`` (Sheppard's :math:`\tfrac14 + \arcsin\rho / 2\pi`
  and its three-dimensional analogue).
* ``'ep'``: expectation propagation with step-function sites (Minka 2001; Rasmussen &
  Williams 2006, Alg. 3.5 with a noise-free probit; Cunningham et al. 2011 study its accuracy
  for orthant probabilities). Deterministic, :math:`O(n^3)` per sweep.
* ``'tilted'``: Botev's (2017) minimax exponential tilting of the GHK sampler: each variable
  is drawn from a normal shifted by the tilting point :math:`\mu` that minimizes the worst
  case of the importance weight (a saddle point of
  :math:`\psi(x, \mu) = \sum_i \mu_i^2/2 - x_i\mu_i + \log P(Z_i > l_i(x) - \mu_i)`,
  found by Newton's method). Unbiased for the probability, with a standard error that stays
  small in hundreds of dimensions (relative errors of about 2% at ``n = 400`` with 2,000
  draws on equicorrelated covariances, where the closed form is known and EP is off by up to
  0.14 nats). The estimator to use when the number matters.
* ``'ghk'``: the Geweke–Hajivassiliou–Keane sequential importance sampler (``'tilted'``
  with :math:`\mu = 0`), unbiased with a standard error, but its variance grows quickly with
  ``n``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from scipy import special

from ntkgp._src import checks
from ntkgp._src.solve.linalg import NotPositiveDefiniteError

METHODS = ("ep", "tilted", "ghk", "exact")


class LogProbability(NamedTuple):
    """A log probability and its standard error (0 for deterministic methods).

    Attributes:
        log_p: the natural log of the probability.
        stderr: standard error of ``log_p`` (delta method for the samplers ``'tilted'`` and
            ``'ghk'``; 0 for the deterministic methods).
    """

    log_p: float
    stderr: float


def check_orthant(k, signs):
    k = np.asarray(k, np.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1]:
        raise ValueError(f"the covariance must be a square (n, n) matrix; got shape {k.shape}.")
    if not np.all(np.isfinite(k)):
        raise ValueError("the covariance contains NaN or inf; check the kernel's inputs and "
                         "hyperparameters.")
    s = np.asarray(signs)
    if s.shape != (k.shape[0],):
        raise ValueError(f"`signs` must have shape ({k.shape[0]},), one per row of the "
                         f"covariance; got shape {s.shape}.")
    if not np.all((s == 1) | (s == -1)):
        raise ValueError("`signs` must contain only -1 and +1 (map 0/1 labels with 2*y-1).")
    k = 0.5 * (k + k.T)
    d = np.diag(k)
    if np.any(d <= 0):
        raise ValueError("the covariance has a non-positive diagonal entry: a point with zero "
                         "prior variance has no sign; drop it or add a bias (b_std > 0).")
    return k, s.astype(np.float64)


def _correlation(k):
    d = np.sqrt(np.diag(k))
    return np.clip(k / d[:, None] / d[None, :], -1.0, 1.0)


def _exact(k, s):
    c = _correlation(k) * s[:, None] * s[None, :]
    n = c.shape[0]
    if n == 1:
        return math.log(0.5)
    if n == 2:
        return math.log(0.25 + math.asin(c[0, 1]) / (2 * math.pi))
    if n == 3:
        p = 0.125 + (math.asin(c[0, 1]) + math.asin(c[0, 2]) + math.asin(c[1, 2])) / (4 * math.pi)
        return math.log(max(p, 0.0)) if p > 0 else -math.inf
    raise ValueError(f"method='exact' has closed forms for up to 3 points; got {n}. Use "
                     "method='ep' or 'ghk'.")


def _log_phi(z):
    return -0.5 * z * z - 0.5 * math.log(2 * math.pi)


def _factor_b(k, tau):
    r"""Per function, ``L`` = Cholesky factor of :math:`B = I + T^{1/2} K T^{1/2}` and
    :math:`V = L^{-1} T^{1/2} K`, so that :math:`\Sigma = K - V^\top V`."""
    sq = np.sqrt(tau)
    chol = np.linalg.cholesky(np.eye(k.shape[0]) + sq[:, :, None] * k[None] * sq[:, None, :])
    return chol, np.linalg.solve(chol, sq[:, :, None] * k[None])


def _posterior(k, tau, nu):
    r"""Diagonal and mean of :math:`\Sigma = (K^{-1} + T)^{-1}`, :math:`\mu = \Sigma\nu`,
    via :math:`B = I + T^{1/2} K T^{1/2}` (Rasmussen & Williams eq. 3.68), for a stack of
    site parameters ``tau, nu`` of shape ``(F, n)``; also ``log|B|`` and
    :math:`\nu^\top\Sigma\nu`."""
    chol, v = _factor_b(k, tau)
    diag = np.diag(k)[None] - np.sum(v * v, axis=1)
    k_nu = np.einsum("fj,jk->fk", nu, k)           # not `@`: a row must not depend on F
    w = np.einsum("fij,fj->fi", v, nu)
    mu = k_nu - np.einsum("fij,fi->fj", v, w)
    log_det_b = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
    quad = np.sum(nu * k_nu, axis=1) - np.sum(w * w, axis=1)
    return diag, mu, log_det_b, quad


def _site_update(s, mu, var, tau, nu):
    """New site parameters from the marginal posterior ``mu, var`` at a site with sign ``s``
    (moment matching against the step function :math:`[s g > 0]`)."""
    t_cav = 1.0 / var - tau
    n_cav = mu / var - nu
    v = 1.0 / t_cav
    m = n_cav * v
    z = s * m / np.sqrt(v)
    r = np.exp(_log_phi(z) - special.log_ndtr(z))                       # phi(z) / Phi(z)
    var_hat = v * np.maximum(1.0 - r * (z + r), 1e-12)
    mean_hat = m + s * np.sqrt(v) * r
    return 1.0 / var_hat - t_cav, mean_hat / var_hat - n_cav


def ep_log_probabilities(k, s, max_sweeps=100, tol=1e-7):
    """Sequential EP for a stack of sign vectors ``s`` of shape ``(F, n)`` sharing ``K``: one
    site at a time (rank-one updates of the ``F`` posteriors), the posteriors refactored after
    each sweep. Each function stops on its own once no site precision of its moved by more
    than ``tol`` (relative) in a sweep, and no product mixes functions (LAPACK per matrix,
    einsums), so its estimate is the same to the last bit whichever functions share its
    batch. Returns ``log Z_EP`` of shape ``(F,)``."""
    n = k.shape[0]
    k = k + 1e-10 * float(np.mean(np.diag(k))) * np.eye(n)
    try:
        np.linalg.cholesky(k)
    except np.linalg.LinAlgError:
        raise NotPositiveDefiniteError(
            f"the {n} x {n} covariance is not positive semi-definite (its Cholesky "
            "factorization fails even with a relative jitter of 1e-10), so it is no Gaussian's "
            "covariance and has no orthant probabilities; compute it with the network's "
            "kernel (`net.kernel(x, x, 'nngp')`) rather than by hand.") from None
    tau, nu, mu = np.zeros(s.shape), np.zeros(s.shape), np.zeros(s.shape)
    sigma = np.broadcast_to(k, (s.shape[0], n, n)).copy()
    active = np.arange(s.shape[0])
    for _ in range(max_sweeps):
        if active.size == 0:
            break
        tau_old = tau[active]
        t, v, sg, m = _ep_sweep(k, s[active], tau_old.copy(), nu[active], sigma[active],
                                mu[active])
        tau[active], nu[active], sigma[active], mu[active] = t, v, sg, m
        active = active[np.max(np.abs(t - tau_old) / t, axis=1) >= tol]
    log_z = _ep_log_z(k, s, tau, nu, np.diagonal(sigma, axis1=1, axis2=2), mu)
    if not np.all(np.isfinite(log_z)):
        raise FloatingPointError(
            f"EP diverged for {int(np.sum(~np.isfinite(log_z)))} of {log_z.size} sign vectors "
            "(a cavity variance went negative): the covariance is too ill-conditioned for EP; "
            "use method='tilted'.")
    return log_z


def _ep_sweep(k, s, tau, nu, sigma, mu):
    """One EP sweep over the sites of a stack of functions (arrays updated in place), then
    the posteriors refactored from ``K`` and the sites: rank-one updates drift."""
    n = k.shape[0]
    for i in range(n):
        col = sigma[:, :, i].copy()
        si = col[:, i]
        new_tau, new_nu = _site_update(s[:, i], mu[:, i], si, tau[:, i], nu[:, i])
        d_tau, d_nu = new_tau - tau[:, i], new_nu - nu[:, i]
        c = d_tau / (1.0 + d_tau * si)
        mu += col * (d_nu * (1.0 - c * si) - c * np.sum(col * nu, axis=1))[:, None]
        sigma -= c[:, None, None] * col[:, :, None] * col[:, None, :]
        tau[:, i], nu[:, i] = new_tau, new_nu
    v = _factor_b(k, tau)[1]
    sigma = k[None] - np.einsum("fki,fkj->fij", v, v)
    return tau, nu, sigma, np.einsum("fij,fj->fi", sigma, nu)


def _ep_log_z(k, s, tau, nu, diag, mu):
    """log Z_EP (Rasmussen & Williams eqs. 3.65, 3.73-3.74) with a noise-free probit."""
    t_cav = 1.0 / diag - tau
    n_cav = mu / diag - nu
    v_cav = 1.0 / t_cav
    m_cav = n_cav * v_cav
    _, _, log_det_b, quad = _posterior(k, tau, nu)
    z = s * m_cav / np.sqrt(v_cav)
    return (np.sum(special.log_ndtr(z), axis=1)
            + 0.5 * np.sum(np.log1p(tau * v_cav), axis=1)
            - 0.5 * log_det_b
            + 0.5 * quad
            - 0.5 * np.sum(nu * nu / (t_cav + tau), axis=1)
            + 0.5 * np.sum((t_cav * m_cav ** 2 * tau - 2.0 * m_cav * nu * t_cav)
                           / (t_cav + tau), axis=1))


def _ordered_cholesky(a):
    """Cholesky factor of ``a[perm][:, perm]`` with the Gibson-Glasbey-Elston / Genz-Bretz
    ordering: at each step the remaining variable least likely to fall in the orthant (given
    the expected values of those before it) goes next, which cuts the GHK variance sharply."""
    n = a.shape[0]
    a = a + 1e-10 * float(np.mean(np.diag(a))) * np.eye(n)
    perm = np.arange(n)
    chol = np.zeros((n, n))
    a = a.copy()
    ez = np.zeros(n)                      # expected truncated z of the variables placed so far
    for i in range(n):
        rest = np.arange(i, n)
        var = np.diag(a)[rest] - np.sum(chol[rest, :i] ** 2, axis=1)
        if np.any(var <= 0):
            raise NotPositiveDefiniteError(
                "the covariance is not positive definite (a conditional variance is "
                "<= 0): it has (near-)duplicate points or is not a covariance. Remove "
                "duplicate inputs or add a bias (b_std > 0).")
        lower = -(chol[rest, :i] @ ez[:i]) / np.sqrt(var)
        j = i + int(np.argmin(special.log_ndtr(-lower)))
        # swap i and j everywhere
        for arr in (a,):
            arr[[i, j], :] = arr[[j, i], :]
            arr[:, [i, j]] = arr[:, [j, i]]
        chol[[i, j], :] = chol[[j, i], :]
        perm[[i, j]] = perm[[j, i]]
        d = math.sqrt(a[i, i] - chol[i, :i] @ chol[i, :i])
        chol[i, i] = d
        chol[i + 1:, i] = (a[i + 1:, i] - chol[i + 1:, :i] @ chol[i, :i]) / d
        b = -(chol[i, :i] @ ez[:i]) / d
        ez[i] = math.exp(_log_phi(b) - float(special.log_ndtr(-b)))   # E[z | z > b]
    return chol, perm


def _ghk(k, s, samples, rng):
    a = k * s[:, None] * s[None, :]
    chol, _ = _ordered_cholesky(a)
    n = a.shape[0]
    z = np.zeros((samples, n))
    log_w = np.zeros(samples)
    for i in range(n):
        lower = -(z[:, :i] @ chol[i, :i]) / chol[i, i]          # need z_i > lower
        log_tail = special.log_ndtr(-lower)                     # log P(z_i > lower)
        log_w += log_tail
        u = rng.uniform(size=samples)
        # z_i = -Phi^-1(u * Phi(-lower)), sampled in log space so tiny tails stay finite
        z[:, i] = -special.ndtri_exp(np.log(u) + log_tail)
    return _log_mean(log_w)


def _log_mean(log_w):
    """``log mean(exp(log_w))`` and its standard error (delta method: the relative standard
    error of the mean weight)."""
    samples = log_w.size
    top = np.max(log_w)
    w = np.exp(log_w - top)
    mean = float(np.mean(w))
    log_p = float(top) + math.log(mean)
    stderr = float(np.std(w, ddof=1) / math.sqrt(samples) / mean) if samples > 1 else math.inf
    return log_p, stderr


def _mills(a):
    """:math:`\\phi(a) / P(Z > a)`, stable for every ``a``."""
    return np.exp(_log_phi(a) - special.log_ndtr(-a))


def _tilting(c, iters=60, tol=1e-9):
    r"""The minimax tilting point of Botev (2017) for the orthant :math:`z_i \ge -(C z)_i`:
    :math:`(x, \mu)` with :math:`\nabla\psi = 0`, where
    :math:`\psi(x, \mu) = \sum_i \mu_i^2/2 - x_i \mu_i + \log P(Z > -(C x)_i - \mu_i)`
    (the last :math:`\mu` is 0: that variable is integrated exactly). Damped Newton on the
    :math:`2(n-1)` equations, through the Schur complement of the diagonal
    :math:`\partial F_\mu / \partial \mu`. Returns ``(x, mu, converged)``."""
    n = c.shape[0]
    m = n - 1
    x, mu = np.zeros(n), np.zeros(n)
    cm = c[:, :m]

    def residual(x, mu):
        a = -(c @ x) - mu
        r = _mills(a)
        return np.concatenate([(mu - x + r)[:m], (c.T @ r - mu)[:m]]), a, r

    f, a, r = residual(x, mu)
    for _ in range(iters):
        if m == 0 or np.max(np.abs(f)) < tol:
            return x, mu, True
        q = r * (r - a)                                     # d r / d a, in (0, 1)
        d = 1.0 - q[:m]                                     # dF_mu/dmu (diagonal)
        b = -np.eye(m) - q[:m, None] * cm[:m]               # dF_mu/dx
        cq = cm.T * q[None, :]                              # C^T diag(q), (m, n)
        g = -np.eye(m) - cq[:, :m]                          # dF_x/dmu
        h = -cq @ cm                                        # dF_x/dx
        schur = h - g @ (b / d[:, None])
        rhs = -f[m:] + g @ (f[:m] / d)
        try:
            dx = np.linalg.solve(schur, rhs)
        except np.linalg.LinAlgError:
            return x, mu, False
        dmu = (-f[:m] - b @ dx) / d
        norm, step = np.sum(f * f), 1.0
        while step > 1e-4:
            x_new, mu_new = x.copy(), mu.copy()
            x_new[:m] += step * dx
            mu_new[:m] += step * dmu
            f_new, a_new, r_new = residual(x_new, mu_new)
            if np.all(np.isfinite(f_new)) and np.sum(f_new * f_new) < norm:
                break
            step *= 0.5
        else:
            return x, mu, False
        x, mu, f, a, r = x_new, mu_new, f_new, a_new, r_new
    return x, mu, bool(np.max(np.abs(f)) < tol)


def tilted_draws(k, s, samples, rng):
    r"""Draws ``g`` of shape ``(samples, n)`` inside the orthant :math:`s_i g_i > 0` from
    Botev's minimax-tilted proposal, and their log importance weights against
    :math:`\mathcal N(0, K)` (mean weight: the orthant probability). Each ``z_i`` (the whitened
    variables, in the Genz order) comes from a normal of mean ``mu_i`` truncated to its
    constraint; ``mu = 0`` (plain GHK) when no tilting point is found, whose more uneven
    weights then show it."""
    a = k * s[:, None] * s[None, :]
    chol, perm = _ordered_cholesky(a)
    n = a.shape[0]
    c = chol / np.diag(chol)[:, None] - np.eye(n)           # z_i >= -(C z)_i, C strictly lower
    _, mu, converged = _tilting(c)
    if not converged:
        mu = np.zeros(n)
    z = np.zeros((samples, n))
    log_w = np.zeros(samples)
    for i in range(n):
        t = -(z[:, :i] @ c[i, :i]) - mu[i]                  # z_i - mu_i must exceed t
        log_tail = special.log_ndtr(-t)
        u = rng.uniform(size=samples)
        z[:, i] = mu[i] - special.ndtri_exp(np.log(u) + log_tail)
        log_w += 0.5 * mu[i] ** 2 - z[:, i] * mu[i] + log_tail
    g = np.empty((samples, n))
    g[:, perm] = (z @ chol.T) * s[perm]                      # back to the original order
    return g, log_w


def _tilted(k, s, samples, rng):
    return _log_mean(tilted_draws(k, s, samples, rng)[1])


def log_orthant_probability(k, signs, *, method: str = "ep", samples: int = 20000,
                            seed: int = 0) -> LogProbability:
    r""":math:`\log P(s_i g_i > 0 \ \forall i)` for :math:`g \sim \mathcal N(0, K)`.

    Args:
        k: covariance of shape ``(n, n)`` (e.g. an NNGP kernel on ``n`` inputs), symmetric
            positive definite.
        signs: array of shape ``(n,)`` with entries ``-1``/``+1``.
        method: ``'ep'`` (expectation propagation, deterministic), ``'tilted'`` (minimax
            tilted importance sampling with ``samples`` draws and a standard error), ``'ghk'``
            (plain importance sampling, the same) or ``'exact'`` (closed form, ``n <= 3``).
        samples: draws for ``'tilted'`` and ``'ghk'``.
        seed: random seed for the samplers.

    Returns:
        A `LogProbability` ``(log_p, stderr)``.

    Raises:
        ValueError: for bad shapes, signs other than -1/+1, NaN/inf or zero-variance points.
        NotPositiveDefiniteError: when ``K`` is not positive semi-definite (``'ep'``) or
            cannot be factored (``'tilted'``, ``'ghk'``).
        FloatingPointError: when EP diverges on an ill-conditioned ``K``.

    Example:
        >>> import numpy as np
        >>> from ntkgp.predict import log_orthant_probability
        >>> k = np.array([[1.0, 0.5], [0.5, 1.0]])
        >>> round(float(np.exp(log_orthant_probability(k, [1, 1], method='exact').log_p)), 4)
        0.3333
        >>> round(float(np.exp(log_orthant_probability(k, [1, 1]).log_p)), 4)  # EP: close
        0.3327
    """
    checks.check_choice(method, "method", METHODS)
    k, s = check_orthant(k, signs)
    if method == "exact":
        return LogProbability(_exact(k, s), 0.0)
    if method == "ep":
        return LogProbability(float(ep_log_probabilities(k, s[None])[0]), 0.0)
    samples = checks.check_positive_int(samples, "samples")
    sampler = _tilted if method == "tilted" else _ghk
    return LogProbability(*sampler(k, s, samples, np.random.default_rng(seed)))
