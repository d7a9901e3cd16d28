r"""`gradient_descent_mse_ensemble`: the outputs of infinitely wide networks trained by gradient
descent on MSE, over random initializations, at any training time (neural-tangents' function,
a thin wrapper of `Posterior`)."""

from __future__ import annotations

from typing import Optional

from ntkgp._src import checks
from ntkgp._src.predict import blocks, common
from ntkgp._src.predict.common import check_learning_rate, kernel_callable
from ntkgp._src.predict.posterior import Posterior
from ntkgp._src.solve.operators import DenseKernelOperator
from ntkgp._src.solve.solvers import CholeskySolver, EigenSolver
from ntkgp._src.util import check_fits_in_memory

GETS = ("nngp", "ntk")


class Ensemble:
    r"""Predictions of `gradient_descent_mse_ensemble`: one `Posterior` per mode (``get``) and
    solver, each made on first use and reused (Cholesky for :math:`t=\infty`,
    eigendecomposition for finite times), so new test points or times cost only their
    kernels and matrix products.

    Call it as ``ensemble(t=None, x_test=None, get='ntk', compute_cov=False)``.
    """

    def __init__(self, kernel_fn, x_train, y_train, *, learning_rate=None, momentum=0.0,
                 diag_reg=0.0, diag_reg_absolute_scale=False, jitter=None, trace_axes=(-1,)):
        self._kfn = kernel_callable(kernel_fn)
        x_train, _ = checks.check_inputs(x_train, None, ndim=None)
        n = x_train.shape[0]
        check_fits_in_memory(n, x_train.dtype, 5, "the training kernels (NNGP and NTK), "
                             "their factorizations and work space")
        self.x_train = x_train
        checks.check_targets(y_train, n)
        self.learning_rate, self.momentum = check_learning_rate(learning_rate, momentum)
        self._options = dict(diag_reg=checks.check_nonneg(diag_reg, "diag_reg"),
                             diag_reg_absolute_scale=bool(diag_reg_absolute_scale),
                             learning_rate=self.learning_rate, momentum=self.momentum)
        self._jitter = jitter
        k = self._kfn(x_train, None, ("nngp", "ntk"))
        self.k_train_train = {"nngp": getattr(k, "nngp", None), "ntk": getattr(k, "ntk", None)}
        for g, v in self.k_train_train.items():
            if v is None:
                raise ValueError(f"`kernel_fn(x_train, None, ('nngp', 'ntk'))` returned no {g}; "
                                 "it must return a Kernel with both.")
        self.n_blocks = blocks.blocks_of(trace_axes, y_train)
        mats = self.k_train_train
        if self.n_blocks is not None:  # (N, N, K, K) -> (N K, N K) over (point, output)
            mats = {g: blocks.matrix(v, self.n_blocks, f"kernel_fn(x_train).{g}")
                    for g, v in mats.items()}
            y_train = blocks.column(y_train, self.n_blocks, "y_train")
        # ntkgp kernels of x with itself are exactly symmetric by construction
        sym = bool(getattr(k, "x1_is_x2", False))
        self._ops = {g: DenseKernelOperator(v, sym, g.upper()) for g, v in mats.items()}
        self.y_train = y_train
        self._posteriors = {}

    def posterior(self, get: str = "ntk", solver: str = "cholesky") -> Posterior:
        """The `Posterior` of mode ``get`` solved by ``solver`` (``'cholesky'`` or
        ``'eigh'``), made once."""
        if (get, solver) not in self._posteriors:
            s = CholeskySolver(self._jitter) if solver == "cholesky" else EigenSolver()
            own = self.n_blocks is None  # block kernels come as matrices, made in __call__
            self._posteriors[get, solver] = Posterior.from_kernels(
                self._ops, self.y_train, mode=get, solver=s,
                kernel_fn=self._kfn if own else None, x_train=self.x_train if own else None,
                **self._options)
        return self._posteriors[get, solver]

    @property
    def n_factorizations(self) -> int:
        """How many factorizations this predictor has made (each is made once)."""
        return len(self._posteriors)

    def __call__(self, t=None, x_test=None, get: str = "ntk", compute_cov: bool = False):
        r"""Mean (and covariance) of the outputs at training time ``t``.

        Args:
            t: training time :math:`t = \eta \times \text{steps}`: a number, a 1-D array of
                ``T`` times, or ``None``/``inf`` for convergence.
            x_test: test inputs of shape ``(M, d)``, or ``None`` for the training points.
            get: ``'ntk'`` (all layers trained) or ``'nngp'`` (only the readout layer).
            compute_cov: whether to return the covariance too.

        Returns:
            The mean, of shape ``(M, K)`` (``(T, M, K)`` for an array of times; no ``K`` axis
            for 1-D targets), or a `Gaussian` ``(mean, cov)`` with ``cov`` of shape ``(M, M)``
            (``(T, M, M)``); with ``trace_axes=()``, ``cov`` is ``(M, M, K, K)``.
        """
        checks.check_choice(get, "get", GETS)
        ts, scalar = common.normalize_times(t)
        common.check_steps(ts, self.learning_rate)
        solver = "cholesky" if common.is_infinite(ts) and scalar else "eigh"
        post = self.posterior(get, solver)
        k = self.n_blocks
        if k is None:
            return post.predict(x_test, t, return_cov=bool(compute_cov))
        if x_test is None:
            out = post.predict(None, t, return_cov=bool(compute_cov))
            if not compute_cov:
                return blocks.outputs(out, k)
            return common.Gaussian(blocks.outputs(out.mean, k), blocks.covariance(out.cov, k))
        x_test, _ = checks.check_inputs(x_test, self.x_train[:1], ndim=None)
        both = ("nngp", "ntk")
        k_tt = self._kfn(x_test, None, both) if compute_cov else None
        return blocks.predict(post, k, self._kfn(x_test, self.x_train, both), k_tt, t)

    predict = __call__


