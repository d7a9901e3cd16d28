r"""Infinite-width kernels of elementwise nonlinearities.

For pre-activations :math:`(u, v)` that are jointly Gaussian with variances :math:`s_1, s_2` and
covariance :math:`c`, a nonlinearity :math:`\phi` maps the NNGP and NTK as

.. math::
    K' = \mathbb{E}[\phi(u)\phi(v)], \qquad
    \Theta' = \Theta \cdot \dot K, \quad \dot K = \mathbb{E}[\phi'(u)\phi'(v)].

Each ``*_pair`` function below takes ``c`` of shape ``(N1, N2)``, ``s1`` of shape ``(N1, 1)``,
``s2`` of shape ``(1, N2)`` and returns ``(K', K_dot)`` (``K_dot`` is ``None`` when not asked
for); each ``*_diag`` maps the variances ``s`` of shape ``(N,)`` to :math:`\mathbb{E}[\phi(u)^2]`.
By Price's theorem :math:`\dot K = \partial K' / \partial c`, which the tests check.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src.kernels.kernel import Kernel
from ntkgp._src.kernels.special import arccos, arccos_j1, arcsin, safe_rsqrt, safe_sqrt
from ntkgp._src.kernels.stored import materialized

_PI = np.pi


def correlation(c, s1, s2, eye):
    r""":math:`\rho = c / \sqrt{s_1 s_2}` clipped to [-1, 1]; exactly 1 on ``eye`` (x1 is x2).

    Forcing the diagonal matters: :math:`\arccos` has infinite slope at 1, so a rounding error
    of one ulp in :math:`\rho` would cost about :math:`\sqrt{\epsilon}` relative error.
    """
    rho = jnp.clip(c * (safe_rsqrt(s1) * safe_rsqrt(s2)), -1.0, 1.0)
    if eye is not None:
        rho = jnp.where(eye, jnp.ones((), rho.dtype), rho)
    return rho


# ---------------------------------------------------------------------------------------------
# ABRelu family: phi(x) = a * min(x, 0) + b * max(x, 0)  (Relu, LeakyRelu, Abs, identity)
# ---------------------------------------------------------------------------------------------
def abrelu_pair(c, s1, s2, eye, need_dot, a, b):
    r"""Arc-cosine kernel of order 1 for :math:`\phi(x) = a\min(x,0) + b\max(x,0)`.

    .. math::
        K' = \sqrt{s_1 s_2}\left[\frac{(a-b)^2}{2\pi} J_1(\rho) + ab\,\rho\right], \quad
        \dot K = \frac{a^2+b^2}{2} - \frac{(a-b)^2}{2\pi}\arccos\rho,

    with :math:`J_1(\rho) = \sqrt{1-\rho^2} + (\pi - \arccos\rho)\rho` (Cho & Saul 2009).
    """
    rho = correlation(c, s1, s2, eye)
    sq = safe_sqrt(s1) * safe_sqrt(s2)
    k = sq * ((a - b) ** 2 / (2 * _PI) * arccos_j1(rho) + a * b * rho)
    dot = None
    if need_dot:
        dot = (a * a + b * b) / 2 - (a - b) ** 2 / (2 * _PI) * arccos(rho)
    return k, dot


def abrelu_diag(s, a, b):
    return (a * a + b * b) / 2 * s


# ---------------------------------------------------------------------------------------------
# Erf: phi(x) = a * erf(b x) + c0
# ---------------------------------------------------------------------------------------------
def erf_pair(c, s1, s2, eye, need_dot, a, b, c0):
    r"""Williams (1997): :math:`K' = a^2 \frac{2}{\pi}\arcsin\frac{2b^2c}
    {\sqrt{(1+2b^2s_1)(1+2b^2s_2)}} + c_0^2`,
    :math:`\dot K = a^2b^2\frac{4}{\pi}\left[(1+2b^2s_1)(1+2b^2s_2) - 4b^4c^2\right]^{-1/2}`."""
    b2 = b * b
    # per-input factors: q = p^{-1/2} with p = (1 + 2b^2 s1)(1 + 2b^2 s2), and
    # p - 4b^4c^2 = p (1 - arg^2); a reciprocal square root of p per entry took twice as long
    # where XLA:CPU does not vectorize (rows of 10 positions: f32 11 -> 5.5 ns per entry)
    q = jax.lax.rsqrt(1 + 2 * b2 * s1) * jax.lax.rsqrt(1 + 2 * b2 * s2)
    arg = jnp.clip(2 * b2 * c * q, -1.0, 1.0)
    if eye is not None:  # keep the diagonal exactly equal to `erf_diag`
        arg = jnp.where(eye, 2 * b2 * s1 / (1 + 2 * b2 * s1), arg)
    k = a * a * (2 / _PI) * arcsin(arg) + c0 * c0
    dot = None
    if need_dot:
        dot = a * a * b2 * (4 / _PI) * q / jnp.sqrt((1 - arg) * (1 + arg))
    return k, dot


def erf_diag(s, a, b, c0):
    b2 = b * b
    return a * a * (2 / _PI) * arcsin(2 * b2 * s / (1 + 2 * b2 * s)) + c0 * c0


# ---------------------------------------------------------------------------------------------
# Sin: phi(x) = a * sin(b x + c0)
# ---------------------------------------------------------------------------------------------
def sin_pair(c, s1, s2, eye, need_dot, a, b, c0):
    r""":math:`K' = \frac{a^2}{2}\left[e^{-b^2(s_1+s_2-2c)/2}
    - \cos(2c_0)\,e^{-b^2(s_1+s_2+2c)/2}\right]`;
    :math:`\dot K` is the same with :math:`a^2b^2` and a plus sign."""
    b2 = b * b
    e_minus = jnp.exp(-b2 * (s1 + s2 - 2 * c) / 2)
    e_plus = jnp.exp(-b2 * (s1 + s2 + 2 * c) / 2) * jnp.cos(2 * c0)
    k = a * a / 2 * (e_minus - e_plus)
    dot = a * a * b2 / 2 * (e_minus + e_plus) if need_dot else None
    return k, dot


def sin_diag(s, a, b, c0):
    return a * a / 2 * (1 - jnp.exp(-2 * b * b * s) * jnp.cos(2 * c0))


# ---------------------------------------------------------------------------------------------
# GELU: phi(x) = x * Phi(x)  (exact, Gaussian CDF)
# ---------------------------------------------------------------------------------------------
def _gelu_k(c, s1, s2, parts=False):
    r"""E[u Φ(u) v Φ(v)] by writing Φ(u) = P(z1 <= u) for independent standard z1, z2.

    With :math:`a = u - z_1`, :math:`b = v - z_2` (variances :math:`A = s_1+1`, :math:`B = s_2+1`,
    covariance :math:`c`), the expectation is :math:`\mathbb{E}[uv\,1\{a>0\}1\{b>0\}]`. Regress
    :math:`u, v` on :math:`(a, b)` and use the Gaussian orthant moments
    :math:`P = (\pi-\theta)/2\pi`, :math:`\mathbb{E}[ab1] = \sqrt{AB}J_1(\rho)/2\pi`,
    :math:`\mathbb{E}[a^2 1] = A(\pi - \theta + \rho\sqrt{1-\rho^2})/2\pi`.
    """
    A, B = s1 + 1, s2 + 1
    ra, rb = jax.lax.rsqrt(A), jax.lax.rsqrt(B)  # per input, not per pair
    inv = 1 / (A * B - c * c)
    rho = jnp.clip(c * (ra * rb), -1.0, 1.0)
    theta = arccos(rho)
    sin_t = safe_sqrt(1 - rho * rho)
    p_orth = (_PI - theta) / (2 * _PI)
    m_ab = (A * ra) * (B * rb) * arccos_j1(rho) / (2 * _PI)
    m_sq = (_PI - theta + rho * sin_t) / (2 * _PI)
    r12 = c * inv
    alpha1, beta2 = (s1 * B - c * c) * inv, (s2 * A - c * c) * inv
    k = (alpha1 * r12 * A * m_sq + (alpha1 * beta2 + r12 * r12) * m_ab
         + r12 * beta2 * B * m_sq + r12 * p_orth)
    return (k, p_orth, ra, rb, inv) if parts else k


def gelu_pair(c, s1, s2, eye, need_dot):
    r"""Exact GELU kernel and its derivative in the covariance,

    .. math::
        \dot K = \mathbb{E}[\phi'(u)\phi'(v)] = \frac{\pi - \theta}{2\pi}
        + \frac{c}{2\pi\sqrt{D}}\left(\frac{1}{A} + \frac{1}{B} + \frac{1}{D}\right),
        \qquad D = AB - c^2,

    with :math:`\phi'(u) = \Phi(u) + u\,\varphi(u)`: the orthant probability of
    :math:`\mathbb{E}[\Phi(u)\Phi(v)]`, the two cross terms
    :math:`\mathbb{E}[\Phi(u)\,v\varphi(v)] = c / (2\pi B\sqrt{D})` (and :math:`A` for the
    other) and :math:`\mathbb{E}[u\varphi(u)\,v\varphi(v)] = c / (2\pi D^{3/2})` (Gaussian
    integrals against the tilted density). One square root per entry on top of
    :math:`K'` instead of its forward-mode derivative.
    """
    s1b, s2b = jnp.broadcast_to(s1, c.shape), jnp.broadcast_to(s2, c.shape)
    if eye is not None:
        c = jnp.where(eye, s1b, c)
    if not need_dot:
        return _gelu_k(c, s1b, s2b), None
    k, p_orth, ra, rb, inv = _gelu_k(c, s1b, s2b, parts=True)
    return k, p_orth + c * jnp.sqrt(inv) / (2 * _PI) * (ra * ra + rb * rb + inv)


def gelu_diag(s):
    return _gelu_k(s, s, s)


# ---------------------------------------------------------------------------------------------
# Any elementwise function: Gauss-Hermite quadrature
# ---------------------------------------------------------------------------------------------
@functools.cache
def _hermite(degree: int):
    """Nodes and weights for E over N(0, 1), made exactly symmetric under z -> -z."""
    t, w = np.polynomial.hermite.hermgauss(degree)
    z, w = np.sqrt(2.0) * t, w / np.sqrt(np.pi)
    return 0.5 * (z - z[::-1]), 0.5 * (w + w[::-1])


def elementwise_derivative(fn: Callable) -> Callable:
    """``x -> fn'(x)`` for an elementwise ``fn`` (forward-mode, any shape)."""
    return lambda x: jax.jvp(fn, (x,), (jnp.ones_like(x),))[1]


