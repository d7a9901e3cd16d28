r"""The linearized (parameter-tangent-space) model and the centered model, as pytrees."""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax

from ntkgp._src import checks
from ntkgp._src.empirical.functions import as_apply_fn


def linearize(f: Callable, params0) -> Callable:
    r"""The first-order Taylor model of ``f`` around ``params0``.

    .. math:: f^\mathrm{lin}(x, \theta) = f(x, \theta_0) + J(x, \theta_0)(\theta - \theta_0)

    Trained by gradient descent on MSE, its outputs follow exactly the linear dynamics with the
    empirical NTK at :math:`\theta_0` (`ntkgp.predict.gradient_descent_mse`): it only searches
    the parameter tangent space at :math:`\theta_0`.

    Args:
        f: ``f(params, x)``, or an ``ntkgp.nn`` network.
        params0: the parameters to expand around.

    Returns:
        ``f_lin(params, x)``, with the same parameter structure as ``f``; one forward and one
        Jacobian-vector product per call.

    References:
        Lee et al. 2019, https://arxiv.org/abs/1902.06720.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ntkgp import nn, train
        >>> net = nn.serial(nn.Dense(64), nn.Relu(), nn.Dense(1))
        >>> _, p0 = net.init(jax.random.PRNGKey(0), (-1, 3))
        >>> f_lin = train.linearize(net, p0)
        >>> x = jnp.ones((2, 3))
        >>> bool(jnp.allclose(f_lin(p0, x), net.apply(p0, x)))
        True
    """
    return Linearized(as_apply_fn(f), params0)


@dataclasses.dataclass(frozen=True)
class Linearized:
    """``f_lin(params, x)`` of `linearize`: a pytree whose data is ``params0`` (so one compiled
    training loop serves every linearization of the same network)."""

    apply: Callable
    params0: object
    centered: bool = False

    def __call__(self, params, x, **kwargs):
        delta = jax.tree.map(lambda a, b: a - b, params, self.params0)
        out, tangent = jax.jvp(lambda p: self.apply(p, x, **kwargs), (self.params0,), (delta,))
        return tangent if self.centered else out + tangent


jax.tree_util.register_dataclass(Linearized, data_fields=["params0"],
                                 meta_fields=["apply", "centered"])


@dataclasses.dataclass(frozen=True)
class Centered:
    """``f(params, x) - f(params0, x)`` of `center`: a pytree whose data is ``params0``."""

    apply: Callable
    params0: object

    def __call__(self, params, x, **kwargs):
        return self.apply(params, x, **kwargs) - self.apply(self.params0, x, **kwargs)


jax.tree_util.register_dataclass(Centered, data_fields=["params0"], meta_fields=["apply"])


def center(f: Callable, params0) -> Callable:
    r"""The centered model :math:`f(x, \theta) - f(x, \theta_0)`: zero outputs at
    initialization.

    Training it removes the random initial function, so that in the kernel regime one
    network's prediction converges to the deterministic NTK mean (the closed form from zero
    initial outputs) rather than to one draw of the ensemble. Its NTK is that of ``f``.

    Args:
        f: ``f(params, x)``, an ``ntkgp.nn`` network, or a `linearize`-d model (then
            ``params0`` must be the parameters it was linearized around).
        params0: the parameters at which the outputs are zero.

    Returns:
        ``f_c(params, x)``, trainable by `train` (a pytree, so ``vmap`` over ``params0`` works).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from ntkgp import nn, train
        >>> net = nn.serial(nn.Dense(64), nn.Relu(), nn.Dense(1))
        >>> _, p0 = net.init(jax.random.PRNGKey(0), (-1, 3))
        >>> float(jnp.abs(train.center(net, p0)(p0, jnp.ones((2, 3)))).max())
        0.0
    """
    if isinstance(f, Linearized):
        return Linearized(f.apply, f.params0, centered=True)
    return Centered(as_apply_fn(f), params0)


@dataclasses.dataclass(frozen=True)
class PlainApply:
    apply: Callable

    def __call__(self, params, x, **kwargs):
        return self.apply(params, x, **kwargs)


jax.tree_util.register_dataclass(PlainApply, data_fields=[], meta_fields=["apply"])


def as_model(f: Callable) -> Callable:
    """``f`` as a pytree ``model(params, x)``: a `linearize`-d or `center`-ed model as it is,
    a network or plain function wrapped (so jitted training loops take it as an argument)."""
    return f if isinstance(f, (Linearized, Centered)) else PlainApply(as_apply_fn(f))


def taylor_expand(f: Callable, params0, degree: int) -> Callable:
    r"""The Taylor polynomial of ``f`` in its parameters around ``params0``, to ``degree``.

    .. math:: f^{(\le d)}(\theta, x) = \sum_{k=0}^{d} \frac{1}{k!}\,
        \partial_\theta^k f(\theta_0, x)[\theta - \theta_0, \dots, \theta - \theta_0]

    Degree 1 is `linearize`'s model (the parameter tangent space), degree 2 adds the
    curvature that makes the NTK move during training. neural-tangents'
    ``taylor_expand(f, params, degree)``.

    Args:
        f: ``f(params, *args, **kwargs)`` or an ``ntkgp.nn`` network.
        params0: the parameters to expand around.
        degree: :math:`d \ge 0`; the cost grows like :math:`2^d` forward passes (nested
            Jacobian-vector products).

    Returns:
        ``f_d(params, *args, **kwargs)``.

    Example:
        >>> import jax.numpy as jnp
        >>> from ntkgp import train
        >>> f = lambda p, x: jnp.exp(p * x)
        >>> f2 = train.taylor_expand(f, 0.0, 2)
        >>> round(float(f2(0.1, 1.0)), 6)  # 1 + 0.1 + 0.1**2 / 2
        1.105
    """
    degree = checks.check_int(degree, "degree", 0)
    apply = as_apply_fn(f)

    def expanded(params, *args, **kwargs):
        delta = jax.tree.map(lambda a, b: a - b, params, params0)

        def g(p):
            return apply(p, *args, **kwargs)

        out, term, factorial = g(params0), g, 1.0
        for k in range(1, degree + 1):
            term = functools.partial(lambda p, h: jax.jvp(h, (p,), (delta,))[1], h=term)
            factorial *= k
            out = jax.tree.map(lambda o, t: o + t / factorial, out, term(params0))
        return out

    return expanded
