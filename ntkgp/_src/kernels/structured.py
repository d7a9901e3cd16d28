"""The structured empirical NTK of ``ntkgp.nn`` networks.

A Dense layer :math:`h = c\\,W a + c_b b` contributes
:math:`(c^2\\, a_1 \\cdot a_2 + c_b^2)\\,(g_1 \\cdot g_2)` to :math:`J(x_1) J(x_2)^\top`, where
:math:`a` is the layer's input and :math:`g = \\partial f / \\partial h` the back-propagated
signal. Dense layers accept a ``taps`` object that records their inputs and adds a zero
perturbation to their outputs, whose gradient is :math:`g`; so only per-layer inputs and signals
are needed, never the parameter Jacobian.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ntkgp._src.kernels.layout import unsplit


class _Taps:
    """Passed to ``ntkgp.nn`` Dense layers: records each layer's input and adds ``eps`` to its
    output, so that d f / d eps is the back-propagated signal at that layer."""

    def __init__(self, eps=None):
        self.eps = eps
        self.inputs, self.coefs, self.shapes = [], [], []

    def __call__(self, x, h, c_w, c_b):
        i = len(self.inputs)
        self.inputs.append(x)
        self.coefs.append((c_w, c_b))
        self.shapes.append(jax.ShapeDtypeStruct(h.shape, h.dtype))
        return h if self.eps is None else h + self.eps[i]


def _structured_parts(apply, params, x, layout):
    shapes = []

    def probe(p, xx):
        t = _Taps()
        apply(p, xx, taps=t)
        shapes.extend(t.shapes)
        return 0

    jax.eval_shape(probe, params, x)
    for s in shapes:
        if len(s.shape) != 2:
            raise NotImplementedError("the structured NTK handles Dense layers on (N, d) inputs")
    eps0 = [jnp.zeros(s.shape, s.dtype) for s in shapes]

    def g(eps):
        t = _Taps(eps)
        out = apply(params, x, taps=t)
        return out, (t.inputs, t.coefs)

    out, vjp, (inputs, coefs) = jax.vjp(g, eps0, has_aux=True)
    ko = layout.kk * layout.kt
    basis = jnp.eye(ko, dtype=out.dtype)

    def signal(e):
        ct = jnp.broadcast_to(unsplit(e, layout), out.shape)
        return vjp(ct)[0]

    sigs = jax.vmap(signal)(basis)  # list of (Ko, N, width)
    gs = []
    for s in sigs:
        s = s.reshape(layout.kk, layout.kt, x.shape[0], -1)
        gs.append(jnp.transpose(s, (2, 0, 1, 3)))  # (N, Kk, Kt, width)
    return inputs, coefs, gs


def ntk_structured(apply, params, x1, x2, layout):
    hi = jax.lax.Precision.HIGHEST
    a1, coefs, g1 = _structured_parts(apply, params, x1, layout)
    a2, _, g2 = (a1, coefs, g1) if x2 is None else _structured_parts(apply, params, x2, layout)
    total = None
    for (c_w, c_b), u1, u2, s1, s2 in zip(coefs, a1, a2, g1, g2):
        gram_in = c_w * jnp.matmul(u1, u2.T, precision=hi) + c_b  # (N1, N2)
        if layout.kk == 1:
            n1, n2 = s1.shape[0], s2.shape[0]
            gram_sig = jnp.matmul(s1.reshape(n1, -1), s2.reshape(n2, -1).T,
                                  precision=hi)[:, :, None, None]
        else:
            gram_sig = jnp.einsum("aitw,bjtw->abij", s1, s2, precision=hi)
        t = gram_in[:, :, None, None] * gram_sig
        total = t if total is None else total + t
    return total / layout.kt
