r"""Solving on random features: the kernel :math:`K \approx \Phi\Phi^\top` of ``D`` features
of ``N`` rows, regularized by :math:`\sigma^2 > 0`, is inverted in feature space (Woodbury):

.. math::
    (\Phi\Phi^\top + \sigma^2 I)^{-1}\Phi = \Phi\,A, \qquad
    A = (\Phi^\top\Phi + \sigma^2 I_D)^{-1},

so the posterior mean at :math:`x` is :math:`\phi(x)^\top w` with
:math:`w = A\,\Phi^\top y`: one pass over the rows accumulates the ``D x D`` Gram
:math:`\Phi^\top\Phi` and :math:`\Phi^\top y` (time :math:`O(N D^2)`, memory :math:`O(D^2)`,
nothing of size ``N x N`` or ``N x D`` held), then one Cholesky of size ``D``.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from ntkgp._src import checks
from ntkgp._src.features.feature_map import FeatureMap
from ntkgp._src.features.nystrom import NystromMap
from ntkgp._src.features.rows import take_rows
from ntkgp._src.solve import dask_features, linalg
from ntkgp._src.solve.operators import KernelOperator
from ntkgp._src.solve.result import SolveResult
from ntkgp._src.solve.solvers import Solver
from ntkgp._src.util import check_fits_in_memory


class FeatureKernelOperator(KernelOperator):
    r"""The kernel :math:`\Phi\Phi^\top` of a `FeatureMap` on rows ``x``, recomputed in blocks
    of rows on every use (memory: one block of features).

    Args:
        feature_map: the `FeatureMap`.
        x: the rows ``(N, d)``: an array, or `LazyRows` read span by span on each use.
        get: ``'nngp'`` or ``'ntk'``: which of the map's kernels.
    """

    cheap_columns = False
    symmetric = True

    def __init__(self, feature_map: FeatureMap, x, get: str):
        self.feature_map, self.x, self.get = feature_map, x, get
        self.shape = (x.shape[0], x.shape[0])
        self.dtype = np.dtype(x.dtype)

    def _blocks(self):
        for a, b, f in self.feature_map.chunks(self.x, self.get == "ntk"):
            yield a, b, np.asarray(getattr(f, self.get), np.float64)

    def matmat(self, v):
        # two passes, each holding one block of features (never all N x D of them)
        v = np.asarray(v, np.float64)
        t = sum(phi.T @ v[a:b] for a, b, phi in self._blocks())
        return np.concatenate([phi @ t for _, _, phi in self._blocks()])

    def _compute_diagonal(self):
        return np.concatenate([np.sum(phi ** 2, axis=1) for _, _, phi in self._blocks()])

    def columns(self, idx):
        cols = np.asarray(getattr(self.feature_map.features(
            take_rows(self.x, idx), self.get == "ntk"), self.get), np.float64)
        return np.concatenate([phi @ cols.T for _, _, phi in self._blocks()])


#: above this share of effective dimensions the features are saturated (a warning)
SATURATED = 0.5


class FeatureSaturationWarning(UserWarning):
    """The data use most of the random features' dimensions: raise ``n_features``."""


@jax.jit
def block_sums(phi, psi, y, shift_phi, shift_psi):
    """One block's contributions, of the features less their shifts: ``c^T c``, ``c^T y``,
    ``c^T d`` (or ``None``) and the column sums of ``c``, ``d`` and ``y``, where ``c = phi -
    shift_phi`` and ``d = psi - shift_psi``."""
    c = phi - shift_phi[None]
    d = None if psi is None else psi - shift_psi[None]
    return (c.T @ c, c.T @ y, None if d is None else c.T @ d, jnp.sum(c, 0),
            None if d is None else jnp.sum(d, 0), jnp.sum(y, 0))


def add_sums(total, parts):
    """Partial sums ``(gram, rhs, cross)`` added to ``total`` (None: the first ones)."""
    if total is None:
        return list(parts)
    return [None if t is None else t + p for t, p in zip(total, parts)]


