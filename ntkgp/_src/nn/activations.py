"""More nonlinearities: closed-form kernels (sign, exponentials, Gabor, polynomials,
rectified monomials, normalized Gaussian) and `Elementwise` for any other activation."""

from __future__ import annotations

import functools
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.kernels import activations as act
from ntkgp._src.kernels import closed_forms as cf
from ntkgp._src.nn.core import Layer
from ntkgp._src.nn.layers import Erf, Sin, dataclass_rename, elementwise_layer, format_number

_SIGMOID_SCALE = 2.4020563531719796  # least-squares fit of erf(x / s) to tanh-sigmoid on [-5, 5]


def _scalars(**kw):
    for n, v in kw.items():
        checks.check_scalar(v, n)


def _degree(degree, what):
    if isinstance(degree, (bool, np.bool_)) or not isinstance(degree, (int, np.integer)) \
            or degree < 0:
        raise ValueError(f"{what} needs a non-negative integer `degree`; got {degree!r}.")
    return int(degree)


def Sign() -> Layer:
    r""":math:`\phi(x) = \mathrm{sign}(x)`: :math:`K' = \frac{2}{\pi}\arcsin\rho`.

    The NTK through it is 0: the derivative vanishes almost everywhere, and the gradients of
    a finite network through ``sign`` are 0 too.

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    return elementwise_layer("Sign()", jnp.sign, cf.sign_pair, cf.sign_diag, homogeneous=True)


def Cos(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Layer:
    r""":math:`\phi(x) = a\cos(bx + c)` (`Sin` with phase :math:`c + \pi/2`).

    Args:
        a: output scale.
        b: input frequency.
        c: phase.

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    _scalars(a=a, b=b, c=c)
    name = f"Cos(a={format_number(a)}, b={format_number(b)}, c={format_number(c)})"
    return dataclass_rename(Sin(a, b, c + np.pi / 2), name)


def Rbf(gamma: float = 1.0) -> Layer:
    r""":math:`\phi(x) = \sqrt{2}\sin(\sqrt{2\gamma}\,x + \pi/4)`, whose NNGP is the squared
    exponential kernel of the pre-activations:

    .. math:: K' = e^{-\gamma (s_1 + s_2 - 2c)}, \qquad \dot K = 2\gamma K'.

    Args:
        gamma: inverse squared length scale, :math:`\gamma = 1/(2\ell^2) \ge 0`.

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    checks.check_nonneg(gamma, "gamma")
    a, b = np.sqrt(2.0), (2.0 * gamma) ** 0.5  # gamma may be traced
    return elementwise_layer(
        f"Rbf(gamma={format_number(gamma)})",
        lambda x: a * jnp.sin(b * x + np.pi / 4),
        functools.partial(act.sin_pair, a=a, b=b, c0=np.pi / 4),
        functools.partial(act.sin_diag, a=a, b=b, c0=np.pi / 4))


def Exp(a: float = 1.0, b: float = 1.0) -> Layer:
    r""":math:`\phi(x) = a e^{bx}`: :math:`K' = a^2 e^{b^2((s_1+s_2)/2 + c)}`,
    :math:`\dot K = b^2 K'`.

    Args:
        a: output scale.
        b: input scale.

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    _scalars(a=a, b=b)
    return elementwise_layer(
        f"Exp(a={format_number(a)}, b={format_number(b)})", lambda x: a * jnp.exp(b * x),
        functools.partial(cf.exp_pair, a=a, b=b), functools.partial(cf.exp_diag, a=a, b=b))


