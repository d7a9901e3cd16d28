r"""Dense factorizations of kernel matrices (Cholesky, eigendecomposition) with their
regularization and checks; `ntkgp.linalg.CholeskySolver` and `EigenSolver` use them.

Every factorization first symmetrizes :math:`K \leftarrow (K + K^\top)/2` and adds a diagonal

.. math:: K_\mathrm{reg} = K + (\lambda \, s + j \, \bar k) \, I, \qquad
          \bar k = \tfrac{1}{N}\operatorname{tr} K,

where :math:`\lambda` is ``diag_reg``, :math:`s = \bar k` (relative, the default: kernels grow
with depth, so a fixed number would mean different things for different nets) or :math:`s = 1`
(``diag_reg_absolute_scale=True``), and :math:`j` is the jitter.

Cholesky (for :math:`t=\infty` and Bayesian inference) checks its result: it fails when a pivot
is not finite or when the smallest pivot :math:`\min_i L_{ii}^2` is below
:math:`N \epsilon \, \bar k` (then the matrix is singular to working precision and solves with it
have no correct digits; duplicate training points do this). On failure, with ``jitter=None``,
it retries with :math:`j = \sqrt{\epsilon}, 10\sqrt{\epsilon}, \dots` up to ``MAX_JITTER`` and
warns with the jitter it needed; past that it raises `NotPositiveDefiniteError`. Inside
``jax.jit`` (no host round trip) there is one attempt, and a failure shows as NaN.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.scale.tiles import CHOLESKY_BLOCK, FACTOR_COPY_MAX_N, LARGE_LAPACK_N

Array = jax.Array
MAX_JITTER = 1e-2  # relative to the mean diagonal; beyond this the answer is a different model


class NotPositiveDefiniteError(np.linalg.LinAlgError):
    """A kernel matrix is not positive definite to working precision."""


class JitterWarning(UserWarning):
    """A kernel matrix needed jitter on its diagonal to be factorized."""


def regularize(k: Array, diag_reg, absolute: bool, jitter=0.0,
               symmetrize: bool = True) -> tuple[Array, Array]:
    r"""``(K_reg, added)``: ``k`` symmetrized (unless told it is already) with ``added`` on its
    diagonal (see module docs); one fused pass over ``k``.

    Args:
        k: kernel ``(N, N)``.
        diag_reg: regularization, relative to the mean diagonal unless ``absolute``.
        absolute: ``diag_reg`` as is.
        jitter: further relative jitter (added the same way).
        symmetrize: replace ``k`` by :math:`(K + K^\top)/2` first.

    Returns:
        ``(K_reg, added)``: the ``(N, N)`` regularized kernel and the scalar added to its
        diagonal.
    """
    added = _added(k, diag_reg, absolute, jitter)
    eye = jnp.eye(k.shape[0], dtype=k.dtype)
    if symmetrize:
        k = 0.5 * (k + k.T)
    return k + added * eye, added


def _added(k, diag_reg, absolute, jitter):
    """What `regularize` adds to the diagonal of ``k``."""
    mean_diag = jnp.mean(jnp.diagonal(k))
    scale = 1.0 if absolute else mean_diag
    return jnp.asarray(diag_reg, k.dtype) * scale + jnp.asarray(jitter, k.dtype) * mean_diag


@dataclasses.dataclass(frozen=True)
class Cholesky:
    r"""Cholesky factor of a regularized kernel, :math:`K_\mathrm{reg} = L L^\top`.

    Attributes:
        chol: array of shape ``(N, N)``, lower triangular :math:`L`.
        chol_t: array of shape ``(N, N)``, :math:`L^\top` stored separately: XLA's CPU
            triangular solve is about 2x faster on a transposed operand (measured, N=4000,
            float32, 500 right-hand sides: 0.06 s against 0.12 s), so each solve reads the copy
            that is transposed for it. ``None`` above ``FACTOR_COPY_MAX_N`` points, where
            memory matters more than the lower solves (which then read :math:`L` as it is,
            about 2x slower): the factorization then holds the kernel, one factor and a panel
            (measured: a peak of :math:`2.6 N^2` numbers at :math:`N = 30000`, kernel
            included).
        added: scalar, what was added to the diagonal of :math:`K` (``diag_reg`` term plus any
            jitter), in the kernel's units.
        jitter: the relative jitter that was needed (0 when none).
        attempts: factorizations tried (more than 1 when the jitter was escalated).
    """

    chol: Array
    chol_t: Array
    added: Array
    jitter: float = 0.0
    attempts: int = 1

    def solve_lower(self, b: Array) -> Array:
        r""":math:`L^{-1} b` for ``b`` of shape ``(N,)`` or ``(N, M)``."""
        if self.chol_t is None:
            return jax.scipy.linalg.solve_triangular(self.chol, b, lower=True)
        return jax.scipy.linalg.solve_triangular(self.chol_t.T, b, lower=True)

    def solve_upper(self, b: Array) -> Array:
        r""":math:`L^{-\top} b`."""
        return jax.scipy.linalg.solve_triangular(self.chol.T, b, lower=False)

    def solve(self, b: Array) -> Array:
        r""":math:`K_\mathrm{reg}^{-1} b`."""
        return self.solve_upper(self.solve_lower(b))

    def logdet(self) -> Array:
        r""":math:`\log\det K_\mathrm{reg}`."""
        return 2.0 * jnp.sum(jnp.log(jnp.diagonal(self.chol)))


jax.tree_util.register_dataclass(Cholesky, data_fields=["chol", "chol_t", "added"],
                                 meta_fields=["jitter", "attempts"])


@dataclasses.dataclass(frozen=True)
class Eigh:
    r"""Eigendecomposition of a regularized kernel, :math:`K_\mathrm{reg} = V \Lambda V^\top`.

    Attributes:
        evals: array of shape ``(N,)``, ascending, clipped at 0 (negative values are rounding).
        evecs: array of shape ``(N, N)``, orthonormal columns.
        added: scalar added to the diagonal of :math:`K`.
    """

    evals: Array
    evecs: Array
    added: Array


jax.tree_util.register_dataclass(Eigh, data_fields=["evals", "evecs", "added"], meta_fields=[])


def _blocked_cholesky(k: Array, added, symmetrize: bool, block: int = CHOLESKY_BLOCK) -> Array:
    r"""Left-looking blocked Cholesky of ``k`` regularized (`regularize`) panel by panel:
    LAPACK only on ``block``-sized diagonal blocks, and no regularized copy of ``k``.

    jaxlib's CPU Cholesky calls the LAPACK of SciPy's OpenBLAS wheel, whose multithreaded
    ``potrf`` corrupts memory on large matrices (observed with OpenBLAS 0.3.30 on 2 threads:
    N=16000 float64 crashes ``scipy.linalg.cholesky`` and ``jnp.linalg.cholesky`` alike with a
    segfault or bus error; N=12000, or one thread, is fine; limiting threads at run time does
    not reach jaxlib's call). Here the bulk of the work, :math:`S = A_{j:,j} - L_{j:,<j}
    L_{j,<j}^\top`, is XLA's own matrix product and the panel is a triangular solve; measured
    as fast as LAPACK (N=8000 float64: 2.8 s against 3.3 s). Each panel of :math:`A` is
    formed from ``k`` when it is read (symmetrized, ``added`` on its diagonal block), and the
    factor is filled in place, so the memory is ``k``, :math:`L` and one panel.
    """
    n = k.shape[0]
    chol = jnp.zeros_like(k)
    hi = jax.lax.Precision.HIGHEST
    for j in range(0, n, block):
        e = min(j + block, n)
        s = k[j:, j:e]
        if symmetrize:
            s = 0.5 * (s + k[j:e, j:].T)
        s = s.at[: e - j].add(added * jnp.eye(e - j, dtype=k.dtype))
        if j:
            s = s - jnp.matmul(chol[j:, :j], chol[j:e, :j].T, precision=hi)
        diag = jnp.linalg.cholesky(s[: e - j], symmetrize_input=False)
        chol = chol.at[j:e, j:e].set(diag)
        if e < n:
            below = jax.scipy.linalg.solve_triangular(diag, s[e - j:].T, lower=True).T
            chol = chol.at[e:, j:e].set(below)
    return chol


@functools.partial(jax.jit, static_argnames=("absolute", "symmetrize"))
def _cholesky(k, diag_reg, jitter, absolute, symmetrize):
    n = k.shape[0]
    if n > LARGE_LAPACK_N and jax.default_backend() == "cpu":
        added = _added(k, diag_reg, absolute, jitter)
        chol = _blocked_cholesky(k, added, symmetrize, CHOLESKY_BLOCK)
        mean_diag = jnp.mean(jnp.diagonal(k)) + added
    else:
        kr, added = regularize(k, diag_reg, absolute, jitter, symmetrize)
        chol = jnp.linalg.cholesky(kr, symmetrize_input=False)
        mean_diag = jnp.mean(jnp.diagonal(kr))
    piv = jnp.diagonal(chol)
    floor = n * jnp.finfo(k.dtype).eps * mean_diag
    finite = jnp.all(jnp.isfinite(piv))
    ok = finite & (jnp.min(piv) ** 2 > floor)
    return chol, (chol.T if n <= FACTOR_COPY_MAX_N else None), added, ok, finite


@functools.partial(jax.jit, static_argnames=("absolute",))
def _eigh(k, diag_reg, absolute):
    kr, added = regularize(k, diag_reg, absolute)
    evals, evecs = jnp.linalg.eigh(kr, symmetrize_input=False)
    return jnp.maximum(evals, 0.0), evecs, added


def cholesky(k, diag_reg=0.0, *, diag_reg_absolute_scale: bool = False,
             jitter: Optional[float] = None, name: str = "kernel",
             symmetrize: bool = True) -> Cholesky:
    r"""Cholesky factor of ``k`` after symmetrizing and regularizing its diagonal.

    Args:
        k: array of shape ``(N, N)``, a symmetric positive semi-definite kernel matrix.
        diag_reg: :math:`\lambda \ge 0`, added as :math:`\lambda \bar k` (relative, default) or
            :math:`\lambda` (``diag_reg_absolute_scale=True``).
        diag_reg_absolute_scale: whether ``diag_reg`` is in the kernel's units.
        jitter: ``None`` (default): none at first, escalated from :math:`\sqrt{\epsilon}` by
            factors of 10 up to ``MAX_JITTER`` (relative) with a `JitterWarning` when the
            factorization fails. A number: exactly this relative jitter, no escalation; only a
            non-finite factor is then an error.
        name: what the kernel is, for messages.
        symmetrize: ``False`` skips :math:`(K + K^\top)/2` for a matrix that is symmetric by
            construction (``net.kernel(x, None)``), saving a pass over it; the factorization
            then reads its lower triangle only.

    Returns:
        A `Cholesky`.

    Raises:
        NotPositiveDefiniteError: when no allowed jitter makes ``k`` factorizable (outside jit).
        ValueError: if ``k`` is not square or (outside jit) has NaN/inf entries.

    Example:
        >>> import jax.numpy as jnp
        >>> from ntkgp import linalg
        >>> c = linalg.cholesky(jnp.array([[2.0, 1.0], [1.0, 2.0]]))
        >>> print(c.solve(jnp.array([3.0, 3.0])).round(6))
        [1. 1.]
    """
    k = checks.check_square(k, name)
    checks.check_nonneg(diag_reg, "diag_reg")
    absolute = bool(diag_reg_absolute_scale)
    if not checks.is_concrete(k) or not checks.is_concrete(diag_reg):
        chol, chol_t, added, ok, _ = _cholesky(k, diag_reg, 0.0 if jitter is None else jitter,
                                               absolute, bool(symmetrize))
        if jitter is None:  # no retries under a trace: a failure shows as NaN
            chol = jnp.where(ok, chol, jnp.nan)
            chol_t = None if chol_t is None else jnp.where(ok, chol_t, jnp.nan)
        return Cholesky(chol, chol_t, added)
    checks.check_finite(k, name)
    eps = float(jnp.finfo(k.dtype).eps)
    tries = [jitter] if jitter is not None else [0.0] + list(
        np.sqrt(eps) * 10.0 ** np.arange(0, 1 + np.floor(np.log10(MAX_JITTER / np.sqrt(eps)))))
    for attempt, j in enumerate(tries, 1):
        chol = chol_t = None  # a failed attempt's factor is freed before the next one
        chol, chol_t, added, ok, finite = _cholesky(k, diag_reg, j, absolute, bool(symmetrize))
        ok, finite = jax.device_get((ok, finite))  # one host round trip
        if ok or (jitter is not None and finite):
            if j and jitter is None:
                warnings.warn(
                    f"The {name} matrix of {k.shape[0]} points is singular to {k.dtype} "
                    f"precision; added jitter {j:.1e} x mean(diag) to its diagonal to factorize "
                    "it, which smooths the fit slightly. To control this, pass `diag_reg` "
                    "(relative to the mean diagonal), remove duplicate points, or enable "
                    "float64 (jax.config.update('jax_enable_x64', True)).",
                    JitterWarning, stacklevel=3)
            return Cholesky(chol, chol_t, added, float(j), attempt)
    raise NotPositiveDefiniteError(
        f"The {name} matrix of {k.shape[0]} points ({k.dtype}) is not positive definite to "
        f"working precision" + (f", even with jitter up to {tries[-1]:.1e} x mean(diag) on its "
                                "diagonal" if jitter is None else f" with jitter={jitter}")
        + ". Likely causes: duplicate or near-duplicate points, a very deep network whose kernel "
        "is nearly constant, float32 precision, or a matrix that is not a kernel. Fix: raise "
        "`diag_reg` (e.g. diag_reg=1e-3, relative to the mean diagonal), remove duplicates, or "
        "enable float64 with jax.config.update('jax_enable_x64', True).")


def eigh(k, diag_reg=0.0, *, diag_reg_absolute_scale: bool = False,
         name: str = "kernel") -> Eigh:
    r"""Eigendecomposition of ``k`` after symmetrizing and regularizing its diagonal.

    Unlike `cholesky` it never fails on a singular matrix: eigenvalues are clipped at 0, and
    the time-t functions that use it (:math:`(1 - e^{-t\lambda})/\lambda`) stay finite as
    :math:`\lambda \to 0`.

    Args:
        k: array of shape ``(N, N)``.
        diag_reg: as in `cholesky`.
        diag_reg_absolute_scale: as in `cholesky`.
        name: what the kernel is, for messages.

    Returns:
        An `Eigh`.
    """
    k = checks.check_square(k, name)
    checks.check_nonneg(diag_reg, "diag_reg")
    checks.check_finite(k, name)
    evals, evecs, added = _eigh(k, diag_reg, bool(diag_reg_absolute_scale))
    return Eigh(evals, evecs, added)


def clip_covariance(cov: Array) -> Array:
    r"""Symmetrize a covariance of shape ``(..., M, M)`` and clip its variances at 0.

    Args:
        cov: array ``(..., M, M)``.

    Returns:
        Array of the same shape: :math:`(C + C^\top)/2` with negative diagonal entries set to 0.
    """
    cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
    m = cov.shape[-1]
    d = jnp.diagonal(cov, axis1=-2, axis2=-1)
    return cov.at[..., jnp.arange(m), jnp.arange(m)].set(jnp.maximum(d, 0.0))
