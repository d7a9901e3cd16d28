r"""Training losses: the squared error with its closed form, cross-entropy, any function.

A loss is ``loss(outputs, targets) -> scalar`` on arrays of shape ``(N, K)``. The same
function drives finite networks (`ntkgp.train.train`), their linearizations, and the
infinite-width function-space ODE (`ntkgp.predict.gradient_descent`), so all three follow
one gradient flow.
"""

from __future__ import annotations

from typing import Callable, Union

import jax
import jax.numpy as jnp

from ntkgp._src import checks


def mse_loss(outputs, targets):
    r""":math:`\frac{1}{2NK}\sum\|f - y\|^2`, the loss whose gradient flow `ntkgp.predict`
    solves in closed form.

    Args:
        outputs: network outputs ``(N, K)``.
        targets: targets ``(N, K)``.

    Returns:
        A scalar, ``0.5 * mean((outputs - targets)**2)``.
    """
    return 0.5 * jnp.mean((outputs - targets) ** 2)


def cross_entropy_loss(outputs, targets):
    r"""Softmax cross-entropy averaged over examples,
    :math:`-\frac1N \sum_i \sum_k y_{ik} \log \operatorname{softmax}(f_i)_k`.

    Its gradient in the outputs is :math:`(\operatorname{softmax}(f) - y)/N`, and its
    Hessian :math:`(\operatorname{diag} p - p p^\top)/N` per example (largest eigenvalue at most
    :math:`1/(2N)`), so the step sizes of the squared error stay stable.

    Args:
        outputs: logits ``(N, K)``.
        targets: class probabilities ``(N, K)``, e.g. one-hot labels.

    Returns:
        A scalar.
    """
    return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(outputs, axis=-1), axis=-1))


LOSSES = {"mse": mse_loss, "xent": cross_entropy_loss}


def get_loss(loss: Union[str, Callable]) -> Callable:
    """The loss function of a name (``'mse'``, ``'xent'``) or a function itself.

    Raises:
        ValueError: an unknown name.
        TypeError: neither a name nor a callable.
    """
    if isinstance(loss, str):
        checks.check_choice(loss, "loss", tuple(LOSSES))
        return LOSSES[loss]
    if not callable(loss):
        raise TypeError(f"`loss` must be 'mse', 'xent' or a function loss(outputs, targets) -> "
                        f"scalar; got {type(loss).__name__}.")
    return loss


def curvature_bound(loss: str, n: int, k: int) -> float:
    r"""The largest eigenvalue the output Hessian of a named loss can reach on ``n`` examples
    of ``k`` outputs: :math:`1/(nk)` for the squared error (everywhere), :math:`1/(2n)` for
    softmax cross-entropy (the top eigenvalue of :math:`\operatorname{diag} p - p p^\top` is
    at most 1/2, reached as training sharpens the probabilities; :math:`1/(nk)` at uniform
    ones). Step sizes from it stay stable through the whole of training.

    Args:
        loss: ``'mse'`` or ``'xent'``.
        n, k: examples and outputs.

    Returns:
        A float.
    """
    checks.check_choice(loss, "loss", tuple(LOSSES))
    if loss == "mse" or k < 2:
        return 1.0 / (n * k)
    return 1.0 / (2.0 * n)


def loss_curvature(loss: Callable, outputs, targets, iterations: int = 20):
    r"""Largest eigenvalue of :math:`\nabla_f^2 L(f, y)` at ``outputs``, by power iteration
    with Hessian-vector products (exact for the squared error, where it is
    :math:`1/(NK)`): the local curvature of a loss given as a function (named losses have
    `curvature_bound`).

    Args:
        loss: ``loss(outputs, targets) -> scalar``.
        outputs, targets: arrays ``(N, K)``.
        iterations: power-iteration steps.

    Returns:
        A scalar array.
    """
    grad = jax.grad(lambda f: loss(f, targets))

    def hvp(v):
        return jax.jvp(grad, (outputs,), (v,))[1]

    def body(_, v):
        w = hvp(v)
        return w / jnp.maximum(jnp.linalg.norm(w), jnp.finfo(w.dtype).tiny)

    v0 = jax.random.normal(jax.random.PRNGKey(1), outputs.shape, outputs.dtype)
    v = jax.lax.fori_loop(0, iterations, body, v0 / jnp.linalg.norm(v0))
    return jnp.vdot(v, hvp(v))