def _gauss_hermite_2d(fn, c, s1, s2, eye, degree):
    r"""E[fn(u) fn(v)] with :math:`u = \sqrt{s_1}(\alpha z_1 + \beta z_2)`,
    :math:`v = \sqrt{s_2}(\alpha z_1 - \beta z_2)`, :math:`\alpha^2 - \beta^2 = \rho`.

    Swapping the two inputs is the mirror :math:`z_2 \to -z_2`, which maps the symmetric node
    set onto itself, so the quadrature kernel is exactly symmetric at any degree (factoring
    :math:`v` on :math:`u` instead is not, by the quadrature error).
    """
    z, w = _hermite(degree)
    z, w = jnp.asarray(z, c.dtype), jnp.asarray(w, c.dtype)
    rho = correlation(c, s1, s2, eye)
    alpha = safe_sqrt((1 + rho) / 2)
    beta = safe_sqrt((1 - rho) / 2)
    r1, r2 = safe_sqrt(s1), safe_sqrt(s2)

    def outer(acc, zw_i):
        z_i, w_i = zw_i

        def inner(acc_j, zw_j):
            z_j, w_j = zw_j
            a, b = alpha * z_i, beta * z_j
            return acc_j + w_j * fn(r1 * (a + b)) * fn(r2 * (a - b)), None

        inner_sum, _ = jax.lax.scan(inner, jnp.zeros_like(c), (z, w))
        return acc + w_i * inner_sum, None

    out, _ = jax.lax.scan(outer, jnp.zeros_like(c), (z, w))
    return out


