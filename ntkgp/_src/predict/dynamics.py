r"""`gradient_descent_mse`: the linearized training dynamics of one given network, and
`max_learning_rate`."""

from __future__ import annotations

from typing import Optional

import jax.numpy as jnp

from ntkgp._src import checks
from ntkgp._src.predict import blocks, common
from ntkgp._src.predict.common import check_learning_rate
from ntkgp._src.predict.posterior import Posterior
from ntkgp._src.solve.operators import DenseKernelOperator
from ntkgp._src.solve.solvers import CholeskySolver, EigenSolver


class LinearizedDynamics:
    r"""Outputs of one linearized network during gradient descent; made by
    `gradient_descent_mse`. Call it as ``dyn(t, fx_train_0, fx_test_0, k_test_train)``.

    A thin wrapper of `Posterior` (mode ``'ntkgp'``: only its mean, on the residual targets
    :math:`y - f_0`): the NTK is factored once per solver (Cholesky for :math:`t=\infty`,
    eigendecomposition for finite times) and reused for every set of initial outputs.
    """

    def __init__(self, k_train_train, y_train, *, learning_rate=None, momentum=0.0,
                 diag_reg=0.0, diag_reg_absolute_scale=False, jitter=None):
        k = checks.check_square(getattr(k_train_train, "ntk", k_train_train), "k_train_train",
                                "NTK of the training points")
        checks.check_finite(k, "k_train_train")
        self.k_train_train = k
        y, self._y_was_1d = checks.check_targets(y_train, k.shape[0])
        self.y_train = y.astype(k.dtype)
        self.learning_rate, self.momentum = check_learning_rate(learning_rate, momentum)
        self._options = dict(diag_reg=checks.check_nonneg(diag_reg, "diag_reg"),
                             diag_reg_absolute_scale=bool(diag_reg_absolute_scale),
                             learning_rate=self.learning_rate, momentum=self.momentum)
        self._jitter = jitter
        self._posteriors = {}

    def _posterior(self, at_inf: bool) -> Posterior:
        name = "cholesky" if at_inf else "eigh"
        if name not in self._posteriors:
            solver = CholeskySolver(self._jitter) if at_inf else EigenSolver()
            self._posteriors[name] = Posterior.from_kernels(
                {"ntk": DenseKernelOperator(self.k_train_train, name="NTK")}, self.y_train,
                mode="ntkgp", solver=solver, **self._options)
        return self._posteriors[name]

    def _outputs(self, f, shape, name):
        if f is None or (not hasattr(f, "shape") and f == 0):
            return jnp.zeros(shape, self.y_train.dtype)
        f = checks.as_float_array(f, name)
        if self._y_was_1d and f.ndim == 1:
            f = f[:, None]
        if tuple(f.shape) != tuple(shape):
            raise ValueError(f"`{name}` must have shape {shape} (points, outputs) like the "
                             f"targets; got {tuple(f.shape)}.")
        checks.check_finite(f, name)
        return f.astype(self.y_train.dtype)

    def __call__(self, t=None, fx_train_0=None, fx_test_0=None, k_test_train=None):
        r"""Outputs at training time ``t`` from the initial outputs.

        .. math::
            f_t(X) = y + e^{-t\Theta/m}(f_0(X) - y), \qquad
            f_t(x) = f_0(x) + \Theta_{xX}\Theta^{-1}(I - e^{-t\Theta/m})(y - f_0(X)).

        Args:
            t: a number, a 1-D array of ``T`` times, or ``None``/``inf`` for convergence.
            fx_train_0: initial outputs on the training points, shape like ``y_train``
                (``None``: zeros).
            fx_test_0: initial outputs on the test points, shape ``(M, K)`` (``None``: zeros).
            k_test_train: the NTK of test against training points, shape ``(M, N)``, or
                ``None`` for training outputs only.

        Returns:
            ``fx_train_t`` of shape ``(N, K)`` (``(T, N, K)`` for an array of times), or
            ``(fx_train_t, fx_test_t)`` when ``k_test_train`` is given.
        """
        n, k = self.y_train.shape
        ts, scalar = common.normalize_times(t)
        common.check_steps(ts, self.learning_rate)
        f0 = self._outputs(fx_train_0, (n, k), "fx_train_0")
        # the outputs move by the zero-initialized solution for the residual targets y - f0
        post = self._posterior(common.is_infinite(ts) and scalar).with_targets(
            self.y_train - f0)
        lead = () if scalar else (1,)  # a time axis for an array of times
        out = [f0.reshape(lead + f0.shape) + post.predict(None, t)]
        if k_test_train is not None:
            d_td = checks.as_float_array(getattr(k_test_train, "ntk", k_test_train),
                                         "k_test_train")
            mt = d_td.shape[0] if d_td.ndim == 2 else -1
            d_td = common.check_matrix(d_td, (mt, n), "k_test_train").astype(f0.dtype)
            f0_test = self._outputs(fx_test_0, (mt, k), "fx_test_0")
            out.append(f0_test.reshape(lead + f0_test.shape) + post.predict(t=t, k_test_train=d_td))
        if self._y_was_1d:
            out = [o[..., 0] for o in out]
        return tuple(out) if len(out) == 2 else out[0]

    predict = __call__


