r"""Kernels of global self-attention (Hron et al. 2020), on flattened positions.

With the key and query weights tied and their dot products scaled by ``1 / n_chan_key``
("linear scaling"), the attention logits of an input :math:`x` converge, as the widths grow, to
the deterministic :math:`\sigma_{QK} C(x)_{pq}`, where :math:`C(x)` is the covariance of the
layer's inputs (plus that of the positional embeddings) between positions :math:`p, q` of
:math:`x`. The attention weights :math:`G(x) = \mathrm{mech}(\sigma_{QK} C(x))` (softmax over
the key positions :math:`q`) then mix the values, and the kernel of the outputs is

.. math::
    K'(x_1, x_2) = \sigma_{OV}^2\, G(x_1) K_V(x_1, x_2) G(x_2)^\top + \sigma_b^2, \qquad
    \Theta' = \sigma_{OV}^2\, G_1 (\Theta_V + 2 K_V) G_2^\top + \sigma_b^2,

the :math:`2 K_V` from the value and output weights (those of the keys and queries vanish).

Arrays here have the positions flattened to one axis of length ``P``: ``(N, P, P)``
self-covariances, ``(N1, N2, P, P)`` pair kernels.
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

MECHANISMS = ("SOFTMAX", "IDENTITY", "ABS", "RELU")
POS_EMB_TYPES = ("NONE", "SUM", "CONCAT")


def mechanism_fn(mechanism: str) -> Callable:
    """The map from logits ``(N, P, P)`` to attention weights (softmax over the last axis)."""
    return {"SOFTMAX": lambda a: jax.nn.softmax(a, axis=-1),
            "IDENTITY": lambda a: a,
            "ABS": jnp.abs,
            "RELU": lambda a: jnp.maximum(a, 0)}[mechanism]


def weights(cov, mask, qk_std, mechanism: str):
    """Attention weights ``(N, P, P)`` from the self-covariances ``cov (N, P, P)``; absent key
    positions (``mask (N, P)``) get weight zero (their logits are -inf for softmax, zero for the
    others, as in the finite layer)."""
    logits = qk_std * cov
    if mask is not None:
        absent = mask[:, None, :]
        if mechanism == "SOFTMAX":
            logits = jnp.where(absent, -jnp.inf, logits)
        else:
            logits = jnp.where(absent, jnp.zeros((), logits.dtype), logits)
    return mechanism_fn(mechanism)(logits)


def mix_pairs(a, g1, g2):
    r"""``a'[i, j] = g1[i] a[i, j] g2[j]^T``: ``a (N1, N2, P, P)``, ``g (N, P, P)``."""
    hi = jax.lax.Precision.HIGHEST
    t = jnp.einsum("ipa,ijab->ijpb", g1, a, precision=hi)
    return jnp.einsum("ijpb,jqb->ijpq", t, g2, precision=hi)


def mix_self(a, g):
    """``a'[i] = g[i] a[i] g[i]^T`` for self-covariances ``a (N, P, P)``."""
    hi = jax.lax.Precision.HIGHEST
    t = jnp.einsum("ipa,iab->ipb", g, a, precision=hi)
    return jnp.einsum("ipb,iqb->ipq", t, g, precision=hi)


def pos_emb_covariance(shape, p_norm: float, decay_fn: Optional[Callable]) -> np.ndarray:
    r"""Covariance ``(P, P)`` of the positional embeddings of positions on a grid ``shape``:
    the identity without ``decay_fn`` (independent embeddings), else
    ``decay_fn(sum_a |p_a - q_a|^p_norm)``."""
    size = int(np.prod(shape))
    if decay_fn is None:
        return np.eye(size)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    grid = grid.reshape(size, len(shape)).astype(float)
    dist = np.sum(np.abs(grid[:, None, :] - grid[None, :, :]) ** p_norm, axis=-1)
    with jax.ensure_compile_time_eval():  # a jnp decay_fn under jit: still a constant
        r = decay_fn(dist)
    r = np.asarray(r, dtype=float)
    if r.shape != dist.shape or not np.all(np.isfinite(r)):
        raise ValueError(f"`pos_emb_decay_fn` must map an array of distances to finite "
                         f"covariances of the same shape; on distances of shape {dist.shape} "
                         f"it gave shape {r.shape}"
                         + ("" if r.shape != dist.shape else " with NaN or inf") + ".")
    return r


def identity_dot(a, b):
    """``sum_{pq} a[..., p, q] b[..., p, q]`` per example (or pair), kept as ``(..., 1, 1)``."""
    return jnp.sum(a * b, axis=(-2, -1), keepdims=True)
