r"""The infinite-width side of a width sweep: the analytic kernels of one network family at one
width, the learning rate, and the closed forms that trained networks are set against.

In the NTK parameterization (and in the maximal-update one, trained as an NTK-parameterized
network) the analytic kernels do not depend on the width and one `Reference` serves every
width; in the standard parameterization the NTK grows with the width, and so does the largest
stable step: each width gets its own.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src.experiments.metrics import accuracy, rmse
from ntkgp._src.predict.dynamics import gradient_descent_mse, max_learning_rate
from ntkgp._src.predict.ensemble import gradient_descent_mse_ensemble
from ntkgp._src.predict.gp import gp_inference
from ntkgp._src.predict.ode import gradient_descent
from ntkgp._src.train.losses import curvature_bound


@dataclasses.dataclass
class Reference:
    """The infinite-width predictions for one analytic kernel.

    Attributes:
        k_dd, k_td: the analytic kernels train-train ``(N, N)`` and test-train ``(M, N)``.
        learning_rate: the step :math:`\\eta` of the networks; ``t = learning_rate * steps``.
        closed: ``closed(times, f0_train, f0_test, ntk_test_train)`` returns the training and
            test outputs at each time from the given initial outputs (closed form for the
            squared error, the ODE for cross-entropy).
        mean: the ensemble (or, for centered networks, deterministic) mean at ``t``, ``(M, K)``.
        var: the ensemble's predicted variance on test points ``(M, 1)``, or ``None``.
        test_rmse_ntk, test_rmse_nngp, nngp_noise: test errors of ``mean`` and of the NNGP
            posterior mean with the noise of the largest marginal likelihood.
        test_acc_ntk, test_acc_nngp: accuracies (cross-entropy only).
    """

    k_dd: object
    k_td: object
    learning_rate: float
    t: float
    closed: Callable
    mean: object
    var: Optional[np.ndarray]
    test_rmse_ntk: float
    test_rmse_nngp: float
    nngp_noise: float
    test_acc_ntk: Optional[float] = None
    test_acc_nngp: Optional[float] = None


def default_step(ntk_train_train, y_shape, loss: str = "mse", momentum: float = 0.0) -> float:
    """Half the largest stable gradient-descent step of the analytic NTK for the squared error
    (times ``1 - momentum``), scaled for another loss by the ratio of `curvature_bound`-s."""
    n, n_out = y_shape
    return 0.5 * (1.0 - momentum) * float(max_learning_rate(ntk_train_train, n_outputs=n_out)) \
        * curvature_bound("mse", n, n_out) / curvature_bound(loss, n, n_out)


def check_width_independent(make_net, widths, x):
    """The closed forms use one analytic kernel: its NTK must be the same at the first and
    last width (NTK parameterization), on a few inputs."""
    a = np.asarray(make_net(widths[0]).kernel(x, None, "ntk"), np.float64)
    b = np.asarray(make_net(widths[-1]).kernel(x, None, "ntk"), np.float64)
    if not np.allclose(a, b, rtol=1e-4, atol=0):
        raise ValueError("the analytic NTK of `make_net(width)` changes with the width "
                         f"({widths[0]} vs {widths[-1]}): this needs networks in the NTK "
                         "parameterization (nn.Dense(..., parameterization='ntk'), the "
                         "default); width_sweep takes standard-parameterization networks "
                         "with parameterization='standard'.")


def _nngp_by_evidence(k_dd, k_td, y_train):
    """The NNGP posterior mean with the observation noise (relative ``diag_reg``) that
    maximizes the marginal likelihood on a grid 1e-4 .. 10."""
    best = None
    for noise in np.logspace(-4, 1, 16):
        post = gp_inference(k_dd, y_train, diag_reg=float(noise), get="nngp")
        lml = float(post.log_marginal_likelihood("nngp"))
        if best is None or lml > best[0]:
            best = (lml, float(noise), post)
    return best[1], best[2].predict(k_td, get="nngp")


@functools.partial(jax.jit, static_argnames=("loss", "steps"))
def discrete_steps(loss, k_dd, k_td, y, f_train, f_test, lr, steps):
    """``steps`` full-batch gradient steps in function space with the kernel: the map the
    networks follow at infinite width, whose flow `gradient_descent` integrates."""
    def body(_, f):
        g = jax.grad(loss)(f[0], y)
        return f[0] - lr * (k_dd @ g), f[1] - lr * (k_td @ g)

    return jax.lax.fori_loop(0, steps, body, (f_train, f_test))[1]


def reference(net, x_train, y_train, x_test, y_test, *, steps: int, loss: str, loss_fn,
              learning_rate: Optional[float], momentum: float, diag_reg: float,
              ensemble: bool) -> Reference:
    """The infinite-width predictions for the analytic kernel of ``net``.

    Args:
        net: an ``ntkgp.nn`` network (its analytic kernel).
        x_train, y_train, x_test, y_test: the data, targets ``(N, K)`` and ``(M, K)``.
        steps: optimizer steps; ``t = learning_rate * steps``.
        loss, loss_fn: the loss's name (``'mse'`` or ``'xent'``) and function.
        learning_rate: the step, or ``None`` for `default_step`.
        momentum: heavy-ball coefficient (0 for plain steps).
        diag_reg: regularization of the closed forms.
        ensemble: compute the ensemble over initializations with its variance (uncentered
            squared-error networks); otherwise the mean from zero initial outputs.
    """
    k_dd, k_td = net.kernel(x_train, None), net.kernel(x_test, x_train)
    # with momentum the effective step is lr / (1 - beta): match gradient descent's, which keeps
    # the heavy ball well damped (at half its own stable maximum it oscillates, and tiny kernel
    # differences shift the phase of the oscillation)
    lr = learning_rate or default_step(k_dd.ntk, y_train.shape, loss, momentum)
    t = lr * steps
    nngp_noise, nngp_mean = _nngp_by_evidence(k_dd, k_td, y_train)
    acc_ntk = acc_nngp = var = None
    if loss == "xent":
        closed = gradient_descent(loss_fn, k_dd.ntk, y_train)
        mean = closed(t, jnp.zeros_like(y_train), jnp.zeros_like(y_test), k_td.ntk)[1]
        acc_ntk, acc_nngp = accuracy(mean, y_test), accuracy(nngp_mean, y_test)
    else:
        closed = gradient_descent_mse(k_dd.ntk, y_train, learning_rate=lr, momentum=momentum,
                                      diag_reg=diag_reg)
        if ensemble:
            ens = gradient_descent_mse_ensemble(net, x_train, y_train, learning_rate=lr,
                                                momentum=momentum, diag_reg=diag_reg)
            mean, cov = ens(t, x_test, "ntk", compute_cov=True)
            var = np.asarray(jnp.diagonal(cov), np.float64)[:, None]
        else:
            mean = closed(t, None, None, k_td.ntk)[1]
    return Reference(k_dd=k_dd, k_td=k_td, learning_rate=float(lr), t=float(t), closed=closed,
                     mean=mean, var=var, test_rmse_ntk=rmse(mean, y_test),
                     test_rmse_nngp=rmse(nngp_mean, y_test), nngp_noise=nngp_noise,
                     test_acc_ntk=acc_ntk, test_acc_nngp=acc_nngp)