def pass_sums(fmap, x, y, drive, other, need_ntk, progress=None):
    r"""``(gram, rhs, cross)`` in float64 over the blocks of rows ``x`` (an array or
    `LazyRows`) and targets ``y``: one pass of `block_sums`, in this process.

    The blocks' products run in the features' dtype, on the features less the first block's
    column means :math:`m`, and are added in float64; the shift is added back there:
    :math:`\Phi^\top\Phi = C^\top C + m s^\top + s m^\top + N m m^\top` with
    :math:`C = \Phi - 1 m^\top` and :math:`s = C^\top 1`. Features share a large common part
    (a ReLU's outputs are positive; a large bias puts most units on one side of the kink on
    every row), which float32 products would round at its scale: 60,000 rows, 1025 NTK
    features after a bias of 4, kernel diagonal 22: eigenvalues of the Gram down to -6e-3
    unshifted, -5e-7 shifted (float64 products of the same features: -1.5e-10), against a
    regularizer of 2.6e-3 at ``diag_reg=1.2e-4``."""
    total, shifts, n = None, None, 0
    y = jnp.asarray(np.asarray(y), x.dtype)
    for a, b, f in fmap.chunks(x, need_ntk, progress):
        phi, psi = getattr(f, drive), None if other is None else getattr(f, other)
        if total is None:
            check_fits_in_memory(phi.shape[-1], np.float64, 5,
                                 "the Gram matrix of the random features (pass fewer "
                                 "`n_features`)")
            shifts = (jnp.mean(phi, 0), None if psi is None else jnp.mean(psi, 0))
        parts = block_sums(phi, psi, y[a:b], *shifts)
        total = add_sums(total, [None if p is None else np.asarray(p, np.float64)
                                 for p in parts])
        n += b - a
    gc, rc, cc, s, s_psi, s_y = total
    m = np.asarray(shifts[0], np.float64)
    gram = gc + np.outer(m, s) + np.outer(s, m) + n * np.outer(m, m)
    rhs = rc + np.outer(m, s_y)
    cross = None
    if cc is not None:
        m_psi = np.asarray(shifts[1], np.float64)
        cross = cc + np.outer(m, s_psi) + np.outer(s, m_psi) + n * np.outer(m, m_psi)
    return gram, rhs, cross


@dataclasses.dataclass(frozen=True)
class FeatureSolver(Solver):
    """Regression on ``n_features`` features of the network: random features (`FeatureMap`,
    ``kind='random'``, solver name ``'features'``) or Nyström features of its exact kernel on
    ``n_features`` landmark rows (`NystromMap`, ``kind='nystrom'``, solver ``'nystrom'``): time
    :math:`O(N D^2)`, memory :math:`O(D^2)`, for ``N`` in the millions. Predicts the network
    trained to convergence (:math:`t=\\infty`), with means, variances and covariances.

    Args:
        n_features: random directions per activation layer (``D`` is about twice that for
            the NTK, once for the NNGP), or the number of landmarks (``D``) for Nyström.
        seed: the features' random key or the landmarks' draw (same seed, same kernel).
        kind: ``'random'`` or ``'nystrom'``.
        jitter: as `CholeskySolver` (for the ``D x D`` system).
        progress: progress bars over blocks of rows (default: once they have taken 2 s).
    """

    n_features: int = 2048
    seed: int = 0
    kind: str = "random"
    jitter: Optional[float] = None
    progress: Optional[bool] = None
    finite_time = False
    dense = False

    def __post_init__(self):
        checks.check_choice(self.kind, "kind", ("random", "nystrom"))
        checks.check_positive_int(self.n_features, "n_features")

    @property
    def name(self):
        """``'features'`` (random features) or ``'nystrom'``."""
        return "features" if self.kind == "random" else "nystrom"

    def starting_from(self, x0):
        return self

    def feature_map(self, net, x=None):
        """The feature map of ``net`` (Nyström: with landmarks drawn from the rows ``x``)."""
        if self.kind == "nystrom":
            return NystromMap.from_rows(net, x, self.n_features, self.seed)
        return FeatureMap(net, self.n_features, self.seed)

    def operators(self, net, x, kinds):
        """`FeatureKernelOperator` of each kernel in ``kinds``, on one shared feature map."""
        fmap = self.feature_map(net, x)
        return {g: FeatureKernelOperator(fmap, x, g) for g in kinds}

    def factor(self, op, diag_reg=0.0, absolute=False, name="kernel"):
        if not isinstance(op, FeatureKernelOperator):
            raise ValueError(f"solver={self.name!r} needs a network to draw features from: "
                             "build the posterior with `Posterior(net, x_train, y_train, "
                             f"solver={self.name!r})`, not from kernel matrices.")
        checks.check_nonneg(diag_reg, "diag_reg")
        if not float(diag_reg) > 0:
            raise ValueError(f"solver={self.name!r} needs diag_reg > 0: the kernel of D "
                             "features has rank at most D, so without noise the training "
                             "system is singular. Pass e.g. diag_reg=1e-3.")
        return FeatureFactor(op, float(diag_reg), bool(absolute), self)


