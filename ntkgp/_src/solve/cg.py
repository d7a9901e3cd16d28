r"""Matrix-free solves :math:`(K + \sigma^2 I) X = B` by preconditioned conjugate gradients.

The kernel is a `KernelOperator` (recomputed tile by tile, or read from disk), so the memory is
``O(N r)`` for a rank-``r`` preconditioner plus a few ``(N, C)`` blocks, for any ``N``.

Preconditioner: a low-rank approximation :math:`K \approx L L^\top` (``L`` of shape
``(N, r)``) gives :math:`P = L L^\top + \sigma^2 I`, applied by the Woodbury identity

.. math:: P^{-1} v = \sigma^{-2}\left(v - L (\sigma^2 I_r + L^\top L)^{-1} L^\top v\right).

``L`` comes from the partial pivoted Cholesky factorization (greedy: each step takes the
column of largest remaining diagonal, so it needs ``r`` kernel columns and stops early when the
trace of the remainder is small; Harbrecht, Peters & Schneider 2012, as in GPyTorch), or from a
Nyström approximation on ``r`` uniformly drawn landmarks (one pass over the kernel, as in
Falkon: the choice for kernels stored on disk, where single columns are expensive).

Stopping rule: every column's residual :math:`\|b - A x\| \le \mathrm{tol}\,\|b\|` (the
recursively updated residual); if ``max_iter`` is reached first, a `CGConvergenceWarning`
says by how much it was missed.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Callable, Optional, Union

import numpy as np
import scipy.linalg

from ntkgp._src import checks
from ntkgp._src.progress import progress_counter
from ntkgp._src.solve.operators import KernelOperator
from ntkgp._src.solve.result import SolveResult


class CGConvergenceWarning(UserWarning):
    """Conjugate gradients stopped at ``max_iter`` before meeting its tolerance."""


@dataclasses.dataclass(frozen=True)
class LowRankPreconditioner:
    r""":math:`P = L L^\top + \sigma^2 I` and its inverse by Woodbury.

    Attributes:
        factor: ``(N, r)`` array :math:`L`.
        noise: :math:`\sigma^2 > 0`.
        method: how ``factor`` was built (``'pivoted_cholesky'``, ``'nystrom'``).
    """

    factor: np.ndarray
    noise: float
    method: str = ""

    @property
    def rank(self) -> int:
        return self.factor.shape[1]

    def __post_init__(self):
        lt = self.factor
        inner = self.noise * np.eye(lt.shape[1]) + lt.T @ lt
        object.__setattr__(self, "_inner", scipy.linalg.cho_factor(inner, lower=True))

    def solve(self, v: np.ndarray) -> np.ndarray:
        """:math:`P^{-1} v` for ``v`` of shape ``(N,)`` or ``(N, C)``."""
        lt = self.factor
        if lt.shape[1] == 0:
            return v / self.noise
        return (v - lt @ scipy.linalg.cho_solve(self._inner, lt.T @ v)) / self.noise


def pivoted_cholesky(op: KernelOperator, rank: int, rel_tol: float = 1e-6,
                     progress: Optional[bool] = None) -> np.ndarray:
    r"""Partial pivoted Cholesky factor ``L`` ``(N, r)`` with :math:`K \approx L L^\top`.

    Stops after ``rank`` columns or once the trace of the remainder
    :math:`\operatorname{tr}(K - L L^\top)` is below ``rel_tol`` times :math:`\operatorname{tr}
    K`. Cost: ``r`` kernel columns and ``O(N r^2)`` host flops.

    Args:
        op: the kernel `KernelOperator` ``(N x N)``.
        rank: at most this many columns.
        rel_tol: stop when the remaining trace is below this fraction.
        progress: a progress bar (``None``: ntkgp's default).

    Returns:
        Float64 array ``(N, r)``, ``r <= rank``.
    """
    n = op.n
    rank = int(min(max(rank, 0), n))
    d = op.diagonal().copy()
    total = float(d.sum())
    lt = np.zeros((n, rank))
    bar = progress_counter(rank, desc="pivoted Cholesky",
                           enabled=True if progress is None else progress)
    m = 0
    for m in range(rank):
        p = int(np.argmax(d))
        if d[p] <= rel_tol * total or d[p] <= 0:
            break
        col = op.columns([p])[:, 0]
        col -= lt[:, :m] @ lt[p, :m]
        col /= np.sqrt(d[p])
        lt[:, m] = col
        d -= col ** 2
        d[p] = 0.0
        bar.update(1)
    else:
        m = rank
    bar.close()
    return lt[:, :m]


def nystrom(op: KernelOperator, rank: int, seed: int = 0) -> np.ndarray:
    r"""Nyström factor ``L = K_{:,S} R^{-1}`` with :math:`K_{SS} = R^\top R`, on ``rank``
    landmarks ``S`` drawn uniformly without replacement (one pass over the kernel).

    Args:
        op: the kernel `KernelOperator` ``(N x N)``.
        rank: number of landmarks ``r``.
        seed: seed of the landmark draw.

    Returns:
        Float64 array ``(N, r')``, ``r' <= r`` (landmark directions below rounding dropped).
    """
    n = op.n
    rank = int(min(max(rank, 0), n))
    if rank == 0:
        return np.zeros((n, 0))
    s = np.sort(np.random.default_rng(seed).choice(n, rank, replace=False))
    c = op.columns(s)
    kss = 0.5 * (c[s] + c[s].T)
    kss += (1e-10 * np.trace(kss) / rank + np.finfo(float).tiny) * np.eye(rank)
    w, u = np.linalg.eigh(kss)  # robust to a rank-deficient landmark block
    keep = w > w.max() * 1e-12
    return c @ (u[:, keep] / np.sqrt(w[keep]))


def make_preconditioner(op: KernelOperator, noise: float, method: Optional[str] = "auto",
                        rank: int = 256, seed: int = 0,
                        progress: Optional[bool] = None) -> Optional[LowRankPreconditioner]:
    r"""A `LowRankPreconditioner` for :math:`K + \sigma^2 I`.

    ``method``: ``'pivoted_cholesky'``, ``'nystrom'``, ``'auto'`` (pivoted Cholesky when the
    operator's single columns are cheap, as for a `TiledKernelOperator`; else Nyström, whose one
    pass suits a kernel read from disk), or ``None`` for none. ``noise`` is floored at the mean
    of the diagonal that the low-rank part leaves out, and at ``sqrt(eps)`` times the mean
    diagonal.

    Args:
        op: the kernel `KernelOperator` ``(N x N)``.
        noise: :math:`\sigma^2`, in the kernel's units.
        method: see above.
        rank: number of columns / landmarks ``r``.
        seed: landmark draw (Nyström).
        progress: a progress bar (``None``: ntkgp's default).

    Returns:
        A `LowRankPreconditioner` (applies :math:`(L L^\top + \sigma^2 I)^{-1}` in
        ``O(N r)``), or ``None`` for ``method=None``.
    """
    if method is None or rank == 0:
        return None
    if method == "auto":
        method = "pivoted_cholesky" if op.cheap_columns else "nystrom"
    if method == "pivoted_cholesky":
        lt = pivoted_cholesky(op, rank, progress=progress)
    elif method == "nystrom":
        lt = nystrom(op, rank, seed)
    else:
        raise ValueError(f"`preconditioner` must be 'auto', 'pivoted_cholesky', 'nystrom' or "
                         f"None; got {method!r}.")
    diag = op.diagonal()
    # The preconditioner's own noise: what L L^T leaves out of K (its mean remaining diagonal)
    # stands in for K's small eigenvalues, so that P^{-1} is never far larger than A^{-1} in
    # those directions, and at least sqrt(eps) of the mean diagonal, below which the Woodbury
    # form loses its accuracy to cancellation. Without these a small `noise` (diag_reg=0)
    # made preconditioned CG stall where plain CG converged.
    left = max(float(np.sum(diag)) - float(np.sum(lt * lt)), 0.0) / op.n
    noise = max(float(noise), left, np.sqrt(np.finfo(np.float64).eps) *
                max(float(np.mean(diag)), np.finfo(np.float64).tiny))
    return LowRankPreconditioner(lt, float(noise), method)


def _check_options(tol, max_iter, rank):
    checks.check_scalar(tol, "tol", low=0.0, strict=True)
    checks.check_int(max_iter, "max_iter", 1)
    checks.check_int(rank, "rank", 0)


def cg_solve(op: KernelOperator, b, noise: float,
             preconditioner: Union[LowRankPreconditioner, str, None] = "auto",
             rank: int = 256, tol: float = 1e-6, max_iter: int = 1000, x0=None,
             progress: Optional[bool] = None,
             callback: Optional[Callable[[int, np.ndarray, float], Optional[bool]]] = None
             ) -> SolveResult:
    r"""Solve :math:`(K + \sigma^2 I) X = B` with preconditioned conjugate gradients.

    Args:
        op: the kernel :math:`K` (`TiledKernelOperator`, `StoredKernelOperator`, ...).
        b: right-hand sides, shape ``(N,)`` or ``(N, C)``; the ``C`` columns are solved
            together (one kernel pass per iteration serves all of them).
        noise: :math:`\sigma^2 \ge 0` added to the diagonal, in the kernel's units.
        preconditioner: a `LowRankPreconditioner`, ``'auto'`` (default: pivoted Cholesky
            for recomputed tiles, Nyström for a stored kernel), ``'pivoted_cholesky'``,
            ``'nystrom'``, or ``None``. It is built only when ``x0`` does not already solve
            the system.
        rank: rank of a preconditioner built here.
        tol: stop when every column's relative residual is at most ``tol`` (``> 0``).
        max_iter: at most this many iterations (kernel passes), ``>= 1``.
        x0: starting point, the shape of ``b`` (default zeros).
        progress: show a progress bar over iterations (default: once they have taken 2 s).
        callback: ``callback(iteration, x, residual)`` after every iteration, with the
            current iterate (a copy is yours to keep): a checkpoint for long solves. It may
            return ``True`` to stop now (the result then says ``stopped``). A
            KeyboardInterrupt propagates; continue later with ``x0`` set to the last
            iterate the callback saw.

    Returns:
        A `SolveResult` (``solver='cg'``) with the solution ``x``. Warns
        `CGConvergenceWarning` when ``tol`` was not met (and no callback asked to stop).

    Raises:
        ValueError: for invalid options, or ``b``/``x0`` of the wrong shape or not finite.
        numpy.linalg.LinAlgError: when the system is not positive definite.
    """
    b2, squeeze = op.check_block(b, "`b` (the right-hand sides)")
    if isinstance(noise, bool) or not np.isscalar(noise) or not (np.isfinite(noise)
                                                                   and noise >= 0):
        raise ValueError(f"`noise` must be a finite number >= 0; got {noise!r}.")
    _check_options(tol, max_iter, rank)

    def apply(v):
        return op.matmat(v) + noise * v

    bnorm = np.linalg.norm(b2, axis=0)
    bnorm = np.where(bnorm > 0, bnorm, 1.0)
    if x0 is None:
        x, r = np.zeros_like(b2), b2.copy()
    else:
        x = np.array(x0, np.float64)
        if x.size != b2.size or not np.all(np.isfinite(x)):
            raise ValueError(f"`x0` must be a finite array of the shape of `b` "
                             f"{np.shape(b)}; got shape {np.shape(x0)}"
                             + ("" if x.size != b2.size else " with NaN or inf") + ".")
        x = x.reshape(b2.shape)
        r = b2 - apply(x)
    history = [float(np.max(np.linalg.norm(r, axis=0) / bnorm))]
    if history[-1] <= tol:  # x0 already solves it: no preconditioner needed
        preconditioner = None
    elif isinstance(preconditioner, str):
        preconditioner = make_preconditioner(op, noise, preconditioner, rank,
                                             progress=progress)

    def precond(v):
        return v if preconditioner is None else preconditioner.solve(v)

    z = precond(r)
    p = z.copy()
    rz = np.sum(r * z, axis=0)
    show = True if progress is None else progress
    bar = progress_counter(max_iter, desc="conjugate gradients", enabled=show)
    it = 0
    stopped = False
    try:
        while history[-1] > tol and it < max_iter:
            ap = apply(p)
            pap = np.sum(p * ap, axis=0)
            moving = np.any(p != 0, axis=0)  # a column solved exactly (e.g. b = 0) stays put
            if np.any(moving & ~(pap > 0)):
                raise np.linalg.LinAlgError(
                    "conjugate gradients met a direction of non-positive curvature: the "
                    "kernel plus noise is not positive definite (NaN in the kernel, or noise "
                    "0 with a singular kernel); raise `diag_reg`.")
            alpha = np.where(moving, rz / np.where(moving, pap, 1.0), 0.0)
            x += alpha * p
            r -= alpha * ap
            z = precond(r)
            rz_new = np.sum(r * z, axis=0)
            p = z + (rz_new / np.where(rz != 0, rz, 1.0)) * p
            rz = rz_new
            it += 1
            history.append(float(np.max(np.linalg.norm(r, axis=0) / bnorm)))
            bar.update(1)
            bar.set_postfix(residual=f"{history[-1]:.1e}")
            if callback is not None and callback(it, x.copy(), history[-1]) is True:
                stopped = history[-1] > tol
                break
    finally:
        bar.close()
    converged = history[-1] <= tol
    if not converged and not stopped:
        warnings.warn(
            f"conjugate gradients stopped after {it} iterations with relative residual "
            f"{history[-1]:.2e} > tol={tol:.0e}; raise `max_iter` or the preconditioner's "
            "`rank`, or raise `diag_reg` (a better-conditioned system).",
            CGConvergenceWarning, stacklevel=2)
    return SolveResult("cg", converged=converged, iterations=it, residual=history[-1],
                       stopped=stopped, tol=tol, x=x[:, 0] if squeeze else x,
                       residuals=np.array(history), preconditioner=preconditioner)
