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
    #: the last column of ``nngp`` is this constant (a Dense layer's ``b_std``); ``None``: no
    #: such column. Known while tracing, it lets a homogeneous activation sample its bias
    #: coordinate where the activation bends (`bias_proposal`)
    bias: Optional[float] = None


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
    return Feats(nngp, ntk, b_std)


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


#: the bias coordinate's proposal: spreads of the activation's input without the bias that
#: its narrow components are set for (widths ``s / |b|``); used for biases above the largest
#: (measured, Fashion-MNIST, 10,000 rows, one ReLU layer, 2048 directions, two seeds each,
#: the proposal on both kinds of features: b_std=4 accuracy 0.822/0.824 -> 0.836/0.835 with
#: (0.3, 1), 0.834/0.832 with (0.1, 0.3, 1); on the NTK features alone, as used, 0.835/0.829;
#: at b_std=1 the proposal lost 0.3 points, so it is not used there)
PROPOSAL_SCALES = (0.3, 1.0)


def _static_float(b) -> Optional[float]:
    try:
        return float(b)
    except (TypeError, jax.errors.ConcretizationTypeError):  # traced: left as drawn
        return None


def bias_proposal(key, g, b: float):
    r"""Directions ``g`` ``(D, m)`` with their last row (the coordinate of a constant bias
    column ``b``) drawn where a homogeneous activation bends, and each direction's
    importance weight ``(m,)``.

    The pre-activation of direction :math:`j` is :math:`u_j = v_j + b\beta_j`, with
    :math:`v_j` the projection of the other columns. For a ReLU-like activation only the
    directions whose :math:`b\beta_j` falls within the spread of :math:`v_j` over the data
    act nonlinearly; the others are linear (or zero) on every row. With a bias that dominates
    (:math:`|b| \gg` the spread of :math:`v`, as the evidence often picks on image data) few
    directions of :math:`\beta \sim N(0, 1)` are nonlinear, and the features lose what the
    kernel adds to a linear model. Here :math:`\beta_j` is drawn from the defensive mixture
    :math:`q = \tfrac12 N(0, 1) + \tfrac12 \cdot \tfrac1K\sum_k N(0, \tau_k^2)`,
    :math:`\tau_k = \min(1, s_k/|b|)` for the spreads :math:`s_k` in `PROPOSAL_SCALES`, and
    the direction weighted by :math:`w_j = p(\beta_j)/q(\beta_j) \le 2`: the estimate stays
    unbiased, its variance grows at most 2-fold where the bias does not matter (1.5-fold
    at ``b = 4`` for an integrand that does not depend on :math:`\beta`), and the directions
    that bend on the data are several times more (at ``b = 4`` and a spread of 0.3, about
    what the evidence picks on Fashion-MNIST: 6% of the directions with
    :math:`\beta \sim N(0, 1)`, 26% with this proposal).
    """
    dtype, m = g.dtype, g.shape[-1]
    taus = np.minimum(1.0, np.asarray(PROPOSAL_SCALES) / abs(b))
    kp, kc, kz = jax.random.split(key, 3)
    wide = jax.random.bernoulli(kp, 0.5, (m,))
    tau = jnp.asarray(taus, dtype)[jax.random.randint(kc, (m,), 0, len(taus))]
    z = jax.random.normal(kz, (m,), dtype)
    beta = jnp.where(wide, z, tau * z)
    t = jnp.asarray(taus, dtype)[None, :]
    narrow = jnp.mean(jnp.exp(-0.5 * (beta[:, None] / t) ** 2) / t, axis=-1)
    p = jnp.exp(-0.5 * beta * beta)
    return g.at[-1].set(beta), p / (0.5 * p + 0.5 * narrow)


def activation(f: Feats, key, draws: Draws, fn: Callable, homogeneous: bool = False) -> Feats:
    """The Monte-Carlo rule of an elementwise activation ``fn`` with ``draws.width``
    directions; a ``homogeneous`` one (bending at 0 only: ReLU, ABRelu, Abs, Sign) after a
    bias column larger than ``max(PROPOSAL_SCALES)`` (larger than inputs of unit scale) draws
    that column's coordinate from `bias_proposal`."""
    kg, ks = jax.random.split(key)
    dtype, width = f.nngp.dtype, draws.width
    scale = jnp.asarray(1.0 / np.sqrt(width), dtype)
    g = draws.normal(kg, (f.nngp.shape[-1], width), dtype)
    u = f.nngp @ g
    if f.ntk is None:
        return Feats(fn(u) * scale, None)
    value, slope = jax.jvp(fn, (u,), (jnp.ones_like(u),))
    proj = f.ntk @ draws.normal(ks, (f.ntk.shape[-1], width), dtype)
    b = _static_float(f.bias) if homogeneous and f.bias is not None else None
    if b is not None and abs(b) > max(PROPOSAL_SCALES):
        gt, weight = bias_proposal(jax.random.fold_in(kg, 1), g, b)
        _, slope = jax.jvp(fn, (f.nngp @ gt,), (jnp.ones_like(u),))
        return Feats(value * scale, slope * proj * (scale * jnp.sqrt(weight))[None, :])
    return Feats(value * scale, slope * proj * scale)


def fan_in_sum(fs) -> Feats:
    """The sum of the branches' kernels: their features side by side."""
    nngp = jnp.concatenate([f.nngp for f in fs], axis=-1)
    ntk = None if fs[0].ntk is None else jnp.concatenate([f.ntk for f in fs], axis=-1)
    return Feats(nngp, ntk, fs[-1].bias)


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