def quadrature_pair(c, s1, s2, eye, need_dot, fn, degree):
    r""":math:`\mathbb{E}[\phi(u)\phi(v)]` by ``degree``\ ² -point Gauss–Hermite quadrature.

    Exact for polynomials of degree below ``2 * degree``; accurate for smooth activations, slow
    to converge for kinks (use the closed forms for ReLU-like functions).
    """
    k = _gauss_hermite_2d(fn, c, s1, s2, eye, degree)
    dot = None
    if need_dot:
        dot = _gauss_hermite_2d(elementwise_derivative(fn), c, s1, s2, eye, degree)
    return k, dot


def quadrature_diag(s, fn, degree):
    z, w = _hermite(degree)
    z, w = jnp.asarray(z, s.dtype), jnp.asarray(w, s.dtype)
    lead = (1,) * s.ndim  # any shape: (N,) or (N, *S)
    vals = fn(safe_sqrt(s)[..., None] * z.reshape(lead + z.shape))
    return jnp.sum(w.reshape(lead + w.shape) * vals * vals, axis=-1)


# ---------------------------------------------------------------------------------------------
def pair_broadcast(k: Kernel, v1, v2):
    """Per-position quantities of inputs 1 and 2, shaped ``(N1, N2*)`` to broadcast against
    ``k.nngp`` (same rank; the other input's axes have size 1)."""
    r = k.spatial_ndim
    n1, n2 = v1.shape[0], v2.shape[0]
    s = v1.shape[1:]
    if k.full_spatial:
        return (v1.reshape((n1, 1) + s + (1,) * r), v2.reshape((1, n2) + (1,) * r + s))
    return v1.reshape((n1, 1) + s), v2.reshape((1, n2) + s)


