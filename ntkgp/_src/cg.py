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
from typing import Optional, Union

import numpy as np
import scipy.linalg

from ntkgp._src.operator import KernelOperator
from ntkgp._src.progress import progress_counter


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
                           enabled=op.n > 4096 if progress is None else progress)
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
    pass suits a kernel read from disk), or ``None`` for none. ``noise`` is floored at machine
    epsilon times the mean diagonal.

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
    noise = max(float(noise), np.finfo(np.float64).eps * max(float(np.mean(op.diagonal())),
                                                             1e-300))
    if method == "pivoted_cholesky":
        lt = pivoted_cholesky(op, rank, progress=progress)
    elif method == "nystrom":
        lt = nystrom(op, rank, seed)
    else:
        raise ValueError(f"`preconditioner` must be 'auto', 'pivoted_cholesky', 'nystrom' or "
                         f"None; "
                         f"got {method!r}.")
    return LowRankPreconditioner(lt, float(noise), method)


@dataclasses.dataclass(frozen=True)
class CGResult:
    """Solution of :math:`(K + \\sigma^2 I) X = B` by conjugate gradients.

    Attributes:
        x: ``(N,)`` or ``(N, C)`` float64 solution.
        iterations: kernel-vector products used (one per iteration).
        residuals: ``(iterations + 1,)``, the largest relative residual
            :math:`\\max_c \\|b_c - A x_c\\| / \\|b_c\\|` after each iteration.
        converged: whether every column met ``tol``.
        tol: the tolerance asked for.
        preconditioner: the `LowRankPreconditioner` used (or ``None``).
        interrupted: whether Ctrl-C stopped it; ``x`` is then the last finished iterate,
            from which ``cg_solve(..., x0=x)`` continues.
    """

    x: np.ndarray
    iterations: int
    residuals: np.ndarray
    converged: bool
    tol: float
    preconditioner: Optional[LowRankPreconditioner] = None
    interrupted: bool = False


def cg_solve(op: KernelOperator, b, noise: float,
             preconditioner: Union[LowRankPreconditioner, str, None] = "auto",
             rank: int = 256, tol: float = 1e-6, max_iter: int = 1000, x0=None,
             progress: Optional[bool] = None) -> CGResult:
    r"""Solve :math:`(K + \sigma^2 I) X = B` with preconditioned conjugate gradients.

    Args:
        op: the kernel :math:`K` (`TiledKernelOperator`, `StoredKernelOperator`, ...).
        b: right-hand sides, shape ``(N,)`` or ``(N, C)``; the ``C`` columns are solved
            together (one kernel pass per iteration serves all of them).
        noise: :math:`\sigma^2 \ge 0` added to the diagonal, in the kernel's units.
        preconditioner: a `LowRankPreconditioner`, ``'auto'`` (default: pivoted Cholesky
            for recomputed tiles, Nyström for a stored kernel), ``'pivoted_cholesky'``,
            ``'nystrom'``, or ``None``.
        rank: rank of a preconditioner built here.
        tol: stop when every column's relative residual is at most ``tol``.
        max_iter: at most this many iterations (kernel passes).
        x0: starting point (default zeros).
        progress: show a progress bar over iterations (default: when ``N > 4096``).

    Returns:
        `CGResult`. Warns `CGConvergenceWarning` when ``tol`` was not met. A Ctrl-C during
        the iterations stops them and returns the last finished iterate (with a warning and
        ``interrupted=True``); pass it as ``x0`` to continue.
    """
    b2, squeeze = op._check_block(b, "`b` (the right-hand sides)")
    if not (np.isfinite(noise) and noise >= 0):
        raise ValueError(f"`noise` must be a finite number >= 0; got {noise!r}.")
    if not (tol > 0):
        raise ValueError(f"`tol` must be > 0; got {tol!r}.")
    if isinstance(preconditioner, str):
        preconditioner = make_preconditioner(op, noise, preconditioner, rank,
                                             progress=progress)

    def apply(v):
        return op.matmat(v) + noise * v

    def precond(r):
        return r if preconditioner is None else preconditioner.solve(r)

    bnorm = np.linalg.norm(b2, axis=0)
    bnorm = np.where(bnorm > 0, bnorm, 1.0)
    x = np.zeros_like(b2) if x0 is None else np.array(x0, np.float64).reshape(b2.shape)
    r = b2 - apply(x) if x0 is not None else b2.copy()
    z = precond(r)
    p = z.copy()
    rz = np.sum(r * z, axis=0)
    history = [float(np.max(np.linalg.norm(r, axis=0) / bnorm))]
    show = op.n > 4096 if progress is None else progress
    bar = progress_counter(max_iter, desc="conjugate gradients", enabled=show)
    it = 0
    interrupted = False
    while history[-1] > tol and it < max_iter:
        try:
            ap = apply(p)
        except KeyboardInterrupt:
            interrupted = True
            break

        pap = np.sum(p * ap, axis=0)
        moving = np.any(p != 0, axis=0)  # a column solved exactly (e.g. b = 0) stays put
        if np.any(moving & (pap <= 0)):
            raise np.linalg.LinAlgError(
                "conjugate gradients met a direction of non-positive curvature: the kernel "
                "plus noise is not positive definite (NaN in the kernel, or noise 0 with a "
                "singular kernel); raise `diag_reg`.")
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
    bar.close()
    converged = history[-1] <= tol
    if interrupted:
        warnings.warn(
            f"conjugate gradients interrupted after {it} iterations (relative residual "
            f"{history[-1]:.2e}); the result holds that iterate: continue with "
            "`cg_solve(..., x0=result.x)`.", CGConvergenceWarning, stacklevel=2)
    elif not converged:
        warnings.warn(
            f"conjugate gradients stopped after {it} iterations with relative residual "
            f"{history[-1]:.2e} > tol={tol:.0e}; raise `max_iter` or the preconditioner's "
            "`rank`, or raise `diag_reg` (a better-conditioned system).",
            CGConvergenceWarning, stacklevel=2)
    return CGResult(x=x[:, 0] if squeeze else x, iterations=it, residuals=np.array(history),
                    converged=converged, tol=tol, preconditioner=preconditioner,
                    interrupted=interrupted)
