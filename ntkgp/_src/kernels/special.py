"""Gradient-safe special functions for the arc-cosine and related kernels.

Arc-cosine kernels evaluate functions of a correlation :math:`\\rho \\in [-1, 1]` whose naive
derivatives are infinite at :math:`\\rho = \\pm 1` (coincident inputs), although the kernels
themselves are smooth in the hyperparameters there. The functions here carry custom JVPs with
the analytically simplified derivatives, so gradients with respect to ``W_std``/``b_std`` stay
finite.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# arcsin(y) = y + y^3 P(y^2) on [0, 1/2]: P interpolates (arcsin(sqrt z) - sqrt z) / z^(3/2) at
# the Chebyshev nodes of z in [0, 1/4] (computed in 60-digit arithmetic, rounded to the dtype).
# Degree 11 holds arcsin to 1 ulp in float64, degree 4 in float32 on [0, 1/2]; with the argument
# reduction below, arcsin and arccos are within 2.5 ulp over [-1, 1] (mean 0.4 ulp; tested in
# tests/kernels/test_special.py).
_ASIN_COEF = {
    np.dtype(np.float64): (0.1666666666666665, 0.07500000000020764, 0.044642857103423646,
                           0.03038194736709848, 0.02237204763174451, 0.017355259955786323,
                           0.013929652902326633, 0.011875494382636922, 0.0078029494773533175,
                           0.01603551434914882, -0.010749050339697808, 0.028169218060881414),
    np.dtype(np.float32): (0.16666672414795305, 0.07498855072600821, 0.04500138006991017,
                           0.026554542206161328, 0.038085023561092654),
}
# pi/2 as the dtype's nearest value plus the rest (Cody & Waite): sums with it keep the last bit.
_PIO2 = {np.dtype(np.float64): (np.float64(np.pi / 2), np.float64(6.123233995736766e-17)),
         np.dtype(np.float32): (np.float32(np.pi / 2),
                                np.float32(np.pi / 2 - np.float64(np.float32(np.pi / 2))))}


def _asin_core(x):
    """``(y, q, big)`` for ``x`` in [-1, 1]: ``arcsin(y) = y + q`` of the reduced argument
    ``y = |x|`` (``|x| <= 1/2``) or ``y = sqrt((1 - |x|) / 2)`` (``big``: above 1/2).

    Then ``arcsin|x| = t`` or ``pi/2 - 2t`` and ``arccos|x| = pi/2 - t`` or ``2t`` with
    ``t = y + q`` (summed in the order that rounds least): one polynomial and one square root
    per element, no cancellation (``1 - |x|`` is exact for ``|x| >= 1/2``). XLA's CPU
    ``arcsin``/``arccos`` are several times slower, and the arc-cosine kernels evaluate one per
    pair of inputs per layer.
    """
    coef = _ASIN_COEF[np.dtype(x.dtype)]
    a = jnp.abs(x)
    big = a > 0.5
    y = jnp.where(big, jnp.sqrt(jnp.maximum(1.0 - a, 0.0) * 0.5), a)
    z = y * y
    p = jnp.asarray(coef[-1], x.dtype)
    for c in coef[-2::-1]:
        p = p * z + jnp.asarray(c, x.dtype)
    return y, y * z * p, big


def _in_float(f, fallback, x):
    """``f`` in float32/float64; narrower floats through float32; anything else ``fallback``."""
    if np.dtype(x.dtype) in _ASIN_COEF:
        return f(x)
    if jnp.issubdtype(x.dtype, jnp.floating) and x.dtype.itemsize < 4:
        return f(x.astype(jnp.float32)).astype(x.dtype)
    return fallback(x)


def _arccos_fast(x):
    y, q, big = _asin_core(x)
    hi, lo = _PIO2[np.dtype(x.dtype)]
    r = jnp.where(big, 2 * (y + q), hi - (y + (q - lo)))  # arccos|x|
    return jnp.where(x < 0, (2 * hi - r) + 2 * lo, r)


def _arcsin_fast(x):
    y, q, big = _asin_core(x)
    hi, lo = _PIO2[np.dtype(x.dtype)]
    r = jnp.where(big, (hi - 2 * y) + (lo - 2 * q), y + q)  # arcsin|x|
    return jnp.where(x < 0, -r, r)


def _arccos_any(x):
    return _in_float(_arccos_fast, jnp.arccos, x)


@jax.custom_jvp
def arcsin(x):
    """``arcsin`` of ``x`` in [-1, 1], within 2.5 units in the last place in float32 and
    float64; the derivative ``1/sqrt(1 - x^2)`` is capped at ``1/sqrt(eps)`` as `arccos`'s."""
    return _in_float(_arcsin_fast, jnp.arcsin, x)


@arcsin.defjvp
def _arcsin_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    eps = jnp.finfo(x.dtype).eps
    return arcsin(x), t / jnp.sqrt(jnp.maximum(1.0 - x * x, eps))


@jax.custom_jvp
def arccos(x):
    """``arccos`` of ``x`` in [-1, 1], within 2.5 units in the last place in float32 and float64.

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


def _nan_outside(f, x):
    """``f(x)`` on [-1, 1], NaN elsewhere (as XLA's inverse sine and cosine)."""
    return jnp.where(jnp.abs(x) <= 1, f(x), jnp.asarray(jnp.nan, x.dtype))


@jax.custom_jvp
def xla_arcsin(x):
    """``jnp.arcsin`` to the letter (NaN outside [-1, 1]; derivative ``1/sqrt(1 - x^2)``,
    uncapped) by the fast polynomial of `arcsin` (within 2.5 ulp in float32 and float64)."""
    return _in_float(functools.partial(_nan_outside, _arcsin_fast), jnp.arcsin, x)


@xla_arcsin.defjvp
def _xla_arcsin_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return xla_arcsin(x), t * jax.lax.rsqrt(1 - x * x)


@jax.custom_jvp
def xla_arccos(x):
    """``jnp.arccos`` to the letter, by the fast polynomial (see `xla_arcsin`)."""
    return _in_float(functools.partial(_nan_outside, _arccos_fast), jnp.arccos, x)


@xla_arccos.defjvp
def _xla_arccos_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return xla_arccos(x), -t * jax.lax.rsqrt(1 - x * x)
