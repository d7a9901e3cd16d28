r"""Random-feature maps of the infinite-width kernels, one rule per layer.

A network's NNGP and NTK are carried as two feature arrays, ``nngp`` of shape ``(N, D)`` and
``ntk`` of shape ``(N, D')``, whose inner products approximate the kernels:
:math:`K(x, x') \approx \phi(x)\cdot\phi(x')` and :math:`\Theta(x, x') \approx
\psi(x)\cdot\psi(x')`. Each layer maps them as its kernel rule maps the kernels:

- **Dense** (:math:`K' = \sigma_w^2 K + \sigma_b^2`, :math:`\Theta' = K' + \sigma_w^2\Theta`)
  is exact: :math:`\phi' = [\sigma_w\phi, \sigma_b]`, :math:`\psi' = [\sigma_w\psi, \phi']`.
- **An activation** :math:`\sigma` (:math:`K' = E[\sigma(u)\sigma(v)]`,
  :math:`\Theta' = E[\sigma'(u)\sigma'(v)]\,\Theta` for :math:`(u, v)` Gaussian of covariance
  :math:`K`) draws :math:`m` Gaussian directions :math:`g_j` (orthogonal in blocks,
  `orthogonal_normal`): :math:`u_j = \phi\cdot g_j` has
  exactly the covariance :math:`\phi(x)\cdot\phi(x')`, so
  :math:`\phi'_j = \sigma(u_j)/\sqrt m` is an unbiased Monte-Carlo estimate of :math:`K'`
  (for ReLU these are the arc-cosine features of Cho & Saul 2009) and
  :math:`\psi'_j = \sigma'(u_j)\,(\psi\cdot s_j)/\sqrt m`, with independent Gaussian
  :math:`s_j`, one of :math:`\Theta'` (:math:`E[(\psi\cdot s)(\psi'\cdot s)] =
  \psi\cdot\psi'`): the product of the two kernels without the :math:`m D'` columns of their
  tensor product (the NTK random features of Zandieh et al. 2021, with a Gaussian sketch).
- **Combinators**: `serial` chains the rules, `FanOut` copies, `parallel` maps branches,
  `FanInSum` concatenates (the sum of kernels).

The error of each estimate shrinks like :math:`1/\sqrt m`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np


class Feats(NamedTuple):
    """Features of the NNGP ``(N, D)`` and of the NTK ``(N, D')`` (``None``: not tracked)."""

    nngp: jax.Array
    ntk: Optional[jax.Array]


#: the layers with a rule, for error messages
SUPPORTED = ("Dense (ntk parameterization)", "elementwise activations (Relu, Erf, Gelu, Sin, "
             "ABRelu, Elementwise(fn), ...)", "Identity", "Dropout (test mode)", "serial",
             "repeat", "parallel", "FanOut", "FanInSum")


def input_features(x, compute_ntk: bool) -> Feats:
    r"""Features of the input kernel :math:`K_0 = x\cdot x'/d`, :math:`\Theta_0 = 0`."""
    d = x.shape[-1]
    ntk = jnp.zeros(x.shape[:-1] + (0,), x.dtype) if compute_ntk else None
    return Feats(x / np.sqrt(d).astype(x.dtype), ntk)


def dense(f: Feats, W_std, b_std) -> Feats:
    """The exact rule of a Dense layer (NTK parameterization)."""
    parts = [W_std * f.nngp]
    if b_std is not None:
        parts.append(jnp.full(f.nngp.shape[:-1] + (1,), b_std, f.nngp.dtype))
    nngp = jnp.concatenate(parts, axis=-1)
    ntk = None if f.ntk is None else jnp.concatenate([W_std * f.ntk, nngp], axis=-1)
    return Feats(nngp, ntk)


def orthogonal_normal(key, shape, dtype) -> jax.Array:
    r"""``shape = (d, m)``: ``m`` directions, each exactly standard normal in
    :math:`\mathbb{R}^d`, drawn orthogonal to one another in blocks of ``min(d, m)``.

    Each block is the orthogonal factor of a Gaussian matrix (columns uniform on the sphere,
    signs fixed by the triangular factor's diagonal) scaled by independent chi-distributed
    lengths (those of other Gaussian vectors), so every column is :math:`N(0, I_d)` and each
    feature's expectation is the kernel's, as with independent draws; orthogonal directions
    cover the sphere more evenly, which lowers the variance of the feature kernel (Yu et al.
    2016, orthogonal random features; Choromanski et al. 2017 for arc-cosine kernels):
    measured 10-20% lower relative error of the NNGP's and NTK's features of ReLU and Sin
    networks.

    Args:
        key: a JAX random key.
        shape: ``(d, m)``, the input dimension and the number of directions.
        dtype: a floating dtype.

    Returns:
        The directions as the columns of a ``(d, m)`` array (zeros when ``d`` or ``m`` is 0).
    """
    d, m = shape
    if d == 0 or m == 0:
        return jnp.zeros(shape, dtype)
    b = min(d, m)
    blocks = -(-m // b)
    kq, kr = jax.random.split(key)
    # one block at a time: jaxlib's batched LAPACK kernels split a batch over XLA's thread
    # pool and wait on it, and two such calls running at once on a small pool deadlock
    q, r = jax.lax.map(jnp.linalg.qr, jax.random.normal(kq, (blocks, d, b), dtype))
    q = q * jnp.where(jnp.diagonal(r, axis1=-2, axis2=-1) < 0, -1, 1).astype(dtype)[:, None, :]
    lengths = jnp.linalg.norm(jax.random.normal(kr, (blocks, b, d), dtype), axis=-1)
    return jnp.moveaxis(q * lengths[:, None, :], 0, 1).reshape(d, blocks * b)[:, :m]


class Draws:
    """How rules get their Gaussian matrices: ``normal(key, shape, dtype)``.

    ``Draws(width)`` draws them; ``Draws(width, record=[])`` also keeps them, in the order the
    rules asked; ``Draws(width, replay=arrays)`` hands those back in the same order instead
    of drawing again (a feature map draws once and replays for every block of rows).
    """

    def __init__(self, width: int, record: Optional[list] = None, replay=None):
        self.width, self.record = width, record
        self.replay = None if replay is None else list(replay)

    def normal(self, key, shape, dtype):
        if self.replay is not None:
            return self.replay.pop(0)
        g = orthogonal_normal(key, shape, dtype)
        if self.record is not None:
            self.record.append(g)
        return g


def activation(f: Feats, key, draws: Draws, fn: Callable) -> Feats:
    """The Monte-Carlo rule of an elementwise activation ``fn`` with ``draws.width``
    directions."""
    kg, ks = jax.random.split(key)
    dtype, width = f.nngp.dtype, draws.width
    scale = jnp.asarray(1.0 / np.sqrt(width), dtype)
    u = f.nngp @ draws.normal(kg, (f.nngp.shape[-1], width), dtype)
    if f.ntk is None:
        return Feats(fn(u) * scale, None)
    value, slope = jax.jvp(fn, (u,), (jnp.ones_like(u),))
    proj = f.ntk @ draws.normal(ks, (f.ntk.shape[-1], width), dtype)
    return Feats(value * scale, slope * proj * scale)


def fan_in_sum(fs) -> Feats:
    """The sum of the branches' kernels: their features side by side."""
    nngp = jnp.concatenate([f.nngp for f in fs], axis=-1)
    ntk = None if fs[0].ntk is None else jnp.concatenate([f.ntk for f in fs], axis=-1)
    return Feats(nngp, ntk)


def run(layer, f, key, draws: Draws):
    """Apply ``layer``'s rule, or say which layer has none."""
    rule = getattr(layer, "features", None)
    if rule is None:
        raise ValueError(f"random features are not available for the layer {layer.name}; "
                         f"they are for networks built from {', '.join(SUPPORTED)}. Use the "
                         "exact kernel (`net.kernel`) or the 'cg' solver for this network.")
    return rule(f, key, draws)


def chain(layers) -> Callable:
    """The rule of `serial`: each layer's rule with its own key."""
    def rule(f, key, draws):
        for layer, k in zip(layers, jax.random.split(key, len(layers))):
            f = run(layer, f, k, draws)
        return f
    return rule


def branches(layers) -> Callable:
    """The rule of `parallel`: each branch's rule on its own input, with its own key."""
    def rule(fs, key, draws):
        if not isinstance(fs, (list, tuple)) or len(fs) != len(layers):
            raise ValueError(f"parallel of {len(layers)} branches needs {len(layers)} inputs; "
                             "put FanOut before it.")
        return [run(layer, f, k, draws)
                for layer, f, k in zip(layers, fs, jax.random.split(key, len(layers)))]
    return rule


def identity(f, key, draws):
    return f