def gradient_descent_mse_ensemble(kernel_fn, x_train, y_train, *,
                                  learning_rate: Optional[float] = None, momentum: float = 0.0,
                                  diag_reg=0.0, diag_reg_absolute_scale: bool = False,
                                  jitter: Optional[float] = None,
                                  trace_axes=(-1,)) -> Ensemble:
    r"""What infinitely wide networks trained by gradient descent on MSE predict, at any time.

    Over random initializations :math:`f_0 \sim \mathcal{GP}(0, K)` (NNGP :math:`K`), a network
    trained on the loss :math:`\frac{1}{2NK}\sum_{i}\|f(x_i) - y_i\|^2` (mean over all ``N x K``
    target entries) with learning rate :math:`\eta` for ``s`` steps, at time
    :math:`t = \eta s`, has Gaussian outputs (Lee et al. 2019) with

    .. math::
        \mu_t(x) = \Theta_{xd}\,\Theta^{-1}(I - e^{-t\Theta/(NK)})\,y, \qquad
        \Sigma_t = K_{xx} + Z_t^\top K Z_t - Z_t^\top K_{dx} - K_{xd} Z_t,

    :math:`Z_t = \Theta^{-1}(I - e^{-t\Theta/(NK)})\Theta_{dx}`, where :math:`\Theta` is the NTK
    of the training points plus ``diag_reg`` on its diagonal (relative to its mean diagonal by
    default). ``get='nngp'`` trains only the readout layer: :math:`\Theta` becomes the NNGP
    :math:`K + \sigma^2 I`, and then ``diag_reg`` acts as observation noise in the prior too,
    so that :math:`t=\infty` is exactly the Bayesian posterior of `gp_inference`. With
    ``learning_rate=None`` the dynamics are gradient flow; with a step :math:`\eta`,
    :math:`e^{-t\Theta/(NK)}` becomes :math:`(I - \eta\Theta/(NK))^{s}`, the exact
    discrete-step dynamics of the linearized network; with ``momentum`` :math:`\beta` too, the
    exact heavy-ball dynamics (optax ``sgd(eta, momentum=beta)``: :math:`v \leftarrow \beta v +
    g`, :math:`\theta \leftarrow \theta - \eta v`).

    Conventions match neural-tangents' ``gradient_descent_mse_ensemble`` at its default
    ``learning_rate=1``: its time is ours, its loss normalization ``y_train.size`` is our
    ``N K``, and its ``diag_reg`` is relative to the mean diagonal as ours.

    Args:
        kernel_fn: an ``ntkgp.nn`` network, or ``kernel_fn(x1, x2, get) -> Kernel``.
        x_train: training inputs of shape ``(N, ...)``.
        y_train: targets of shape ``(N,)`` or ``(N, K)``.
        learning_rate: ``None`` for gradient flow, or the step :math:`\eta > 0`; then every
            finite ``t`` must be a whole number of steps.
        momentum: heavy-ball momentum :math:`\beta \in [0, 1)` (needs ``learning_rate``).
        diag_reg: :math:`\ge 0`, regularization of the training kernel's diagonal.
        diag_reg_absolute_scale: whether ``diag_reg`` is in the kernel's units.
        jitter: see `ntkgp.linalg.cholesky`.
        trace_axes: ``(-1,)``: kernels ``(N1, N2)``, the same for every output; ``()``:
            ``kernel_fn`` returns full output blocks ``(N1, N2, K, K)`` (an empirical kernel
            function with ``trace_axes=()`` and its ``params`` bound), treated as one matrix
            over (point, output) pairs (see `gradient_descent_mse`).

    Returns:
        An `Ensemble`: ``ensemble(t, x_test, get, compute_cov)`` returns the mean, or a
        `Gaussian` ``(mean, cov)``; see `Ensemble.__call__` for shapes.

    Raises:
        ValueError: for inputs of the wrong shape, NaN/inf, or bad options.
        MemoryError: when the training kernels would not fit in memory.

    References:
        Lee et al. 2019, https://arxiv.org/abs/1902.06720.

    Example:
        >>> import numpy as np
        >>> from ntkgp import nn, predict
        >>> net = nn.serial(nn.Dense(512), nn.Relu(), nn.Dense(1))
        >>> x, y = np.random.default_rng(0).normal(size=(2, 8, 3))
        >>> ens = predict.gradient_descent_mse_ensemble(net, x, y, diag_reg=1e-3)
        >>> mean, cov = ens(t=[0.0, 10.0, None], x_test=x[:2], compute_cov=True)
        >>> mean.shape, cov.shape
        ((3, 2, 3), (3, 2, 2))
    """
    return Ensemble(kernel_fn, x_train, y_train, learning_rate=learning_rate, momentum=momentum,
                    diag_reg=diag_reg, diag_reg_absolute_scale=diag_reg_absolute_scale,
                    jitter=jitter, trace_axes=trace_axes)
