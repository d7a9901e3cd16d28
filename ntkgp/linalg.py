"""Factorizations of kernel matrices: symmetrize, regularize relative to the kernel's scale,
escalate jitter with a warning, and fail with a clear `NotPositiveDefiniteError`; and, for N too
large to factor, matrix-free kernel operators and preconditioned conjugate gradients."""

from ntkgp._src.solve.cg import CGConvergenceWarning as CGConvergenceWarning
from ntkgp._src.solve.cg import CGResult as CGResult
from ntkgp._src.solve.cg import LowRankPreconditioner as LowRankPreconditioner
from ntkgp._src.solve.cg import cg_solve as cg_solve
from ntkgp._src.solve.cg import make_preconditioner as make_preconditioner
from ntkgp._src.solve.cg import nystrom as nystrom
from ntkgp._src.solve.cg import pivoted_cholesky as pivoted_cholesky
from ntkgp._src.solve.linalg import Cholesky as Cholesky
from ntkgp._src.solve.linalg import Eigh as Eigh
from ntkgp._src.solve.linalg import JitterWarning as JitterWarning
from ntkgp._src.solve.linalg import NotPositiveDefiniteError as NotPositiveDefiniteError
from ntkgp._src.solve.linalg import cholesky as cholesky
from ntkgp._src.solve.linalg import clip_covariance as clip_covariance
from ntkgp._src.solve.linalg import eigh as eigh
from ntkgp._src.solve.linalg import regularize as regularize
from ntkgp._src.solve.operators import KernelOperator as KernelOperator
from ntkgp._src.solve.operators import StoredKernelOperator as StoredKernelOperator
from ntkgp._src.solve.operators import TiledKernelOperator as TiledKernelOperator
from ntkgp._src.util import check_fits_in_memory as check_fits_in_memory
