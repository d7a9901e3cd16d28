r"""Kernel regression and GP inference for large N without the ``N x N`` matrix.

`cg_inference` solves :math:`(K + \sigma^2 I)\,\alpha = y` by preconditioned conjugate
gradients on kernel-vector products recomputed tile by tile (`ntkgp.linalg.cg_solve`); the
posterior mean at any number of test points is :math:`K_{*X}\,\alpha`, computed tile by tile
too. Predictive variances need one more solve with the ``M`` test columns as right-hand sides
(a block solve: one kernel pass per iteration for all of them), so they are meant for a modest
test set (``M`` up to a few thousand).

Memory: ``O(N (r + C))`` for a rank-``r`` preconditioner and ``C`` right-hand sides, plus one
kernel tile per device. Time: ``N^2/2`` kernel evaluations per CG iteration.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np

from ntkgp._src import checks
from ntkgp._src.solve.cg import CGResult, cg_solve
from ntkgp._src.solve.operators import KernelOperator, TiledKernelOperator

MODES = ("nngp", "ntkgp", "ntk")
VAR_CHUNK = 512  # test points per variance solve: bounds its memory to N x VAR_CHUNK


@dataclasses.dataclass(frozen=True)
class IterativePosterior:
    r"""What `cg_inference` solved: predicts at any test points without solving again.

    Attributes:
        alpha: ``(N, K)`` float64, :math:`(K + \sigma^2 I)^{-1} y`.
        operator: the training kernel (`TiledKernelOperator`) of the mode's kernel.
        nngp_operator: the NNGP operator (mode ``'ntk'`` only, for variances), else ``None``.
        noise: :math:`\sigma^2` on the diagonal, in the kernel's units.
        get: ``'nngp'``, ``'ntkgp'`` or ``'ntk'``.
        cg: the `CGResult` of the solve (iterations, residuals, convergence).
        y_was_1d: whether ``y_train`` was 1-D.
        solve_options: ``tol``, ``max_iter`` used again for variance solves.
    """

    alpha: np.ndarray
    operator: KernelOperator
    nngp_operator: Optional[KernelOperator]
    noise: float
    get: str
    cg: CGResult
    y_was_1d: bool
    solve_options: dict

    def predict(self, x_test, compute_var: bool = False, progress: Optional[bool] = None):
        r"""Posterior mean :math:`\mu = K_{*X}\alpha` and, optionally, the variances.

        Variances: ``'nngp'``/``'ntkgp'``: :math:`k_{**} - k_{*X} (K+\sigma^2 I)^{-1} k_{X*}`;
        ``'ntk'``: the variance of the infinite ensemble trained to convergence,
        :math:`\mathcal K_{**} + z^\top \mathcal K z - 2\, \mathcal K_{*X} z` with
        :math:`z = (\Theta + \sigma^2 I)^{-1}\Theta_{X*}` and :math:`\mathcal K` the NNGP.

        Args:
            x_test: ``(M, ...)`` test inputs.
            compute_var: also return the ``(M,)`` variances: a block CG solve per
                ``VAR_CHUNK`` test points (memory ``O(N x VAR_CHUNK)``, each chunk a full solve:
                keep ``M`` modest).
            progress: show progress bars.

        Returns:
            The mean ``(M, K)`` (``(M,)`` for 1-D targets), or a tuple ``(mean, var)`` with
            ``var`` of shape ``(M,)`` (shared by the ``K`` outputs).
        """
        op = self.operator
        x_test, _ = checks.check_inputs(x_test, None, ndim=None)
        mean = op.cross(x_test, self.alpha, progress=progress)
        if self.y_was_1d:
            mean = mean[:, 0]
        if not compute_var:
            return mean
        var = np.concatenate([self._variances(x_test[i:i + VAR_CHUNK], progress)
                              for i in range(0, len(x_test), VAR_CHUNK)])
        return mean, np.maximum(var, 0.0)

    def _variances(self, x_test, progress):
        op = self.operator
        k_xs = op.cross_columns(x_test)  # (N, m), m <= VAR_CHUNK
        z = cg_solve(op, k_xs, self.noise, preconditioner=self.cg.preconditioner,
                     progress=progress, **self.solve_options).x
        if self.get == "ntk":
            g = self.nngp_operator
            return (g.test_diagonal(x_test) + np.sum(z * g.matmat(z), axis=0)
                    - 2.0 * np.sum(g.cross_columns(x_test) * z, axis=0))
        return op.test_diagonal(x_test) - np.sum(k_xs * z, axis=0)


def cg_inference(kernel_fn: Callable, x_train, y_train, *, get: str = "ntk",
                 diag_reg: float = 0.0, diag_reg_absolute_scale: bool = False,
                 tile_size: Optional[int] = None, devices=None,
                 preconditioner: Optional[str] = "auto", rank: int = 256,
                 tol: float = 1e-6, max_iter: int = 1000, x0=None,
                 progress: Optional[bool] = None) -> IterativePosterior:
    r"""Kernel regression / GP posterior for large ``N`` by preconditioned conjugate gradients.

    Solves :math:`(K + \sigma^2 I)\,\alpha = y` with :math:`\sigma^2 = \lambda \bar k`
    (:math:`\bar k` the mean diagonal of :math:`K`; :math:`\sigma^2=\lambda` with
    ``diag_reg_absolute_scale``), the same regularization as `gp_inference`, whose results it
    matches to the solver tolerance. The kernel is recomputed tile by tile on every iteration,
    sharded over all local devices; nothing of size ``N x N`` is ever held.

    Args:
        kernel_fn: ``kernel_fn(x1, x2, get=...)``, e.g. ``net.kernel`` of an ``ntkgp.nn``
            network (any JAX-traceable function of that form returning an array or `Kernel`).
        x_train: ``(N, ...)`` inputs (their dtype is the tiles' dtype; products are summed in
            float64).
        y_train: ``(N,)`` or ``(N, K)`` targets.
        get: ``'ntk'`` (trained infinite network at :math:`t=\infty`), ``'ntkgp'`` (GP with
            the NTK as prior) or ``'nngp'`` (Bayesian NNGP posterior).
        diag_reg: :math:`\lambda \ge 0`.
        diag_reg_absolute_scale: take ``diag_reg`` in the kernel's units.
        tile_size: rows per kernel tile (default 2048).
        devices: JAX devices to shard tiles over (default all local devices).
        preconditioner: ``'auto'`` (pivoted Cholesky here), ``'pivoted_cholesky'``,
            ``'nystrom'`` or ``None``.
        rank: rank of the preconditioner.
        tol: relative residual at which CG stops.
        max_iter: most CG iterations.
        x0: ``(N,)`` or ``(N, K)`` starting point of the solve, e.g. the ``alpha`` of an
            earlier solve of the same system (then one kernel pass confirms it).
        progress: progress bars (default: for large problems).

    Returns:
        `IterativePosterior`; its ``cg`` attribute has the iteration count and residuals.
        Warns `ntkgp.linalg.CGConvergenceWarning` when ``tol`` was not met.

    Example:
        >>> import numpy as np
        >>> from ntkgp import nn, predict
        >>> net = nn.serial(nn.Dense(1), nn.Relu(), nn.Dense(1))
        >>> x = np.random.default_rng(0).standard_normal((300, 3)); y = np.sin(x[:, 0])
        >>> post = predict.cg_inference(net.kernel, x, y, get='ntk', diag_reg=1e-2)
        >>> exact = predict.gp_inference(net.kernel(x, None), y, diag_reg=1e-2, get='ntk')
        >>> xt = x[:5] + 0.1
        >>> bool(np.allclose(post.predict(xt), exact.predict(net.kernel(xt, x), get='ntk'),
        ...                  rtol=1e-3, atol=1e-4))
        True
    """
    if get not in MODES:
        raise ValueError(f"`get` must be one of {MODES}; got {get!r}.")
    checks.check_nonneg(diag_reg, "diag_reg")
    y = checks.as_float_array(y_train, "y_train")
    checks.check_finite(y, "y_train")
    y = np.asarray(y, np.float64)
    was_1d = y.ndim == 1
    y = y[:, None] if was_1d else y
    n = np.shape(x_train)[0]
    if y.ndim != 2 or y.shape[0] != n:
        raise ValueError(f"`y_train` must have shape ({n},) or ({n}, K), one row per training "
                         f"input; got shape {np.shape(y_train)}.")
    kind = "nngp" if get == "nngp" else "ntk"
    op = TiledKernelOperator(kernel_fn, x_train, get=kind, tile_size=tile_size,
                             devices=devices, progress=progress)
    mean_diag = float(np.mean(op.diagonal()))
    noise = float(diag_reg) * (1.0 if diag_reg_absolute_scale else mean_diag)
    opts = dict(tol=tol, max_iter=max_iter)
    res = cg_solve(op, y, noise, preconditioner=preconditioner, rank=rank, progress=progress,
                   x0=x0, **opts)
    g = None
    if get == "ntk":
        g = TiledKernelOperator(kernel_fn, x_train, get="nngp", tile_size=tile_size,
                                devices=devices, progress=progress)
    return IterativePosterior(alpha=res.x, operator=op, nngp_operator=g, noise=noise, get=get,
                              cg=res, y_was_1d=was_1d, solve_options=opts)