def Gaussian(a: float = 1.0, b: float = -1.0) -> Layer:
    r""":math:`\phi(x) = a e^{bx^2}`: :math:`K' = a^2/\sqrt{D}`,
    :math:`D = (1-2bs_1)(1-2bs_2) - 4b^2c^2`; for :math:`b > 0` the kernel exists only
    while :math:`4 b s < 1` (else the kernel is infinite and `kernel` says so).

    Args:
        a: output scale.
        b: exponent scale (negative for a bump).

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    _scalars(a=a, b=b)
    return elementwise_layer(
        f"Gaussian(a={format_number(a)}, b={format_number(b)})",
        lambda x: a * jnp.exp(b * x * x),
        functools.partial(cf.gaussian_pair, a=a, b=b),
        functools.partial(cf.gaussian_diag, a=a, b=b))


def Gabor() -> Layer:
    r""":math:`\phi(x) = e^{-x^2}\sin x`, with the closed form of
    :math:`\mathbb{E}[\phi(u)\phi(v)]` from the Gaussian integral (see the kernel module).

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    return elementwise_layer("Gabor()", lambda x: jnp.exp(-x * x) * jnp.sin(x),
                             cf.gabor_pair, cf.gabor_diag)


def Sigmoid_like() -> Layer:  # noqa: N802 (neural-tangents' name)
    r"""A sigmoid-like :math:`\phi(x) = \tfrac12\mathrm{erf}(x / 2.4020563531719796) +
    \tfrac12` (the scale makes it the least-squares fit to the logistic sigmoid on [-5, 5]),
    with `Erf`'s closed form.

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    return dataclass_rename(Erf(0.5, 1 / _SIGMOID_SCALE, 0.5), "Sigmoid_like()")


def Polynomial(coef: Sequence[float]) -> Layer:
    r""":math:`\phi(x) = \sum_k a_k x^k` (``coef[k]`` :math:`= a_k`, as
    ``numpy.polynomial``), with the exact kernel for any pre-activation variances:

    .. math:: K' = \sum_l R_l(s_1) R_l(s_2)\, c^l, \qquad
        R_l(s) = \sum_i a_{l+2i}\,\frac{(l+2i)!}{2^i\, i!\, \sqrt{l!}}\, s^i

    (expanding :math:`\phi(\sqrt{s}z)` in Hermite polynomials; Mehler's formula), and
    :math:`\dot K = \partial K'/\partial c`.

    Args:
        coef: one or more real coefficients, lowest degree first.

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    try:
        arr = np.asarray(coef, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"`coef` must be a sequence of real numbers; got {coef!r}.") from None
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"Polynomial needs a 1-D sequence of at least one coefficient "
                         f"(lowest degree first, e.g. [0, 1, 0.5] for x + x**2/2); got "
                         f"{coef!r}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"Polynomial coefficients must be finite; got {coef!r}.")
    return _polynomial_layer(f"Polynomial({[float(v) for v in arr]})", arr)


def _polynomial_layer(name, coef):
    table = cf.hermite_tables(coef)
    rev = tuple(float(v) for v in coef[::-1])

    def fn(x):
        acc = jnp.zeros_like(x) + rev[0]
        for v in rev[1:]:
            acc = acc * x + v
        return acc

    return elementwise_layer(name, fn, functools.partial(cf.polynomial_pair, table=table),
                             functools.partial(cf.polynomial_diag, table=table))


def Monomial(degree: int) -> Layer:
    r""":math:`\phi(x) = x^n` for any integer :math:`n \ge 0` (neural-tangents: up to 5);
    the `Polynomial` kernel, e.g. :math:`n = 2`: :math:`K' = s_1 s_2 + 2c^2`.

    Args:
        degree: the power :math:`n`.

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    degree = _degree(degree, "Monomial")
    return _polynomial_layer(f"Monomial({degree})", np.eye(degree + 1)[-1])


def Hermite(degree: int) -> Layer:
    r""":math:`\phi(x) = He_n(x)/\sqrt{n!}`, the probabilists' Hermite polynomial normalized
    to unit second moment under :math:`N(0, 1)`, with the exact `Polynomial` kernel.

    For unit-variance pre-activations (:math:`s_1 = s_2 = 1`, e.g. after `LayerNorm`) it is
    :math:`K' = c^n`, :math:`\dot K = n c^{n-1}` (Mehler), which is what neural-tangents
    computes for any input; ntkgp's kernel is exact for other variances too.

    Args:
        degree: :math:`n \ge 0`.

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    degree = _degree(degree, "Hermite")
    return _polynomial_layer(f"Hermite({degree})", cf.hermite_coefficients(degree))


def RectifiedMonomial(degree: int) -> Layer:
    r""":math:`\phi(x) = \max(x, 0)^n` (:math:`n = 0`: the step :math:`1\{x \ge 0\}`): the
    arc-cosine kernel of order :math:`n` (Cho & Saul 2009),

    .. math:: K' = \frac{(s_1 s_2)^{n/2}}{2\pi} J_n(\theta), \qquad
        \dot K = n^2 \frac{(s_1 s_2)^{(n-1)/2}}{2\pi} J_{n-1}(\theta),

    :math:`\cos\theta = \rho`, with :math:`J_n` expanded into polynomials in
    :math:`\cos\theta` and :math:`\sin\theta` so that it is exact at :math:`\theta = 0`
    (an input with itself; neural-tangents' form is 0/0 there and returns NaN).

    Args:
        degree: :math:`n \ge 0`.

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    degree = _degree(degree, "RectifiedMonomial")
    polys = tuple(cf.arccos_polynomials(n) for n in range(degree + 1))

    def fn(x):
        return jnp.where(x >= 0, x ** degree if degree else jnp.ones_like(x), 0).astype(x.dtype)

    return elementwise_layer(
        f"RectifiedMonomial({degree})", fn,
        functools.partial(cf.rectified_monomial_pair, degree=degree, polys=polys),
        functools.partial(cf.rectified_monomial_diag, degree=degree))


def ExpNormalized(gamma: float = 1.0, shift: float = -1.0, do_clip: bool = False) -> Layer:
    r"""The normalized Gaussian kernel of Shankar et al. 2020:
    :math:`K' = \sqrt{s_1 s_2}\; e^{\gamma(\rho + \text{shift})}`,
    :math:`\dot K = \gamma e^{\gamma(\rho + \text{shift})}`.

    Finite network (neural-tangents has none): with :math:`\hat\sigma` the root mean square
    of the pre-activations over channels (per example and position),
    :math:`\phi(x) = \hat\sigma\, e^{\gamma(1+\text{shift})/2}\,\sqrt2
    \sin(\sqrt\gamma\, x/\hat\sigma + \pi/4)`; as the width grows :math:`\hat\sigma^2 \to s`
    and the `Rbf` identity gives the kernel above.

    Args:
        gamma: exponent scale :math:`\gamma \ge 0`.
        shift: added to the correlation in the exponent.
        do_clip: clip the correlation to [-1, 1] first.

    Returns:
        A `Layer` (no parameters); channels are the last axis.

    References:
        Shankar et al. 2020, "Neural Kernels Without Tangents", https://arxiv.org/abs/2003.02237.
    """
    checks.check_nonneg(gamma, "gamma")
    checks.check_scalar(shift, "shift")
    scale = np.sqrt(2.0) * np.exp(gamma * (1.0 + shift) / 2)

    def fn(x):
        sigma = jnp.sqrt(jnp.mean(x * x, axis=-1, keepdims=True))
        safe = jnp.where(sigma > 0, sigma, 1)
        return jnp.where(sigma > 0, scale * sigma * jnp.sin(np.sqrt(gamma) * x / safe
                                                            + np.pi / 4), 0).astype(x.dtype)

    kw = dict(gamma=gamma, shift=shift, do_clip=bool(do_clip))
    return elementwise_layer(
        f"ExpNormalized(gamma={format_number(gamma)}, shift={format_number(shift)}"
        f"{', do_clip=True' if do_clip else ''})", fn,
        functools.partial(cf.exp_normalized_pair, **kw),
        functools.partial(cf.exp_normalized_diag, **kw))
