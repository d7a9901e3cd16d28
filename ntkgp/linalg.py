"""Solving with kernel matrices: kernel operators (dense, recomputed tile by tile, stored on
disk) with one interface; solvers (Cholesky with relative jitter escalation and a clear
`NotPositiveDefiniteError`, eigendecomposition, preconditioned conjugate gradients) that report
how they went in one `SolveResult`; and the factorizations and helpers beneath them."""

from ntkgp._src.solve.cg import CGConvergenceWarning as CGConvergenceWarning
from ntkgp._src.solve.cg import LowRankPreconditioner as LowRankPreconditioner
from ntkgp._src.solve.cg import cg_solve as cg_solve
from ntkgp._src.solve.cg import make_preconditioner as make_preconditioner
from ntkgp._src.solve.cg import nystrom as nystrom
from ntkgp._src.solve.cg import pivoted_cholesky as pivoted_cholesky
from ntkgp._src.solve.features import FeatureFactor as FeatureFactor
from ntkgp._src.solve.features import FeatureKernelOperator as FeatureKernelOperator
from ntkgp._src.solve.features import FeatureSaturationWarning as FeatureSaturationWarning
from ntkgp._src.solve.features import FeatureSolver as FeatureSolver
from ntkgp._src.solve.linalg import Cholesky as Cholesky
from ntkgp._src.solve.linalg import Eigh as Eigh
from ntkgp._src.solve.linalg import JitterWarning as JitterWarning
from ntkgp._src.solve.linalg import NotPositiveDefiniteError as NotPositiveDefiniteError
from ntkgp._src.solve.linalg import cholesky as cholesky
from ntkgp._src.solve.linalg import clip_covariance as clip_covariance
from ntkgp._src.solve.linalg import eigh as eigh
from ntkgp._src.solve.linalg import regularize as regularize
from ntkgp._src.solve.operators import DenseKernelOperator as DenseKernelOperator
from ntkgp._src.solve.operators import KernelOperator as KernelOperator
from ntkgp._src.solve.operators import StoredKernelOperator as StoredKernelOperator
from ntkgp._src.solve.result import SolveResult as SolveResult
from ntkgp._src.solve.solvers import CGSolver as CGSolver
from ntkgp._src.solve.solvers import CholeskySolver as CholeskySolver
from ntkgp._src.solve.solvers import EigenSolver as EigenSolver
from ntkgp._src.solve.solvers import Solver as Solver
from ntkgp._src.solve.tiled import TiledKernelOperator as TiledKernelOperator
from ntkgp._src.util import check_fits_in_memory as check_fits_in_memory
