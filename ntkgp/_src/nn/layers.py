"""Layers: Dense, nonlinearities, Identity."""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.features import rules
from ntkgp._src.kernels import activations as act
from ntkgp._src.kernels.kernel import Kernel
from ntkgp._src.nn.core import Layer, make_layer


def format_number(v):
    return f"{v:g}" if isinstance(v, (int, float)) else "<traced>"


# ---------------------------------------------------------------------------------------------
def Dense(out_dim: int, W_std: float = 1.0, b_std: Optional[float] = 0.0,
          parameterization: str = "ntk") -> Layer:
    r"""Fully connected layer :math:`h = \frac{\sigma_w}{\sqrt{n}} W x + \sigma_b b` (NTK
    parameterization) or :math:`h = W x + b` with :math:`W_{ij} \sim N(0, \sigma_w^2/n)`,
    :math:`b_i \sim N(0, \sigma_b^2)` (standard parameterization).

    Infinite-width limit (:math:`n` inputs, :math:`K, \Theta` the input kernels):

    .. math::
        K' = \sigma_w^2 K + \sigma_b^2, \qquad
        \Theta' = K' + \sigma_w^2 \Theta \ \ (\text{ntk}), \qquad
        \Theta' = n K + [\text{bias}] + \sigma_w^2 \Theta \ \ (\text{standard}).

    The standard-parameterization NTK depends on the actual width :math:`n` of the layer's
    input (it is the NTK of the finite network with all parameters on one learning rate).

    Args:
        out_dim: number of output features (ignored by the infinite-width kernel, except by a
            following standard-parameterization layer and by FanInConcat).
        W_std: weight standard deviation :math:`\sigma_w \ge 0` (may be a traced scalar).
        b_std: bias standard deviation :math:`\sigma_b \ge 0`, or ``None`` for no bias.
        parameterization: ``'ntk'`` or ``'standard'``.

    Returns:
        A `Layer`. Parameters are ``{'W': (n, out_dim), 'b': (out_dim,)}`` (no ``'b'`` without
        bias).

    References:
        Jacot et al. 2018, https://arxiv.org/abs/1806.07572 (NTK parameterization);
        Sohl-Dickstein et al. 2020, https://arxiv.org/abs/2001.07301 (standard).
    """
    out_dim = checks.check_positive_int(out_dim, "out_dim")
    checks.check_nonneg(W_std, "W_std")
    checks.check_nonneg(b_std, "b_std", allow_none=True)
    checks.check_choice(parameterization, "parameterization", ("ntk", "standard"))
    has_bias = b_std is not None
    standard = parameterization == "standard"

    def init(key, input_shape):
        n_in = checks.check_feature_count(input_shape, "Dense")
        kw, kb = jax.random.split(key)
        scale = W_std / np.sqrt(n_in) if standard else 1.0
        params = {"W": scale * jax.random.normal(kw, (n_in, out_dim))}
        if has_bias:
            params["b"] = (b_std if standard else 1.0) * jax.random.normal(kb, (out_dim,))
        return tuple(input_shape[:-1]) + (out_dim,), params

    def coefs(n_in):
        """(c_W, c_b): d h / d params contracts to c_W * x.x' + c_b (times the output Gram)."""
        if standard:
            return 1.0, (1.0 if has_bias else 0.0)
        return W_std ** 2 / n_in, (b_std ** 2 if has_bias else 0.0)

    def apply(params, x, taps=None, **kwargs):
        n_in = x.shape[-1]
        w = params["W"]
        if w.shape[0] != n_in:
            raise ValueError(f"Dense({out_dim}) was initialized for {w.shape[0]} input features "
                             f"but got inputs of shape {tuple(x.shape)}; re-run `init` with the "
                             "input shape you apply it to.")
        bias_shape = (1,) * (x.ndim - 1) + (out_dim,)  # explicit: no implicit rank promotion
        if standard:
            h = x @ w
            if has_bias:
                h = h + params["b"].reshape(bias_shape)
        else:
            h = (W_std / np.sqrt(n_in)) * (x @ w)
            if has_bias:
                h = h + b_std * params["b"].reshape(bias_shape)
        if taps is not None:
            h = taps(x, h, *coefs(n_in))
        return h

    def kernel_map(k: Kernel) -> Kernel:
        w2 = W_std ** 2
        b2 = b_std ** 2 if has_bias else 0.0
        nngp = w2 * k.nngp + b2
        cov1 = w2 * k.cov1 + b2
        cov2 = None if k.cov2 is None else w2 * k.cov2 + b2
        ntk = None
        if k.ntk is not None:
            if standard:
                if k.width is None:
                    raise ValueError("Dense(parameterization='standard') needs the width of its "
                                     "input, which the preceding layers do not fix.")
                ntk = k.width * k.nngp + (1.0 if has_bias else 0.0) + w2 * k.ntk
            else:
                ntk = nngp + w2 * k.ntk
        # replace keeps the spatial layout flags: on images Dense acts per position
        return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, is_gaussian=True,
                         width=out_dim)

    name = (f"Dense({out_dim}, W_std={format_number(W_std)}, b_std="
            f"{'None' if b_std is None else format_number(b_std)}"
            + (", standard)" if standard else ")"))
    features = None if standard else (
        lambda f, key, draws: rules.dense(f, W_std, b_std if has_bias else None))
    return make_layer(name, init, apply, kernel_map, remask=True, features=features)


