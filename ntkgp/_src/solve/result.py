"""`SolveResult`: how a solve of :math:`(K + \\sigma^2 I) X = B` went, the same for every
solver."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np


@dataclasses.dataclass(frozen=True)
class SolveResult:
    r"""How a solver met the system :math:`(K + \sigma^2 I) X = B`; every solver reports
    the same fields.

    A direct solver (Cholesky, eigendecomposition) either succeeds, exactly to rounding, or
    raises (`NotPositiveDefiniteError`); conjugate gradients iterate until a tolerance, a limit
    or a stop asked by its callback. An interrupt (Ctrl-C) is never swallowed: it propagates,
    and no result is made.

    Attributes:
        solver: ``'cholesky'``, ``'eigh'`` or ``'cg'``.
        converged: whether the solution meets the solver's criterion (direct solvers: the
            factorization succeeded; CG: every column's relative residual is at most ``tol``).
        iterations: kernel passes: CG iterations; for a direct solver the number of
            factorizations it tried (more than 1 when jitter had to be escalated).
        residual: the largest relative residual :math:`\max_c \|b_c - A x_c\| / \|b_c\|` (CG),
            or ``None`` for a direct solver (exact to rounding; not computed).
        jitter: relative jitter added to the diagonal to factorize (direct solvers), else 0.
        stopped: whether a callback asked CG to stop before it converged.
        tol: the tolerance asked for (CG), else ``None``.
        x: the solution ``(N,)`` or ``(N, C)`` float64 (from `ntkgp.linalg.cg_solve`), else
            ``None``.
        residuals: ``(iterations + 1,)``, the residual after each CG iteration, else ``None``.
        preconditioner: the CG preconditioner used (a `LowRankPreconditioner`), else ``None``.
    """

    solver: str
    converged: bool
    iterations: int
    residual: Optional[float] = None
    jitter: float = 0.0
    stopped: bool = False
    tol: Optional[float] = None
    x: Optional[np.ndarray] = None
    residuals: Optional[np.ndarray] = None
    preconditioner: Optional[Any] = None