class FeatureFactor:
    r""":math:`(\Phi\Phi^\top + \sigma^2 I)^{-1}` in feature space; `fit` makes the one pass
    over the training rows (``prior``: the operator of the prior kernel when it differs from
    the driving one, whose cross Gram :math:`\Phi^\top\Psi` the same pass accumulates)."""

    def __init__(self, op: FeatureKernelOperator, diag_reg: float, absolute: bool,
                 solver: FeatureSolver):
        self.op, self.diag_reg, self.absolute, self.solver = op, diag_reg, absolute, solver
        self.feature_map = op.feature_map
        self.chol = self.weights = self.cross = None

    def fit(self, y, prior: Optional[FeatureKernelOperator] = None):
        """Accumulate the Gram and :math:`\\Phi^\\top y` over the rows of ``y`` ``(N, K)``,
        factor, and solve for the weights ``w`` ``(D, K)``."""
        drive, other = self.op.get, None if prior is None else prior.get
        need_ntk = "ntk" in (drive, other)
        x = self.op.x
        client = dask_features.active_client(getattr(x, "source", None))
        if client is not None:  # a Dask array on a cluster: each chunk's sums on a worker
            gram, rhs, cross = dask_features.feature_sums(
                client, self.feature_map, x, np.asarray(y), drive, other, need_ntk,
                self.solver.progress)
        else:
            gram, rhs, cross = pass_sums(self.feature_map, x, y, drive, other, need_ntk,
                                         self.solver.progress)
        n = self.op.n
        mean_diag = float(np.trace(gram)) / n
        noise = self.diag_reg * (1.0 if self.absolute else mean_diag)
        self.mean_diag, self.n_rows = mean_diag, n
        self.chol, self.added, self.jitter, self.attempts = _host_cholesky(gram, noise)
        self.effective_dim = _effective_dim(self.chol, float(self.added))
        d = gram.shape[0]
        # Nystrom on every row is the exact kernel: nothing to saturate
        exact = len(getattr(self.feature_map, "landmarks", ())) >= n
        if self.effective_dim > SATURATED * d and not exact:
            warnings.warn(
                f"The {d} features are saturated: the data use {self.effective_dim:.0f} "
                f"effective dimensions of them (sum of mu/(mu + noise) over the Gram's "
                f"eigenvalues mu), more than {SATURATED:.0%}. The exact kernel then likely "
                "has more dimensions above the noise than the features can carry, and "
                "predictions may differ from the exact solve; raise `n_features` or "
                "`diag_reg`.", FeatureSaturationWarning, stacklevel=4)
        self.gram, self.rhs, self.cross = gram, rhs, cross
        self.y_sq = np.sum(np.asarray(y, np.float64) ** 2, axis=0)
        self.weights = self.solve(rhs)
        return self

    def refit(self, y, prior: Optional[FeatureKernelOperator] = None) -> FeatureFactor:
        """A new factor of the same features fitted to other targets (one more pass)."""
        return FeatureFactor(self.op, self.diag_reg, self.absolute, self.solver).fit(y, prior)

    def solve_lower(self, b):
        """:math:`L^{-1} b` for :math:`LL^\\top = \\Phi^\\top\\Phi + \\sigma^2 I` (float64)."""
        return scipy.linalg.solve_triangular(self.chol, b, lower=True)

    def solve(self, b):
        """:math:`A b = (\\Phi^\\top\\Phi + \\sigma^2 I)^{-1} b` (float64)."""
        return scipy.linalg.cho_solve((self.chol, True), b)

    def result(self) -> SolveResult:
        return SolveResult(self.solver.name, converged=bool(np.all(np.isfinite(self.weights))),
                           iterations=self.attempts, jitter=self.jitter)

    def log_marginal_likelihood(self):
        r""":math:`\log p(y)` under :math:`N(0, \Phi\Phi^\top + \sigma^2 I)`, summed over the
        outputs, by the matrix determinant lemma and Woodbury."""
        s2 = float(self.added)
        n, d = self.n_rows, self.gram.shape[0]
        k = self.rhs.shape[1]
        quad = (np.sum(self.y_sq) - np.sum(self.rhs * self.weights)) / s2
        logdet = (n - d) * np.log(s2) + 2.0 * np.sum(np.log(np.diagonal(self.chol)))
        return -0.5 * quad - 0.5 * k * logdet - 0.5 * n * k * np.log(2 * np.pi)