# ---------------------------------------------------------------------------------------------
def elementwise_layer(name: str, fn: Callable, pair: Callable, diag: Callable,
                      random_features: bool = True, homogeneous: bool = False) -> Layer:
    """A layer applying ``fn`` elementwise, with kernel rules ``pair``/``diag`` (see
    ``ntkgp._src.kernels.activations.apply_activation``); ``homogeneous``: ``fn`` bends at 0
    only (its random features sample a preceding bias where it bends)."""
    def init(key, input_shape):
        return tuple(input_shape), ()

    def apply(params, x, **kwargs):
        return fn(x)

    def kernel_map(k: Kernel) -> Kernel:
        return act.apply_activation(k, pair, diag)

    features = (lambda f, key, draws: rules.activation(f, key, draws, fn, homogeneous)) \
        if random_features else None
    return make_layer(name, init, apply, kernel_map, heavy=True, remask=True,
                      features=features)


def ABRelu(a: float, b: float) -> Layer:
    r""":math:`\phi(x) = a \min(x, 0) + b \max(x, 0)`, with the closed-form arc-cosine kernel.

    Args:
        a: slope for negative inputs.
        b: slope for positive inputs.

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.

    References:
        Cho & Saul 2009, "Kernel methods for deep learning".
    """
    checks.check_scalar(a, "a")
    checks.check_scalar(b, "b")
    return elementwise_layer(
        f"ABRelu(a={format_number(a)}, b={format_number(b)})",
        lambda x: jnp.where(x > 0, b * x, a * x),
        functools.partial(act.abrelu_pair, a=a, b=b),
        functools.partial(act.abrelu_diag, a=a, b=b), homogeneous=True)


def Relu() -> Layer:
    r""":math:`\phi(x) = \max(x, 0)` (arc-cosine kernel of order 1).

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    layer = ABRelu(0.0, 1.0)
    return dataclass_rename(layer, "Relu()")


def LeakyRelu(alpha: float) -> Layer:
    r""":math:`\phi(x) = x` for :math:`x > 0`, :math:`\alpha x` otherwise.

    Closed form: the arc-cosine kernel of `ABRelu` with ``a=alpha, b=1``.

    Args:
        alpha: slope for negative inputs.

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    checks.check_scalar(alpha, "alpha")
    return dataclass_rename(ABRelu(alpha, 1.0), f"LeakyRelu({format_number(alpha)})")


def Abs() -> Layer:
    r""":math:`\phi(x) = |x|`.

    Closed-form kernel: the arc-cosine kernel of `ABRelu` with ``a=-1, b=1``.

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    return dataclass_rename(ABRelu(-1.0, 1.0), "Abs()")


def Erf(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Layer:
    r""":math:`\phi(x) = a\,\mathrm{erf}(b x) + c` (Williams 1997 closed form).

    Args:
        a: output scale.
        b: input scale.
        c: output shift (adds :math:`c^2` to the NNGP, nothing to the derivative kernel).

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    for v, n in ((a, "a"), (b, "b"), (c, "c")):
        checks.check_scalar(v, n)
    return elementwise_layer(
        f"Erf(a={format_number(a)}, b={format_number(b)}, c={format_number(c)})",
        lambda x: a * jax.scipy.special.erf(b * x) + c,
        functools.partial(act.erf_pair, a=a, b=b, c0=c),
        functools.partial(act.erf_diag, a=a, b=b, c0=c))


