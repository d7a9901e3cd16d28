r"""Solvers of :math:`(K + \sigma^2 I) X = B` on any kernel operator, behind one interface.

A solver turns a `KernelOperator` and a regularization into a *factor*, which solves the
system for any right-hand sides and reports how it went as a `SolveResult`:

============================  ==================  ==================================
solver                        needs               gives
============================  ==================  ==================================
`CholeskySolver`              the dense matrix    :math:`t=\infty`, covariances,
                                                  log marginal likelihood
`EigenSolver`                 the dense matrix    any training time :math:`t`
`CGSolver`                    products only       :math:`t=\infty`, variances
============================  ==================  ==================================

The noise :math:`\sigma^2` is ``diag_reg`` times the mean of the kernel's diagonal
(``absolute=False``, as neural-tangents) or ``diag_reg`` itself.

Adding a solver: subclass `Solver`, set ``name`` and what it can do (``finite_time``,
``dense``), and return from `Solver.factor` a factor that `ntkgp.predict.Posterior` knows: a
dense `ntkgp.linalg.Cholesky` or `Eigh` (the moments use their triangular or spectral form), or,
matrix-free, an object like `CGFactor` with ``solve(b)``, ``added``, ``op`` and ``result()``
(mean and variances by solves). A factor of another form needs its moments in
``predict/posterior.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.scale import tiles
from ntkgp._src.solve import linalg
from ntkgp._src.solve.cg import cg_solve
from ntkgp._src.solve.operators import KernelOperator
from ntkgp._src.solve.result import SolveResult

SOLVERS = ("auto", "cholesky", "eigh", "cg", "features", "nystrom")


class Solver:
    """What every solver offers.

    Attributes:
        name: ``'cholesky'``, ``'eigh'`` or ``'cg'``.
        finite_time: whether predictions at a finite training time are possible.
        dense: whether it needs the whole matrix in memory (otherwise only products).
        work_matrices: for a dense solver, the memory its factorization takes beyond the
            kernel matrix, in ``N x N`` matrices.
    """

    name: str = ""
    finite_time: bool = False
    dense: bool = True
    work_matrices: float = 0.0

    def factor(self, op: KernelOperator, diag_reg=0.0, absolute: bool = False,
               name: str = "kernel"):
        """Factor :math:`K + \\sigma^2 I` of the operator ``op`` (see the module docs)."""
        raise NotImplementedError

    def starting_from(self, x0) -> Solver:
        """This solver, starting its first solve from ``x0`` where it iterates (``None``:
        from zero); a direct solver needs no start and is returned as it is."""
        return self


@dataclasses.dataclass(frozen=True)
class CholeskySolver(Solver):
    """Cholesky factorization with relative jitter escalation (`ntkgp.linalg.cholesky`).

    Args:
        jitter: ``None`` to escalate from :math:`\\sqrt\\epsilon` when the matrix is singular
            to working precision (warning `JitterWarning`, then `NotPositiveDefiniteError`), or
            a fixed relative jitter.
    """

    jitter: Optional[float] = None
    name = "cholesky"
    work_matrices = 1.5  # the factor (once above FACTOR_COPY_MAX_N) and its panels

    def factor(self, op, diag_reg=0.0, absolute=False, name="kernel"):
        f = linalg.cholesky(op.dense(), diag_reg, diag_reg_absolute_scale=absolute,
                            jitter=self.jitter, name=name, symmetrize=not op.symmetric)
        return f


@dataclasses.dataclass(frozen=True)
class FactoredSolver(Solver):
    """A Cholesky factorization made already, by a compiled program that needed it too (an
    estimator's marginal-likelihood fit): `factor` returns it as it is, which must be that of
    the operator and ``diag_reg`` it is given. It predicts as `CholeskySolver` and has its
    name.

    Args:
        made: the `ntkgp.linalg.Cholesky`.
    """

    made: linalg.Cholesky = dataclasses.field(compare=False)
    name = "cholesky"
    work_matrices = 1.5

    def factor(self, op, diag_reg=0.0, absolute=False, name="kernel"):
        if self.made.chol.shape != tuple(op.shape):
            raise ValueError(f"the factor given is of {self.made.chol.shape[0]} rows, the "
                             f"{name} matrix of {op.shape[0]}.")
        return self.made


@dataclasses.dataclass(frozen=True)
class EigenSolver(Solver):
    """Eigendecomposition (`ntkgp.linalg.eigh`): predictions at any training time; about 20x
    the cost of a Cholesky factorization."""

    name = "eigh"
    finite_time = True
    work_matrices = 3.0  # the eigenvectors, LAPACK's copy of the matrix and its workspace

    def factor(self, op, diag_reg=0.0, absolute=False, name="kernel"):
        return linalg.eigh(op.dense(), diag_reg, diag_reg_absolute_scale=absolute, name=name)


@dataclasses.dataclass(frozen=True)
class CGSolver(Solver):
    """Preconditioned conjugate gradients on kernel-matrix products (`ntkgp.linalg.cg_solve`):
    memory ``O(N r)``, nothing of size ``N x N``.

    Args:
        tol: relative residual at which CG stops.
        max_iter: most iterations (kernel passes).
        preconditioner: ``'auto'``, ``'pivoted_cholesky'``, ``'nystrom'`` or ``None``.
        rank: rank of the preconditioner.
        x0: starting point of the first solve (the targets'), e.g. an earlier solution.
        progress: progress bars (default: each once its work has taken 2 s).
    """

    tol: float = 1e-6
    max_iter: int = 1000
    preconditioner: Optional[str] = "auto"
    rank: int = 256
    x0: Optional[np.ndarray] = dataclasses.field(default=None, compare=False)
    progress: Optional[bool] = None
    name = "cg"
    dense = False

    def starting_from(self, x0) -> CGSolver:
        return dataclasses.replace(self, x0=x0)

    def factor(self, op, diag_reg=0.0, absolute=False, name="kernel"):
        checks.check_nonneg(diag_reg, "diag_reg")
        noise = float(diag_reg) * (1.0 if absolute else float(np.mean(op.diagonal())))
        return CGFactor(op, noise, self)


class CGFactor:
    r""":math:`(K + \sigma^2 I)^{-1}` applied by conjugate gradients; the preconditioner of
    the first solve is reused by the later ones."""

    def __init__(self, op: KernelOperator, noise: float, solver: CGSolver):
        self.op, self.noise, self.solver = op, noise, solver
        self.added = noise
        self.preconditioner = solver.preconditioner
        self.first: Optional[SolveResult] = None

    def solve_result(self, b, x0=None) -> SolveResult:
        """Solve for the columns of ``b``; the `SolveResult` holds the solution ``x``."""
        s = self.solver
        res = cg_solve(self.op, b, self.noise, preconditioner=self.preconditioner,
                       rank=s.rank, tol=s.tol, max_iter=s.max_iter, x0=x0,
                       progress=s.progress)
        if res.preconditioner is not None:
            self.preconditioner = res.preconditioner
        if self.first is None:
            self.first = res
        return res

    def solve(self, b, x0=None) -> np.ndarray:
        """:math:`(K + \\sigma^2 I)^{-1} b` (float64)."""
        return self.solve_result(b, x0).x

    def result(self) -> SolveResult:
        """How the first solve (the targets') went."""
        return self.first


def direct_result(factor) -> SolveResult:
    """The `SolveResult` of a Cholesky or eigendecomposition factor."""
    if isinstance(factor, linalg.Cholesky):
        return SolveResult("cholesky", converged=bool(jnp.all(jnp.isfinite(factor.chol[-1]))),
                           iterations=factor.attempts, jitter=factor.jitter)
    return SolveResult("eigh", converged=bool(jnp.all(jnp.isfinite(factor.evals))),
                       iterations=1)


def as_solver(solver: Union[str, Solver], n: int) -> Solver:
    """A `Solver` from a name (``'auto'``: Cholesky up to ``DENSE_MAX_N`` points, conjugate
    gradients beyond) or a solver object."""
    if isinstance(solver, Solver):
        return solver
    checks.check_choice(solver, "solver", SOLVERS)
    if solver == "auto":
        solver = "cg" if n > tiles.DENSE_MAX_N else "cholesky"
    if solver in ("features", "nystrom"):
        from ntkgp._src.solve.features import FeatureSolver  # it builds on this module
        return FeatureSolver(kind="random" if solver == "features" else "nystrom")
    return {"cholesky": CholeskySolver, "eigh": EigenSolver, "cg": CGSolver}[solver]()