def _effective_dim(chol, noise):
    r""":math:`\sum_i \mu_i/(\mu_i + \sigma^2) = D - \sigma^2 \operatorname{tr} A`, with
    :math:`\operatorname{tr} A = \|L^{-1}\|_F^2`."""
    inv = scipy.linalg.solve_triangular(chol, np.eye(chol.shape[0]), lower=True)
    return float(chol.shape[0] - noise * np.sum(inv * inv))


def _host_cholesky(gram, noise):
    """``(L, added, jitter, attempts)``: the float64 Cholesky factor of ``gram + added I``
    (``D x D``, on the host: the Gram of many rows needs float64 whatever the features'
    precision), escalating a relative jitter as `ntkgp.linalg.cholesky` does."""
    d = gram.shape[0]
    mean = max(float(np.trace(gram)) / d, np.finfo(np.float64).tiny)
    sym = 0.5 * (gram + gram.T)
    jitters = [0.0] + list(np.sqrt(np.finfo(np.float64).eps) * 10.0 ** np.arange(20))
    for attempt, jit in enumerate(j for j in jitters if j <= linalg.MAX_JITTER):
        added = noise + jit * mean
        try:
            chol = scipy.linalg.cholesky(sym + added * np.eye(d), lower=True)
        except np.linalg.LinAlgError:
            continue
        if np.min(np.diagonal(chol)) ** 2 > d * np.finfo(np.float64).eps * mean:
            if jit:
                warnings.warn(f"The Gram matrix of {d} random features is singular to float64 "
                              f"precision; added jitter {jit:.1e} x mean(diag) to factorize it. "
                              "Pass a larger `diag_reg`.", linalg.JitterWarning, stacklevel=4)
            return chol, added, jit, attempt + 1
    raise linalg.NotPositiveDefiniteError(
        f"The Gram matrix of {d} random features could not be factorized even with jitter "
        f"{linalg.MAX_JITTER:g} x mean(diag); its entries may be inf/NaN (inputs too large?). "
        "Pass a larger `diag_reg` or standardize the inputs.")