def Sin(a: float = 1.0, b: float = 1.0, c: float = 0.0) -> Layer:
    r""":math:`\phi(x) = a \sin(b x + c)` (closed form via Gaussian characteristic functions).

    Args:
        a: output scale.
        b: input frequency.
        c: phase.

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    for v, n in ((a, "a"), (b, "b"), (c, "c")):
        checks.check_scalar(v, n)
    return elementwise_layer(
        f"Sin(a={format_number(a)}, b={format_number(b)}, c={format_number(c)})",
        lambda x: a * jnp.sin(b * x + c),
        functools.partial(act.sin_pair, a=a, b=b, c0=c),
        functools.partial(act.sin_diag, a=a, b=b, c0=c))


def _gelu_exact(x):
    return 0.5 * x * (1 + jax.scipy.special.erf(x / np.sqrt(2.0)))


def _gelu_tanh(x):
    return 0.5 * x * (1 + jnp.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def Gelu(approximate: bool = False, degree: int = 64) -> Layer:
    r""":math:`\phi(x) = x\,\Phi(x)` (exact, closed-form kernel) or its tanh approximation
    (``approximate=True``: the kernel of that approximation by Gauss–Hermite quadrature of
    ``degree``, so that kernel and network always agree).

    Args:
        approximate: the tanh approximation instead of the exact :math:`x\,\Phi(x)`.
        degree: quadrature nodes per dimension for ``approximate=True``.

    Returns:
        A `Layer` (no parameters) acting elementwise on inputs of any shape.
    """
    degree = checks.check_positive_int(degree, "degree")
    if approximate:
        return elementwise_layer(
            "Gelu(approximate=True)", _gelu_tanh,
            functools.partial(act.quadrature_pair, fn=_gelu_tanh, degree=degree),
            functools.partial(act.quadrature_diag, fn=_gelu_tanh, degree=degree))
    return elementwise_layer("Gelu()", _gelu_exact, act.gelu_pair, act.gelu_diag)


def dataclass_rename(layer: Layer, name: str) -> Layer:
    return dataclasses.replace(layer, name=name)


# ---------------------------------------------------------------------------------------------
def Identity() -> Layer:
    """The identity map (kernel unchanged).

    Useful as a branch of `parallel` (e.g. the skip path of a residual block).

    Returns:
        A `Layer` (no parameters); outputs equal inputs.
    """
    return make_layer("Identity()", lambda key, s: (tuple(s), ()), lambda p, x, **kw: x,
                      lambda k: k, features=rules.identity)


# ---------------------------------------------------------------------------------------------
def Dropout(rate: float, mode: str = "train") -> Layer:
    r"""Dropout with *keep* probability ``rate`` (neural-tangents' and ``jax.example_libraries``'
    convention: ``rate=1`` keeps everything): in training, each entry is kept with probability
    ``rate`` and divided by it.

    Kernel (``mode='train'``, the average over masks, independent per entry): an entry paired
    with itself gains the factor :math:`1/\text{rate}` —

    .. math:: K'(x, x) = K(x, x)/\text{rate}, \qquad K'(x, x') = K(x, x') \ (x \ne x'),

    likewise the NTK; on images only a position paired with itself. Only kernels of ``x1``
    with itself (``x2=None``) have such pairs: with ``x2`` given, the inputs are taken to be
    different examples, as in neural-tangents. ``mode='test'``: the identity.

    Args:
        rate: keep probability, in (0, 1].
        mode: ``'train'`` or ``'test'``.

    Returns:
        A `Layer` (no parameters). ``apply(params, x, rng=key)`` needs a PRNG key in
        ``'train'`` mode (`serial` and `parallel` give each layer its own); masks are drawn
        per entry of the batch, so examples get independent masks. (`ntkgp.empirical`
        evaluates a function one example at a time: with one fixed key every example would
        get the same mask, and its kernels would not be the ones above.)
    """
    checks.check_scalar(rate, "rate")
    if not 0.0 < float(rate) <= 1.0:
        raise ValueError(f"Dropout's `rate` is the probability of keeping an entry, in (0, 1] "
                         f"(neural-tangents' convention: rate=1 keeps everything); got "
                         f"{rate!r}. For a drop probability p, pass rate=1 - p.")
    checks.check_choice(mode, "mode", ("train", "test"))
    name = f"Dropout({format_number(rate)}, {mode})"
    if mode == "test":
        return make_layer(name, lambda key, s: (tuple(s), ()), lambda p, x, **kw: x, lambda k: k,
                          features=rules.identity)

    def apply(params, x, rng=None, **kwargs):
        if rng is None:
            raise ValueError(f"{name} needs a PRNG key in training mode: call "
                             "`apply(params, x, rng=jax.random.PRNGKey(...))`, or build the "
                             "layer with mode='test'.")
        keep = jax.random.bernoulli(rng, rate, x.shape)
        return jnp.where(keep, x / rate, jnp.zeros((), x.dtype))

    def kernel_map(k: Kernel) -> Kernel:
        factor = 1.0 / rate

        def self_pairs(a, eye):
            return None if a is None else jnp.where(eye, a * factor, a)

        if k.full_spatial:
            cov_eye = act.spatial_eye(k.spatial_shape, 1)
            cov1 = self_pairs(k.cov1, cov_eye)
            cov2 = self_pairs(k.cov2, cov_eye)
        else:
            cov1 = k.cov1 * factor
            cov2 = None if k.cov2 is None else k.cov2 * factor
        nngp, ntk = k.nngp, k.ntk
        eye = act.pair_eye(k)
        if eye is not None:
            nngp, ntk = self_pairs(nngp, eye), self_pairs(ntk, eye)
        return k.replace(nngp=nngp, ntk=ntk, cov1=cov1, cov2=cov2, is_gaussian=False)

    return make_layer(name, lambda key, s: (tuple(s), ()), apply, kernel_map, remask=True)
