r"""Training dynamics in function space for any loss: the ODE driven by the NTK.

A network in its tangent space, trained by gradient flow on a loss :math:`L(f, y)` of its
training outputs, moves every output by the NTK:

.. math::
    \dot f_t(X) = -\Theta(X, X)\, \nabla_f L(f_t(X), y), \qquad
    \dot f_t(x_*) = -\Theta(x_*, X)\, \nabla_f L(f_t(X), y).

For the squared error this is linear and has the closed form of `gradient_descent_mse`; for
cross-entropy it is not, and is integrated numerically (Dormand-Prince, adaptive steps).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.ode import odeint

from ntkgp._src import checks


def _first_kernel(k):
    for name in ("ntk", "nngp"):
        v = getattr(k, name, None)
        if v is not None:
            return v
    return k


def gradient_descent(loss: Callable, k_train_train, y_train, learning_rate: float = 1.0,
                     momentum: Optional[float] = None, trace_axes: Sequence[int] = (-1,), *,
                     rtol: Optional[float] = None, atol: Optional[float] = None,
                     max_steps: int = 100_000) -> Callable:
    r"""Outputs of a network trained by gradient descent on any ``loss``, in its tangent space.

    neural-tangents' ``predict.gradient_descent``, with its arguments and time convention:
    gradient flow :math:`\dot f = -\Theta \nabla_f L(f, y)` at time ``learning_rate * t``; with
    ``momentum`` :math:`\mu` the continuous-time heavy ball
    :math:`\ddot f = -\Theta \nabla_f L + \frac{\mu - 1}{\sqrt{\eta}} \dot f` in units of
    :math:`\sqrt{\eta}\, t`. The loss is used as given: ``0.5 * mean((f - y)**2)`` gives the
    dynamics of `gradient_descent_mse` (which has the closed form), and cross-entropy
    ``-mean(log_softmax(f) * y)`` those of a classifier.

    Args:
        loss: ``loss(outputs, targets) -> scalar``, of arrays of the targets' shape.
        k_train_train: the NTK of the training points: shape ``(N, N)`` with the default
            ``trace_axes`` for targets ``(N, K)`` (the kernel is :math:`\Theta \otimes I`
            over outputs), or ``(N, N, K, K)`` with ``trace_axes=()`` (each axis of the
            targets not traced, paired: neural-tangents' layout). A `Kernel` gives its NTK.
        y_train: targets ``(N, ...)``.
        learning_rate: :math:`\eta`; scales time (and, with momentum, the friction).
        momentum: ``None`` (gradient flow) or :math:`\mu \in [0, 1)`.
        trace_axes: target axes over which the kernel is the identity.
        rtol: relative tolerance of the adaptive ODE solver (default 1.4e-8 in float64,
            1e-6 in float32).
        atol: absolute tolerance (the same defaults).
        max_steps: most solver steps between two requested times (a cap against runaway
            integrations; the solver stops there, so raise it if a long horizon needs more).

    Returns:
        ``predict_fn(t, fx_train_0=0.0, fx_test_0=None, k_test_train=None)``: the training
        outputs at times ``t`` (any shape, any order, ``>= 0``; leading axes ``t.shape``),
        or ``(fx_train_t, fx_test_t)`` when ``fx_test_0`` is given (with ``k_test_train``,
        shape ``(M, N)`` or ``(M, N, K, K)``); ``fx_train_0=None`` returns the test outputs
        only.

    Raises:
        TypeError: a ``loss`` that is not a scalar function of (outputs, targets).
        ValueError: kernels or initial outputs whose shapes do not fit the targets, negative
            or infinite times, or (outside ``jit``) outputs that are not finite (the logits
            diverged: ask for earlier times).

    References:
        Lee et al. 2019, https://arxiv.org/abs/1902.06720, sec. 2.2.
    """
    y = jnp.asarray(checks.as_float_array(y_train, "y_train"))
    checks.check_finite(y, "y_train")
    k = jnp.asarray(_first_kernel(k_train_train), y.dtype)
    checks.check_loss(loss, y)
    traced = tuple(sorted({int(a) % y.ndim for a in trace_axes})) if y.ndim else ()
    kept = tuple(a for a in range(y.ndim) if a not in traced)
    if not kept or kept[0] != 0:
        raise ValueError(f"`trace_axes` {tuple(trace_axes)} may not include the examples' axis 0 "
                         f"of the targets (shape {tuple(y.shape)}).")
    want = tuple(d for a in kept for d in (y.shape[a], y.shape[a]))
    if tuple(k.shape) != want:
        raise ValueError(f"`k_train_train` must have shape {want} for targets of shape "
                         f"{tuple(y.shape)} with trace_axes={tuple(trace_axes)} (each kept "
                         f"axis paired); got {tuple(k.shape)}.")
    checks.check_finite(k, "k_train_train")
    eps = float(jnp.finfo(y.dtype).eps)
    rtol = (1.4e-8 if eps < 1e-10 else 1e-6) if rtol is None else float(rtol)
    atol = (1.4e-8 if eps < 1e-10 else 1e-6) if atol is None else float(atol)
    odd = tuple(range(1, 2 * len(kept), 2))
    last = tuple(range(-len(traced), 0))
    lr = float(learning_rate)
    friction = None
    if momentum is not None:
        momentum = checks.check_scalar(momentum, "momentum", low=0.0)
        if momentum >= 1:
            raise ValueError(f"`momentum` must be in [0, 1); got {momentum}.")
        lr = lr ** 0.5
        friction = (momentum - 1.0) / lr

    def drive(kernel, g):
        return -jnp.moveaxis(jnp.tensordot(kernel, g, (odd, kept)), last, traced)

    @jax.jit
    def _solve(k, kt, y, state, ts):
        grad_loss = jax.grad(lambda f: loss(f, y))

        def rhs(s, _):
            f = s["f"] if friction is not None else s
            g = grad_loss(f["train"])
            d = {"train": drive(k, g)}
            if kt is not None:
                d["test"] = drive(kt, g)
            if friction is None:
                return d
            q = s["q"]
            return {"f": q, "q": jax.tree.map(lambda a, b: a + friction * b, d, q)}

        return odeint(rhs, state, ts, rtol=rtol, atol=atol, mxstep=max_steps)

    def predict_fn(t=None, fx_train_0=0.0, fx_test_0=None, k_test_train=None):
        if t is None:
            raise ValueError("`t` must be given: the outputs under a loss without a closed form "
                             "(e.g. cross-entropy) need not converge as t -> infinity; pass "
                             "finite times (gradient_descent_mse has t=None).")
        times = jnp.asarray(t, y.dtype)
        if checks.is_concrete(times) and (np.any(np.asarray(times) < 0)
                                          or not np.all(np.isfinite(np.asarray(times)))):
            raise ValueError(f"`t` must be finite and >= 0; got {np.asarray(t)}.")
        test = fx_test_0 is not None
        if test and k_test_train is None:
            raise ValueError("`fx_test_0` needs `k_test_train`, the kernel between the test and "
                             "the training points.")
        f0 = jnp.broadcast_to(jnp.asarray(0.0 if fx_train_0 is None else fx_train_0, y.dtype),
                              y.shape)
        state = {"train": f0}
        kt = None
        if test:
            kt = jnp.asarray(_first_kernel(k_test_train), y.dtype)
            if kt.ndim != k.ndim or tuple(kt.shape[1::2]) != tuple(k.shape[1::2]):
                raise ValueError(f"`k_test_train` must pair M test points with the training "
                                 f"points in the layout of k_train_train {tuple(k.shape)} "
                                 f"(test axes where it has its first, training axes "
                                 f"{tuple(k.shape[1::2])} as its second); got "
                                 f"{tuple(kt.shape)}.")
            test_shape = list(y.shape)
            for i, a in enumerate(kept):
                test_shape[a] = kt.shape[2 * i]
            state["test"] = jnp.broadcast_to(jnp.asarray(fx_test_0, y.dtype), tuple(test_shape))
        if friction is not None:
            state = {"f": state, "q": jax.tree.map(jnp.zeros_like, state)}

        flat = times.reshape(-1) * lr
        order = jnp.argsort(flat)
        # the solver starts where the initial outputs are given, strictly before the first
        # requested time (as neural-tangents: a time 0 is then a negligible step away)
        start = jnp.where(flat[order][0] > 0, 0.0, -1e-24).astype(flat.dtype)
        ts = jnp.concatenate([start[None], flat[order]])
        sol = _solve(k, kt, y, state, ts)
        inverse = jnp.argsort(order)
        out = jax.tree.map(lambda a: a[1:][inverse].reshape(times.shape + a.shape[1:]),
                           sol["f"] if friction is not None else sol)
        leaves = jax.tree.leaves(out)
        if all(checks.is_concrete(a) for a in leaves) and not all(
                bool(jnp.all(jnp.isfinite(a))) for a in leaves):
            raise ValueError("The ODE solution is not finite at some of the requested times (the "
                             f"outputs diverged, or the solver took more than {max_steps} steps "
                             "between two times): ask for earlier times, or a smaller "
                             "learning_rate.")
        if not test:
            return out["train"]
        if fx_train_0 is None:
            return out["test"]
        return out["train"], out["test"]

    return predict_fn
