"""Factorizations of kernel matrices: symmetrize, regularize relative to the kernel's scale,
escalate jitter with a warning, and fail with a clear `NotPositiveDefiniteError`."""

from ntkgp._src.linalg import Cholesky as Cholesky
from ntkgp._src.linalg import Eigh as Eigh
from ntkgp._src.linalg import JitterWarning as JitterWarning
from ntkgp._src.linalg import NotPositiveDefiniteError as NotPositiveDefiniteError
from ntkgp._src.linalg import cholesky as cholesky
from ntkgp._src.linalg import clip_covariance as clip_covariance
from ntkgp._src.linalg import eigh as eigh
from ntkgp._src.linalg import regularize as regularize
from ntkgp._src.util import check_fits_in_memory as check_fits_in_memory
