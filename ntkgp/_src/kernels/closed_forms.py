r"""Closed-form kernels of more elementwise nonlinearities: sign, exponentials, Gabor,
polynomials (any degree, any pre-activation variance) and rectified monomials.

Same conventions as `ntkgp._src.kernels.activations`: each ``*_pair(c, s1, s2, eye,
need_dot)`` maps the covariance ``c`` and variances ``s1, s2`` of jointly Gaussian
pre-activations :math:`(u, v)` to :math:`(K', \dot K) = (\mathbb{E}[\phi(u)\phi(v)],
\mathbb{E}[\phi'(u)\phi'(v)])`, and each ``*_diag(s)`` gives :math:`\mathbb{E}[\phi(u)^2]`.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from numpy.polynomial import polynomial as npoly

from ntkgp._src.kernels.activations import correlation
from ntkgp._src.kernels.fast_functions import with_fast_inverse_trig
from ntkgp._src.kernels.special import arccos, arcsin, safe_sqrt

_PI = np.pi


# ---------------------------------------------------------------------------------------------
def sign_pair(c, s1, s2, eye, need_dot):
    r""":math:`\phi = \mathrm{sign}`: :math:`K' = \frac{2}{\pi}\arcsin\rho`; :math:`\dot K = 0`
    (the derivative vanishes almost everywhere, as for the finite network's gradients)."""
    rho = correlation(c, s1, s2, eye)
    k = 2.0 / _PI * arcsin(rho)
    return k, (jnp.zeros_like(k) if need_dot else None)


def sign_diag(s):
    return jnp.where(s > 0, jnp.ones((), s.dtype), jnp.zeros((), s.dtype))


# ---------------------------------------------------------------------------------------------
def exp_pair(c, s1, s2, eye, need_dot, a, b):
    r""":math:`\phi(x) = a e^{bx}`: :math:`K' = a^2 e^{b^2 (s_1 + s_2)/2 + b^2 c}`,
    :math:`\dot K = b^2 K'` (moment generating function of a Gaussian)."""
    k = a * a * jnp.exp(b * b * ((s1 + s2) / 2 + c))
    return k, (b * b * k if need_dot else None)


def exp_diag(s, a, b):
    return a * a * jnp.exp(2 * b * b * s)


def gaussian_pair(c, s1, s2, eye, need_dot, a, b):
    r""":math:`\phi(x) = a e^{bx^2}`: :math:`K' = a^2 D^{-1/2}`,
    :math:`\dot K = 4a^2b^2 c\,D^{-3/2}` with :math:`D = (1-2bs_1)(1-2bs_2) - 4b^2c^2`
    (finite only while :math:`D > 0`, always so for :math:`b \le 0`)."""
    det = (1 - 2 * b * s1) * (1 - 2 * b * s2) - 4 * b * b * c * c
    r = jax.lax.rsqrt(det)
    k = a * a * r
    return k, (4 * a * a * b * b * c * r * r * r if need_dot else None)


def gaussian_diag(s, a, b):
    return a * a * jax.lax.rsqrt(1 - 4 * b * s)


def _gabor(c, s1, s2, need_dot):
    r"""``(K', K_dot)`` of :math:`\phi(x) = e^{-x^2}\sin x`: :math:`K' =
    \mathbb{E}[e^{-u^2}\sin u\; e^{-v^2}\sin v]` from the Gaussian integral
    :math:`\mathbb{E}[e^{-|x|^2 + i t\cdot x}] = D^{-1/2} e^{-t^\top\Sigma(I+2\Sigma)^{-1}t/2}`,
    :math:`D = \det(I + 2\Sigma)`, with :math:`t = (1, \mp 1)`:

    .. math:: K' = \tfrac12 D^{-1/2} e^{-m/(2D)} \left(e^{2c/D} - 1\right), \qquad
              m = s_1 + s_2 + 4(s_1 s_2 - c^2) + 2c,

    and :math:`\dot K = \partial K'/\partial c` (Price's theorem) by hand, with
    :math:`\partial D/\partial c = -8c`: one reciprocal square root, one exponential and one
    ``expm1`` per entry (forward-mode autodiff of the same formula took 1.5x as long, with two
    divisions and a second exponential)."""
    d = 4 * (s1 * s2 - c * c)
    r = jax.lax.rsqrt(1 + 2 * (s1 + s2) + d)
    inv = r * r
    m = s1 + s2 + d + 2 * c
    e = jnp.exp(-0.5 * m * inv)
    em1 = jnp.expm1(2 * c * inv)
    k = 0.5 * r * e * em1
    if not need_dot:
        return k, None
    # d/dc of log(D^{-1/2}) = 4c/D, of -m/(2D) and of 2c/D
    d_log = 4 * c * inv - 0.5 * inv * ((2 - 8 * c) + 8 * c * m * inv)
    d_u = 2 * inv * (1 + 8 * c * c * inv)
    return k, k * d_log + 0.5 * r * e * (em1 + 1) * d_u


def gabor_pair(c, s1, s2, eye, need_dot):
    r""":math:`\phi(x) = e^{-x^2}\sin x` (`_gabor`)."""
    s1b, s2b = jnp.broadcast_to(s1, c.shape), jnp.broadcast_to(s2, c.shape)
    if eye is not None:
        c = jnp.where(eye, s1b, c)
    return _gabor(c, s1b, s2b, need_dot)


def gabor_diag(s):
    return _gabor(s, s, s, False)[0]


# ---------------------------------------------------------------------------------------------
def exp_normalized_pair(c, s1, s2, eye, need_dot, gamma, shift, do_clip):
    r"""The normalized Gaussian kernel: :math:`K' = \sqrt{s_1s_2}\,e^{\gamma(\rho + \text{shift})}`,
    :math:`\dot K = \gamma e^{\gamma(\rho + \text{shift})}`, :math:`\rho = c/\sqrt{s_1 s_2}`
    (clipped to [-1, 1] with ``do_clip``)."""
    sq = safe_sqrt(s1) * safe_sqrt(s2)
    rho = jnp.where(sq > 0, c / jnp.where(sq > 0, sq, 1), 0)
    if do_clip:
        rho = jnp.clip(rho, -1.0, 1.0)
    if eye is not None:
        rho = jnp.where(eye, jnp.ones((), rho.dtype), rho)
    e = jnp.exp(gamma * (rho + shift))
    return sq * e, (gamma * e if need_dot else None)


def exp_normalized_diag(s, gamma, shift, do_clip):
    return s * jnp.exp(gamma * (1.0 + shift))


# ---------------------------------------------------------------------------------------------
# Polynomials: expand phi(sqrt(s) z) in normalized Hermite polynomials He_l(z) / sqrt(l!)
# ---------------------------------------------------------------------------------------------
def hermite_tables(coef: Sequence[float]) -> np.ndarray:
    r"""Table ``T[l, i]`` with :math:`\phi(\sqrt{s} z) = \sum_l s^{l/2} R_l(s)\,
    He_l(z)/\sqrt{l!}`, :math:`R_l(s) = \sum_i T[l, i]\,s^i`.

    From :math:`x^k = \sum_i \frac{k!}{2^i i! (k-2i)!} He_{k-2i}(x)`:
    :math:`T[l, i] = a_{l+2i}\,\frac{(l+2i)!}{2^i\,i!\,\sqrt{l!}}`. Then, by Mehler's formula,
    :math:`\mathbb{E}[\phi(u)\phi(v)] = \sum_l R_l(s_1) R_l(s_2)\,c^l` — a polynomial in
    ``c`` with no division by the variances (exact also where they vanish).
    """
    coef = np.asarray(coef, dtype=np.float64)
    n = len(coef)
    table = np.zeros((n, (n + 1) // 2))
    for order in range(n):
        for i in range((n - 1 - order) // 2 + 1):
            k = order + 2 * i
            table[order, i] = coef[k] * math.factorial(k) / (
                2 ** i * math.factorial(i) * math.sqrt(math.factorial(order)))
    return table


def _horner(coefs, x):
    acc = jnp.zeros_like(x) + coefs[-1]
    for a in coefs[-2::-1]:
        acc = acc * x + a
    return acc


def _r_values(table, s):
    return [_horner([float(t) for t in row], s) for row in table]


def polynomial_pair(c, s1, s2, eye, need_dot, table):
    r""":math:`K' = \sum_l R_l(s_1)R_l(s_2)c^l`, :math:`\dot K = \sum_l l R_l(s_1)R_l(s_2)
    c^{l-1}` (see `hermite_tables`)."""
    if eye is not None:
        c = jnp.where(eye, s1, c)
    prods = [a * b for a, b in zip(_r_values(table, s1), _r_values(table, s2))]
    k = jnp.zeros_like(c) + prods[-1]
    for p in prods[-2::-1]:
        k = k * c + p
    dot = None
    if need_dot:
        dot = jnp.zeros_like(c)
        for order in range(len(prods) - 1, 0, -1):
            dot = dot * c + order * prods[order]
    return k, dot


def polynomial_diag(s, table):
    vals = _r_values(table, s)
    out = jnp.zeros_like(s) + vals[-1] * vals[-1]
    for v in vals[-2::-1]:
        out = out * s + v * v
    return out


def hermite_coefficients(degree: int) -> np.ndarray:
    """Power-basis coefficients of the normalized probabilists' Hermite polynomial
    :math:`He_n(x)/\\sqrt{n!}` (unit second moment under :math:`N(0, 1)`)."""
    basis = np.zeros(degree + 1)
    basis[-1] = 1.0
    return np.polynomial.hermite_e.herme2poly(basis) / math.sqrt(math.factorial(degree))


# ---------------------------------------------------------------------------------------------
# Rectified monomials: the arc-cosine kernels of order n (Cho & Saul 2009)
# ---------------------------------------------------------------------------------------------
def arccos_polynomials(n: int):
    r"""Polynomials ``(Q, P)`` (power-basis coefficients in :math:`x = \cos\theta`) with
    :math:`J_n(\theta) = (\pi - \theta)\,Q(x) + \sin\theta\,P(x)`.

    Cho & Saul's :math:`J_n = (-1)^n \sin^{2n+1}\theta\,(\tfrac{1}{\sin\theta}
    \partial_\theta)^n \tfrac{\pi-\theta}{\sin\theta}` equals
    :math:`\sin^{2n+1}\theta\;\partial_x^n [g\,w]` with :math:`g = \pi - \arccos x`,
    :math:`w = (1-x^2)^{-1/2}` (:math:`g' = w`, :math:`w' = x w^3`). The derivative is kept
    symbolically as a sum of :math:`g A(x) w^m` and :math:`B(x) w^m` terms; multiplying by
    :math:`\sin^{2n+1} = w^{-(2n+1)}` leaves only non-negative powers of
    :math:`\sin\theta`, so the kernel has no singularity at :math:`\theta = 0` (where
    evaluating the quotient form gives 0/0).
    """
    terms = {(True, 1): np.array([1.0])}
    x = np.array([0.0, 1.0])
    for _ in range(n):
        new = {}

        def add(key, poly):
            new[key] = npoly.polyadd(new.get(key, np.zeros(1)), poly)

        for (has_g, m), a in terms.items():
            add((has_g, m), npoly.polyder(a) if len(a) > 1 else np.zeros(1))
            add((has_g, m + 2), m * npoly.polymul(x, a))
            if has_g:
                add((False, m + 1), a)
        terms = new
    one_minus_x2 = np.array([1.0, 0.0, -1.0])
    q, p = np.zeros(1), np.zeros(1)
    for (has_g, m), a in terms.items():
        e = 2 * n + 1 - m  # the power of sin(theta) the term is left with
        if has_g:  # m odd: e even
            q = npoly.polyadd(q, npoly.polymul(a, npoly.polypow(one_minus_x2, e // 2)))
        else:  # m even: e odd, one sin(theta) factored out
            p = npoly.polyadd(p, npoly.polymul(a, npoly.polypow(one_minus_x2, (e - 1) // 2)))
    return npoly.polytrim(q), npoly.polytrim(p)


def _arccos_j(rho, q, p):
    theta = arccos(rho)
    sin_t = safe_sqrt(1 - rho * rho)
    return (_PI - theta) * _horner([float(v) for v in q], rho) + sin_t * _horner(
        [float(v) for v in p], rho)


def _sigma_power(s1, s2, n):
    if n == 0:
        return 1.0
    return (safe_sqrt(s1) * safe_sqrt(s2)) ** n


def rectified_monomial_pair(c, s1, s2, eye, need_dot, degree, polys):
    r""":math:`\phi(x) = \max(x, 0)^n`: :math:`K' = \frac{(s_1s_2)^{n/2}}{2\pi}J_n(\theta)`,
    :math:`\dot K = n^2\frac{(s_1s_2)^{(n-1)/2}}{2\pi}J_{n-1}(\theta)` (for :math:`n = 0` the
    derivative vanishes almost everywhere: 0)."""
    rho = correlation(c, s1, s2, eye)
    k = _sigma_power(s1, s2, degree) / (2 * _PI) * _arccos_j(rho, *polys[degree])
    dot = None
    if need_dot:
        if degree == 0:
            dot = jnp.zeros_like(k)
        else:
            dot = (degree * degree * _sigma_power(s1, s2, degree - 1) / (2 * _PI)
                   * _arccos_j(rho, *polys[degree - 1]))
    return k, dot


def rectified_monomial_diag(s, degree):
    double_fact = math.prod(range(2 * degree - 1, 0, -2))
    return double_fact / 2 * s ** degree


# ---------------------------------------------------------------------------------------------
def user_pair(c, s1, s2, eye, need_dot, nngp_fn: Callable, d_nngp_fn: Optional[Callable]):
    """A user's closed form ``nngp_fn(cov12, var1, var2)`` (scalar, vectorized here);
    ``d_nngp_fn`` defaults to its derivative in ``cov12`` by autodiff. Both are evaluated with
    ntkgp's fast inverse sine and cosine (`fast_functions.with_fast_inverse_trig`)."""
    s1b, s2b = jnp.broadcast_to(s1, c.shape), jnp.broadcast_to(s2, c.shape)
    if eye is not None:
        c = jnp.where(eye, s1b, c)
    nngp_fn = with_fast_inverse_trig(nngp_fn)
    k = jnp.vectorize(nngp_fn)(c, s1b, s2b)
    dot = None
    if need_dot:
        d = jnp.vectorize(with_fast_inverse_trig(d_nngp_fn) if d_nngp_fn else
                          jax.grad(nngp_fn))
        dot = d(c, s1b, s2b)
    return jnp.asarray(k, c.dtype), (None if dot is None else jnp.asarray(dot, c.dtype))


def user_diag(s, nngp_fn: Callable):
    return jnp.asarray(jnp.vectorize(with_fast_inverse_trig(nngp_fn))(s, s, s), s.dtype)
