r"""Kernel regression and GP inference for large N without the ``N x N`` matrix: `cg_inference`,
a shorthand for a `Posterior` solved by conjugate gradients.

`cg_inference` solves :math:`(K + \sigma^2 I)\,\alpha = y` by preconditioned conjugate
gradients on kernel-vector products recomputed tile by tile (`ntkgp.linalg.cg_solve`); the
posterior mean at any number of test points is :math:`K_{*X}\,\alpha`, computed tile by tile
too. Predictive variances need one more solve with the test columns as right-hand sides (a
block solve: one kernel pass per iteration for all of them), so they are meant for a modest
test set (``M`` up to a few thousand).

Memory: ``O(N (r + C))`` for a rank-``r`` preconditioner and ``C`` right-hand sides, plus one
kernel tile per device. Time: ``N^2/2`` kernel evaluations per CG iteration.
"""

from __future__ import annotations

from typing import Callable, Optional

from ntkgp._src import checks
from ntkgp._src.predict.posterior import Posterior
from ntkgp._src.solve.solvers import CGSolver


def cg_inference(kernel_fn: Callable, x_train, y_train, *, get: str = "ntk",
                 diag_reg: float = 0.0, diag_reg_absolute_scale: bool = False,
                 tile_size: Optional[int] = None, devices=None,
                 preconditioner: Optional[str] = "auto", rank: int = 256,
                 tol: float = 1e-6, max_iter: int = 1000, x0=None,
                 progress: Optional[bool] = None) -> Posterior:
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
        progress: progress bars (default: each once its work has taken 2 s).

    Returns:
        A `Posterior` solved by `ntkgp.linalg.CGSolver` (this function is its shorthand);
        ``post.solve_result`` has the iterations and residuals, ``post.alpha`` the solution.
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
    checks.check_choice(get, "get", checks.MODES)
    solver = CGSolver(tol=tol, max_iter=max_iter, preconditioner=preconditioner, rank=rank,
                      x0=x0, progress=progress)
    return Posterior(kernel_fn, x_train, y_train, mode=get, solver=solver, diag_reg=diag_reg,
                     diag_reg_absolute_scale=diag_reg_absolute_scale, tile_size=tile_size,
                     devices=devices)
