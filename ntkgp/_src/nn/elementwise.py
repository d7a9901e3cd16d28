"""`Elementwise`: any elementwise activation, with a closed-form kernel you give or by
Gauss–Hermite quadrature."""

from __future__ import annotations

import functools
from typing import Callable, Optional

import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.kernels import activations as act
from ntkgp._src.kernels import closed_forms as cf
from ntkgp._src.nn.core import Layer
from ntkgp._src.nn.layers import elementwise_layer


def Elementwise(fn: Optional[Callable] = None, nngp_fn: Optional[Callable] = None,
                d_nngp_fn: Optional[Callable] = None, *, degree: int = 64,
                name: Optional[str] = None) -> Layer:
    r"""Any elementwise activation ``fn``: its kernel from a closed form you give
    (``nngp_fn``), else by 2-D Gauss–Hermite quadrature.

    With ``nngp_fn(cov12, var1, var2)`` :math:`= \mathbb{E}[\phi(u)\phi(v)]` for jointly
    Gaussian :math:`(u, v)` of variances ``var1, var2`` and covariance ``cov12`` (scalar
    arguments; vectorized here), the NNGP maps through it and the NTK through
    ``d_nngp_fn`` :math:`= \mathbb{E}[\phi'(u)\phi'(v)]`, by default
    :math:`\partial\,` ``nngp_fn`` :math:`/ \partial\,` ``cov12`` (Price's theorem) by
    autodiff. ``fn`` may then be ``None`` (kernel only; ``apply`` raises).

    Without ``nngp_fn``, quadrature:

    .. math:: K' = \mathbb{E}[\phi(u)\phi(v)] \approx \sum_{i,j} w_i w_j\,
        \phi(\sqrt{s_1} z_i)\,\phi\big(\sqrt{s_2}(\rho z_i + \sqrt{1-\rho^2} z_j)\big)

    and :math:`\dot K` the same with :math:`\phi'` (by autodiff). Cost grows as ``degree``\ ²
    per pair; exact for polynomials of degree below ``2 * degree``. Convergence is fast for
    smooth ``fn`` but needs more nodes when pre-activation variances are large relative to
    the scale on which ``fn`` bends: for ``erf`` at variance ~3 the NTK's relative error was
    2.6e-2 at degree 32, 6e-4 at 64, 3e-7 at 128 and 6e-11 at 200. Check convergence by
    doubling ``degree``; for kinks (ReLU-like) use the closed-form layers.

    Args:
        fn: a JAX-traceable elementwise function (``None`` only with ``nngp_fn``).
        nngp_fn: the closed-form dual ``(cov12, var1, var2) -> E[fn(u) fn(v)]``, or ``None``.
        d_nngp_fn: ``(cov12, var1, var2) -> E[fn'(u) fn'(v)]``, or ``None`` for autodiff of
            ``nngp_fn``.
        degree: number of quadrature nodes per dimension (without ``nngp_fn``).
        name: shown in ``repr``.

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    degree = checks.check_positive_int(degree, "degree")
    if fn is None and nngp_fn is None:
        raise ValueError("Elementwise needs the activation `fn`, its closed-form kernel "
                         "`nngp_fn(cov12, var1, var2)`, or both; got neither.")
    for f, nm in ((fn, "fn"), (nngp_fn, "nngp_fn"), (d_nngp_fn, "d_nngp_fn")):
        if f is not None and not callable(f):
            raise TypeError(f"`{nm}` must be a callable; got {type(f).__name__}.")
    if fn is not None:
        _check_finite_activation(fn)
    label = getattr(fn if fn is not None else nngp_fn, "__name__", "fn")
    if nngp_fn is None:
        return elementwise_layer(
            name or f"Elementwise({label}, degree={degree})", fn,
            functools.partial(act.quadrature_pair, fn=fn, degree=degree),
            functools.partial(act.quadrature_diag, fn=fn, degree=degree))
    _check_dual(nngp_fn, "nngp_fn")
    if d_nngp_fn is not None:
        _check_dual(d_nngp_fn, "d_nngp_fn")
    return elementwise_layer(
        name or f"Elementwise({label}, nngp_fn)", fn if fn is not None else _no_finite,
        functools.partial(cf.user_pair, nngp_fn=nngp_fn, d_nngp_fn=d_nngp_fn),
        functools.partial(cf.user_diag, nngp_fn=nngp_fn), random_features=fn is not None)


def ElementwiseNumerical(fn: Callable, deg: int = 25, df: Optional[Callable] = None) -> Layer:
    r"""neural-tangents' name for `Elementwise` by Gauss–Hermite quadrature with ``deg``
    nodes per dimension (``df`` is accepted and unused: the derivative is by autodiff).

    Args:
        fn: a JAX-traceable elementwise function.
        deg: quadrature nodes per dimension.
        df: ignored (neural-tangents' optional derivative of ``fn``).

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    return Elementwise(fn, degree=deg,
                       name=f"ElementwiseNumerical({getattr(fn, '__name__', 'fn')}, deg={deg})")


def _no_finite(x):
    raise NotImplementedError("This Elementwise layer was given only a closed-form kernel "
                              "(`nngp_fn`), no activation `fn`, so it has no finite network; "
                              "pass `fn=` too to apply it.")


def _check_dual(f, nm):
    """Call a user's dual on one scalar point so that a wrong signature fails here, clearly."""
    try:
        v = np.asarray(f(jnp.asarray(0.5), jnp.asarray(1.0), jnp.asarray(1.0)))
    except Exception as e:
        raise TypeError(f"`{nm}` must be a JAX-traceable function (cov12, var1, var2) -> scalar "
                        f"of three scalars; calling it at (0.5, 1.0, 1.0) raised "
                        f"{type(e).__name__}: {e}") from None
    if v.shape != ():
        raise ValueError(f"`{nm}(cov12, var1, var2)` must return a scalar for scalar arguments; "
                         f"got shape {v.shape}.")


def _check_finite_activation(fn):
    """Refuse an ``fn`` that is not finite on the real line (probed at 0, +-1e-3 ... +-8):
    its Gaussian integrals, and so the kernel, would be NaN for every input."""
    probe = np.array([0.0, 1e-3, 0.1, 0.5, 1.0, 2.0, 4.0, 8.0])
    probe = np.concatenate([-probe[:0:-1], probe]).astype(jnp.result_type(float))
    try:
        values = np.asarray(fn(jnp.asarray(probe)))
    except Exception as e:
        raise TypeError(f"`fn` must be a JAX-traceable elementwise function of an array; "
                        f"calling it on an array raised {type(e).__name__}: {e}") from None
    if values.shape != probe.shape:
        raise ValueError(f"`fn` must act elementwise: an input of shape {probe.shape} gave "
                         f"shape {values.shape}.")
    bad = probe[~np.isfinite(values)]
    if bad.size:
        raise ValueError(f"`fn` is NaN or infinite at x = {', '.join(f'{v:g}' for v in bad)}; "
                         "the kernel integrates fn over Gaussian pre-activations on the whole "
                         "real line, so it would be NaN. Use an activation that is finite "
                         "for every real input (e.g. log(1 + exp(x)) instead of log(x)).")
