r"""Users' closed-form kernels evaluated with ntkgp's fast inverse sine and cosine.

A closed form the user gives (``Elementwise(nngp_fn=...)``) usually has an arc-sine or an
arc-cosine of a correlation, evaluated once per pair of inputs per layer. XLA's CPU ``asin`` and
``acos`` are several times slower than ntkgp's polynomial ones (16 M entries, float32: 210 ms
against 34 ms), which the built-in kernels use. `with_fast_inverse_trig` traces the user's
function to a jaxpr and evaluates it with every ``asin``/``acos`` replaced by
`special.xla_arcsin`/`special.xla_arccos`: the same values to 2.5 units in the last place
(NaN outside [-1, 1] as XLA's) and the same derivatives, so autodiff of the wrapped function
(the NTK's :math:`\dot K` by Price's theorem) is that of the user's. Calls inside functions
jitted by the user or by ``jax.numpy`` are rewritten too; those inside ``lax.cond``, loops or
custom derivatives are left as they are.
"""

from __future__ import annotations

import functools

import jax
from jax import lax
from jax.extend import core as jcore

from ntkgp._src.kernels.special import xla_arccos, xla_arcsin

_FAST = {lax.asin_p: xla_arcsin, lax.acos_p: xla_arccos}


def _eval(jaxpr, consts, args):
    """Evaluate ``jaxpr`` on ``args`` with the primitives of `_FAST` replaced."""
    env = {}

    def read(v):
        return v.val if isinstance(v, jcore.Literal) else env[v]

    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, args))
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        sub = eqn.params.get("jaxpr")
        if eqn.primitive in _FAST:
            outs = [_FAST[eqn.primitive](*ins)]
        elif eqn.primitive.name in ("pjit", "jit") and isinstance(sub, jcore.ClosedJaxpr):
            outs = _eval(sub.jaxpr, sub.consts, ins)
        else:
            outs = eqn.primitive.bind(*ins, **eqn.params)
            if not eqn.primitive.multiple_results:
                outs = [outs]
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


def with_fast_inverse_trig(fn):
    """``fn`` (a JAX function of arrays) with its ``asin``/``acos`` computed by ntkgp's fast
    polynomials (see the module's note); the same outputs to a few units in the last place.

    Args:
        fn: a function of JAX arrays (or pytrees of them) returning arrays.

    Returns:
        A function of the same arguments and results.
    """
    @functools.wraps(fn)
    def wrapped(*args):
        closed, shape = jax.make_jaxpr(fn, return_shape=True)(*args)
        out = _eval(closed.jaxpr, closed.consts, jax.tree.leaves(args))
        return jax.tree.unflatten(jax.tree.structure(shape), out)

    return wrapped
