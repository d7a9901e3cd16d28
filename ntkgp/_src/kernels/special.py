"""Gradient-safe special functions for the arc-cosine and related kernels.

Arc-cosine kernels evaluate functions of a correlation :math:`\\rho \\in [-1, 1]` whose naive
derivatives are infinite at :math:`\\rho = \\pm 1` (coincident inputs), although the kernels
themselves are smooth in the hyperparameters there. The functions here carry custom JVPs with
the analytically simplified derivatives, so gradients with respect to ``W_std``/``b_std`` stay
finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# Abramowitz & Stegun 4.4.46: arccos(x) = sqrt(1 - x) * P(x) on [0, 1], |error| <= 2e-8.
_ACOS_COEF = (1.5707963050, -0.2145988016, 0.0889789874, -0.0501743046,
              0.0308918810, -0.0170881256, 0.0066700901, -0.0012624911)


def _arccos_poly(x):
    """Vectorizable arccos accurate to float32 rounding (abs error <= 2e-8).

    XLA's CPU ``arccos`` is several times slower than a polynomial; the arc-cosine kernel
    evaluates one per pair of inputs per layer, so this is on the hot path in float32.
    """
    a = jnp.abs(x)
    p = jnp.asarray(_ACOS_COEF[-1], x.dtype)
    for c in _ACOS_COEF[-2::-1]:
        p = p * a + jnp.asarray(c, x.dtype)
    r = jnp.sqrt(jnp.maximum(1.0 - a, 0.0)) * p
    return jnp.where(x < 0, jnp.asarray(np.pi, x.dtype) - r, r)


def _arccos_any(x):
    if x.dtype == jnp.float32 or x.dtype == jnp.float16 or x.dtype == jnp.bfloat16:
        return _arccos_poly(x.astype(jnp.float32)).astype(x.dtype)
    return jnp.arccos(x)


@jax.custom_jvp
def arccos(x):
    """``arccos`` of ``x`` in [-1, 1]: fast polynomial in float32, exact ``jnp.arccos`` in float64.

    The derivative ``-1/sqrt(1 - x^2)`` is capped at ``1/sqrt(eps)``: where ``1 - x^2`` is
    below rounding, ``x`` is 1 to working precision (a point paired with itself or with a
    duplicate), its true tangent is 0, and the computed one is rounding noise that an uncapped
    slope would blow up to ~1e140 (it broke marginal-likelihood fits on data with duplicate
    rows).
    """
    return _arccos_any(x)


@arccos.defjvp
def _arccos_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    eps = jnp.finfo(x.dtype).eps
    return arccos(x), -t / jnp.sqrt(jnp.maximum(1.0 - x * x, eps))


@jax.custom_jvp
def arccos_j1(rho):
    r"""The first arc-cosine function :math:`J_1(\rho) = \sqrt{1-\rho^2} + (\pi - \arccos\rho)\rho`.

    :math:`J_1(\rho) / (2\pi)` is :math:`\mathbb{E}[\mathrm{relu}(u)\mathrm{relu}(v)]` for unit
    Gaussians of correlation :math:`\rho`. Its derivative :math:`\pi - \arccos\rho` is finite
    everywhere, which the custom JVP uses.
    """
    return jnp.sqrt(jnp.maximum(1.0 - rho * rho, 0.0)) + (np.pi - arccos(rho)) * rho


@arccos_j1.defjvp
def _arccos_j1_jvp(primals, tangents):
    (rho,), (t,) = primals, tangents
    return arccos_j1(rho), (np.pi - arccos(rho)) * t


@jax.custom_jvp
def safe_sqrt(x):
    """``sqrt(max(x, 0))`` whose derivative at 0 is 0 instead of infinity."""
    return jnp.sqrt(jnp.maximum(x, 0.0))


@safe_sqrt.defjvp
def _safe_sqrt_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    y = safe_sqrt(x)
    return y, jnp.where(x > 0, t / (2.0 * jnp.where(x > 0, y, 1.0)), 0.0)


def safe_rsqrt(x):
    """``1/sqrt(x)`` for ``x > 0``, else 0 (a zero-variance input has correlation 0)."""
    pos = x > 0
    return jnp.where(pos, jax.lax.rsqrt(jnp.where(pos, x, 1.0)), 0.0)