def _iota_eq(shape, a, b):
    return (jax.lax.broadcasted_iota(jnp.int32, shape, a)
            == jax.lax.broadcasted_iota(jnp.int32, shape, b))


def spatial_eye(s, lead: int):
    """Boolean ``(1,)*lead + S + S``: a position paired with itself."""
    p = 1
    for v in s:
        p *= v
    return _iota_eq((p, p), 0, 1).reshape((1,) * lead + tuple(s) + tuple(s))


_blocks = threading.local()


@contextlib.contextmanager
def inputs_same_if(flag):
    """Within this context (on this thread), kernels of two inputs with as many examples each
    are kernels of an input with itself where the traced boolean scalar ``flag`` is true.

    For the blocks of a symmetric kernel (`nn.blocking`): one trace of the network serves the
    diagonal blocks (a block with itself: self-pairs exact) and the others, instead of one
    trace (and compiled copy) for each."""
    before = getattr(_blocks, "same", None)
    _blocks.same = flag
    try:
        yield
    finally:
        _blocks.same = before


def pair_eye(k: Kernel):
    """Where ``k.nngp`` pairs an input (and position) with itself: a boolean array that
    broadcasts against ``k.nngp``, or ``None`` where it pairs none (``x1`` is not ``x2``)."""
    flag = None
    if not k.x1_is_x2:
        flag = getattr(_blocks, "same", None)
        if flag is None or k.cov2 is None or k.cov1.shape[0] != k.cov2.shape[0]:
            return None
    n, r = k.cov1.shape[0], k.spatial_ndim
    s = k.spatial_shape
    if not k.full_spatial:
        eye = _iota_eq((n, n), 0, 1).reshape((n, n) + (1,) * r)
    else:
        eye = _iota_eq((n, n), 0, 1).reshape((n, n) + (1,) * (2 * r)) & spatial_eye(s, 2)
    return eye if flag is None else eye & flag


def self_pair(fn, cov, v, r: int):
    """``fn(c, s1, s2, eye)`` on the self-covariance ``cov`` (N, *S, *S) of each input."""
    n, s = v.shape[0], v.shape[1:]
    return fn(cov, v.reshape((n,) + s + (1,) * r), v.reshape((n,) + (1,) * r + s),
              spatial_eye(s, 1))


def apply_activation(k: Kernel, pair: Callable, diag: Callable) -> Kernel:
    """Map a `Kernel` through a nonlinearity given its ``pair`` and ``diag`` functions."""
    v1, v2 = k.variances(1), k.variances(2)
    if k.full_spatial:
        # Stored: fused, XLA recomputed each position's variance (the diagonal of the
        # self-covariance, and the convolution's sums before it) inside its loop over every
        # pair of positions. f32, 3 SAME conv + ReLU + GlobalAvgPool, kernel(x, x), fresh
        # processes, stored against fused: 10 x 10 (N=32) 0.18-0.24 against 0.58 s, 12 x 12
        # (N=24) 0.15-0.24 against 0.35-0.41 s, 16 x 16 (N=24) 0.34 against 0.56 s, 1-D
        # sequences of 128 (N=30) 0.10 against 0.13 s; 8 x 8, Myrtle-5, the transformer and
        # VALID convolutions with pooling equal within noise; Erf on 10 x 10 4% slower.
        v1, v2 = materialized(lambda v: v, (v1, v2))
    s1, s2 = pair_broadcast(k, v1, v2)
    eye = pair_eye(k)
    need_dot = k.ntk is not None

    nngp, dot = pair(k.nngp, s1, s2, eye, need_dot)
    ntk = k.ntk * dot if need_dot else None
    if k.full_spatial:
        def self_k(c, a, b, e):
            return pair(c, a, b, e, False)[0]

        cov1 = self_pair(self_k, k.cov1, v1, k.spatial_ndim)
        cov2 = None if k.cov2 is None else self_pair(self_k, k.cov2, v2, k.spatial_ndim)
    else:
        cov1 = diag(k.cov1)
        cov2 = None if k.cov2 is None else diag(k.cov2)
    return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, is_gaussian=False)