class BlockDynamics:
    """`LinearizedDynamics` of a kernel with full ``K x K`` output blocks (``trace_axes=()``):
    the same call, with kernels ``(M, N, K, K)`` and outputs ``(M, K)``."""

    def __init__(self, dyn: LinearizedDynamics, n_outputs: int):
        self.dyn, self.n_outputs = dyn, n_outputs

    def __call__(self, t=None, fx_train_0=None, fx_test_0=None, k_test_train=None):
        k = self.n_outputs
        out = self.dyn(t, blocks.column(fx_train_0, k, "fx_train_0"),
                       blocks.column(fx_test_0, k, "fx_test_0"),
                       None if k_test_train is None else blocks.matrix(
                           getattr(k_test_train, "ntk", k_test_train), k, "k_test_train"))
        if k_test_train is None:
            return blocks.outputs(out, k)
        return tuple(blocks.outputs(o, k) for o in out)

    predict = __call__


def gradient_descent_mse(k_train_train, y_train, *, learning_rate: Optional[float] = None,
                         momentum: float = 0.0, diag_reg=0.0, diag_reg_absolute_scale: bool = False,
                         jitter: Optional[float] = None, trace_axes=(-1,)) -> LinearizedDynamics:
    r"""The training dynamics of one given network in its tangent space.

    A network linearized around its initial parameters, trained by gradient descent on
    :math:`\frac{1}{2m}\sum\|f - y\|^2` (``m`` = ``N x K`` target entries), moves its outputs by
    its empirical NTK :math:`\Theta` alone: :math:`\dot f_t(X) = -\frac{1}{m}\Theta (f_t(X)-y)`
    (gradient flow, ``learning_rate=None``), or by steps
    :math:`f_{s+1} = f_s - \frac{\eta}{m}\Theta(f_s - y)` at time :math:`t = \eta s`. This is
    what that particular network converges to if it stays in its tangent space; compare it
    with real training to see where it leaves. With ``momentum`` :math:`\beta` the steps are
    heavy ball (optax ``sgd(eta, momentum=beta)``), solved exactly per eigendirection.

    Args:
        k_train_train: the NTK of the training points, shape ``(N, N)`` (or a `Kernel`; its
            ``ntk`` is used).
        y_train: targets of shape ``(N,)`` or ``(N, K)``.
        learning_rate: ``None`` (gradient flow) or the step :math:`\eta`.
        momentum: heavy-ball momentum :math:`\beta \in [0, 1)` (needs ``learning_rate``).
        diag_reg: :math:`\ge 0`, added to the NTK's diagonal (relative to its mean diagonal by
            default), which makes the training outputs converge to ``y`` even when
            :math:`\Theta` is singular.
        diag_reg_absolute_scale: whether ``diag_reg`` is in the kernel's units.
        jitter: see `ntkgp.linalg.cholesky`.
        trace_axes: ``(-1,)``: kernels ``(N, N)``, the same for every output; ``()``: an
            empirical kernel with full output blocks, ``(N, N, K, K)`` for targets ``(N, K)``
            (then ``k_test_train`` is ``(M, N, K, K)``; see ``ntkgp._src.predict.blocks``).

    Returns:
        A `LinearizedDynamics`, called as ``dyn(t, fx_train_0, fx_test_0, k_test_train)``.

    References:
        Lee et al. 2019, https://arxiv.org/abs/1902.06720, eqs. 9-11.

    Example:
        >>> import numpy as np
        >>> from ntkgp import nn, predict
        >>> net = nn.serial(nn.Dense(512), nn.Relu(), nn.Dense(1))
        >>> x, y = np.random.default_rng(0).normal(size=(2, 8, 1))
        >>> dyn = predict.gradient_descent_mse(net.kernel(x, None, "ntk"), y)
        >>> dyn(t=[0.0, 1.0, None]).shape
        (3, 8, 1)
    """
    n_blocks = blocks.blocks_of(trace_axes, y_train)
    if n_blocks is not None:
        k_train_train = blocks.matrix(getattr(k_train_train, "ntk", k_train_train), n_blocks,
                                      "k_train_train")
        y_train = blocks.column(y_train, n_blocks, "y_train")
    dyn = LinearizedDynamics(k_train_train, y_train, learning_rate=learning_rate,
                             momentum=momentum, diag_reg=diag_reg,
                             diag_reg_absolute_scale=diag_reg_absolute_scale, jitter=jitter)
    return dyn if n_blocks is None else BlockDynamics(dyn, n_blocks)


def max_learning_rate(ntk_train_train, *, n_outputs: int = 1, momentum: float = 0.0):
    r"""The largest stable step of full-batch gradient descent on MSE.

    For the loss :math:`\frac{1}{2NK}\sum\|f - y\|^2` the linearized outputs move by
    :math:`I - \frac{\eta}{NK}\Theta`, which contracts iff
    :math:`\eta < 2(1+\beta)NK/\lambda_{\max}(\Theta)` (heavy-ball momentum :math:`\beta`).

    Args:
        ntk_train_train: the NTK of the ``N`` training points, shape ``(N, N)``.
        n_outputs: ``K``, the number of outputs (target columns).
        momentum: :math:`\beta \in [0, 1)`.

    Returns:
        A scalar :math:`2(1+\beta)NK/\lambda_{\max}`.

    Example:
        >>> import jax.numpy as jnp
        >>> from ntkgp import predict
        >>> float(predict.max_learning_rate(jnp.eye(4) * 2.0))
        4.0
    """
    k = checks.check_square(ntk_train_train, "ntk_train_train", "NTK of the training points")
    checks.check_positive_int(n_outputs, "n_outputs")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"`momentum` must be in [0, 1); got {momentum!r}.")
    checks.check_finite(k, "ntk_train_train")
    lam = jnp.linalg.eigvalsh(0.5 * (k + k.T))[-1]
    return 2.0 * (1.0 + momentum) * k.shape[0] * n_outputs / lam
