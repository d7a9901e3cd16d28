r"""Products of the empirical NTK with vectors, never forming the kernel."""

from __future__ import annotations

from typing import Callable

import jax

from ntkgp._src import checks
from ntkgp._src.empirical.functions import adapt, as_apply_fn, bind_params


def empirical_ntk_vp_fn(f, x1, x2, params, **kwargs) -> Callable:
    r"""The NTK-vector product :math:`v \mapsto J(x_1) J(x_2)^\top v` of ``f`` at ``params``.

    One VJP on ``x2`` and one JVP on ``x1`` per product: the cost of two passes through the
    network, memory of one parameter vector, whatever the number of outputs. Nothing is
    averaged: the product is with the full kernel over all output entries (neural-tangents'
    ``empirical_ntk_vp_fn``).

    Args:
        f: an ``ntkgp.nn`` `Layer`, any ``f(params, x)``, an Equinox or Flax module.
        x1: inputs ``(N1, ...)``.
        x2: inputs ``(N2, ...)`` or ``None`` (the same as ``x1``).
        params: a pytree of parameters of ``f`` (for modules, see `empirical_ntk_fn`).
        **kwargs: keyword arguments of ``f``, the same for both inputs.

    Returns:
        ``ntk_vp(v)``: ``v`` of the shape of ``f(params, x2)`` to an array of the shape of
        ``f(params, x1)``, :math:`\sum_{b,o'} \Theta[(a, o), (b, o')]\, v[b, o']`.

    Example:
        >>> import jax, numpy as np
        >>> from ntkgp import nn, empirical
        >>> net = nn.serial(nn.Dense(32), nn.Relu(), nn.Dense(2))
        >>> _, params = net.init(jax.random.PRNGKey(0), (-1, 3))
        >>> x = np.ones((5, 3), np.float32)
        >>> ntk_vp = empirical.empirical_ntk_vp_fn(net, x, None, params)
        >>> ntk_vp(np.ones((5, 2), np.float32)).shape
        (5, 2)
    """
    x1, x2 = checks.check_inputs(x1, x2, ndim=None)
    apply = as_apply_fn(f, True)
    params, kwargs = bind_params(adapt(f), params, kwargs, "empirical_ntk_vp_fn")
    xb = x1 if x2 is None else x2
    y2, vjp = jax.vjp(lambda p: apply(p, xb, **kwargs), params)
    _, jvp = jax.linearize(lambda p: apply(p, x1, **kwargs), params)

    @jax.jit
    def ntk_vp(v):
        return jvp(vjp(v)[0])

    def checked(v):
        v = checks.as_float_array(v, "v")
        if v.shape != y2.shape:
            raise ValueError(f"`v` must have the shape of f(params, x2), {tuple(y2.shape)}; "
                             f"got {tuple(v.shape)}.")
        return ntk_vp(v.astype(y2.dtype))

    return checked
