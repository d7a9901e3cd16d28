r"""Kernels with full output blocks (neural-tangents' ``trace_axes=()``).

A finite network's empirical kernel couples its outputs: ``k[i, j, a, b]`` pairs output ``a``
at point ``i`` with output ``b`` at point ``j``, shape ``(N1, N2, K, K)``. The predictions
treat such a kernel as one matrix over (point, output) pairs, :math:`(N K) \times (N K)`, and
the targets ``(N, K)`` as one column of :math:`NK` entries; the squared error's
normalization (:math:`NK` target entries) and the relative ``diag_reg`` (mean of the
:math:`NK` diagonal entries) are unchanged. The default ``trace_axes=(-1,)`` is the kernel
:math:`\Theta \otimes I_K`, given as its ``(N1, N2)`` factor.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Optional, Sequence

import jax.numpy as jnp

from ntkgp._src import checks
from ntkgp._src.predict.common import Gaussian


def blocks_of(trace_axes: Sequence[int], y) -> Optional[int]:
    """``K`` when ``trace_axes`` asks for full output blocks (``()``) of targets ``(N, K)``,
    ``None`` for the default (the output axis traced).

    Raises:
        ValueError: other axes, or targets that are not ``(N, K)``.
    """
    try:
        axes = tuple(int(a) for a in trace_axes)
    except TypeError:
        raise TypeError(f"`trace_axes` must be a tuple, (-1,) or (); got {trace_axes!r}.") \
            from None
    if axes in ((-1,), (1,)):
        return None
    if axes != ():
        raise ValueError(f"`trace_axes` must be (-1,) (kernels (N1, N2), the same for every "
                         f"output) or () (kernels (N1, N2, K, K) with full output blocks); got "
                         f"{tuple(trace_axes)}.")
    y = checks.as_float_array(y, "y_train")
    if y.ndim != 2:
        raise ValueError(f"trace_axes=() needs targets of shape (N, K); got {tuple(y.shape)}.")
    return int(y.shape[1])


def matrix(k, n_outputs: int, name: str):
    """``(N1, N2, K, K)`` -> ``(N1 K, N2 K)``, rows and columns ordered (point, output)
    (an array; a `Kernel`'s parts are mapped one by one with `parts`)."""
    k = checks.as_float_array(k, name)
    if k.ndim != 4 or k.shape[2:] != (n_outputs, n_outputs):
        raise ValueError(f"`{name}` must have shape (N1, N2, {n_outputs}, {n_outputs}) with "
                         f"trace_axes=() (full output blocks); got {tuple(k.shape)}.")
    a, b = k.shape[:2]
    return jnp.transpose(k, (0, 2, 1, 3)).reshape(a * n_outputs, b * n_outputs)


def column(f, n_outputs: int, name: str):
    """Outputs ``(M, K)`` -> ``(M K, 1)`` (``None`` and 0 pass through)."""
    if f is None or (not hasattr(f, "shape") and f == 0):
        return f
    f = checks.as_float_array(f, name)
    if f.ndim != 2 or f.shape[1] != n_outputs:
        raise ValueError(f"`{name}` must have shape (M, {n_outputs}) like the targets; got "
                         f"{tuple(f.shape)}.")
    return f.reshape(-1, 1)


def outputs(col, n_outputs: int):
    """``(..., M K, 1)`` -> ``(..., M, K)``."""
    return col.reshape(col.shape[:-2] + (-1, n_outputs))


def covariance(c, n_outputs: int):
    """``(M K, M K)`` -> ``(M, M, K, K)``."""
    m = c.shape[-1] // n_outputs
    c = c.reshape(c.shape[:-2] + (m, n_outputs, m, n_outputs))
    return jnp.moveaxis(c, -2, -3)


def parts(k, n_outputs: int, name: str):
    """A `Kernel`'s ``nngp``/``ntk`` (those present) as `matrix`-es, or one array's."""
    if hasattr(k, "nngp") and hasattr(k, "ntk"):
        return {p: None if getattr(k, p) is None else matrix(getattr(k, p), n_outputs,
                                                             f"{name}.{p}")
                for p in ("nngp", "ntk")}
    return matrix(k, n_outputs, name)


def predict(post, n_outputs: int, k_test_train, k_test_test=None, t=None):
    """``post.predict`` (a `Posterior` of the block matrices) on test kernels with output
    blocks ``(M, N, K, K)`` (and ``(M, M, K, K)``): the mean ``(..., M, K)``, with
    ``k_test_test`` a `Gaussian` with the covariance ``(..., M, M, K, K)``."""
    def mats(k, name):
        m = parts(k, n_outputs, name)
        return SimpleNamespace(**m) if isinstance(m, dict) else m

    ktt = None if k_test_test is None else mats(k_test_test, "k_test_test")
    out = post.predict(t=t, k_test_train=mats(k_test_train, "k_test_train"), k_test_test=ktt,
                       return_cov=ktt is not None)
    if ktt is None:
        return outputs(out, n_outputs)
    return Gaussian(outputs(out.mean, n_outputs), covariance(out.cov, n_outputs))
