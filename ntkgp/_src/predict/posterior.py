r"""`Posterior`: what an infinitely wide network predicts, from a kernel operator and a solver.

Every prediction of ntkgp (modes ``'nngp'``, ``'ntk'`` at any training time, ``'ntkgp'``;
kernels in memory, in tiles or on disk; Cholesky, eigendecomposition, CG or features) is a
Gaussian process over outputs with

.. math::
    \mu_t(x) = D_{xX} D^{-1}(I - e^{-tD/m})\,y, \qquad
    \Sigma_t = P_{xx} + Z_t^\top P Z_t - Z_t^\top P_{Xx} - P_{xX} Z_t,
    \quad Z_t = D^{-1}(I - e^{-tD/m}) D_{Xx},

where ``D`` is the regularized kernel that drives training (NNGP for ``'nngp'``, NTK
otherwise), ``P`` the prior covariance of the initial outputs (the NNGP, or ``D`` itself for
``'nngp'``/``'ntkgp'``: the Bayesian posterior at :math:`t=\infty`) and ``m`` the number of
target entries (Lee et al. 2019, eqs. 15-16).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.features.rows import training_rows
from ntkgp._src.predict import common, dense, evidence, moments_features
from ntkgp._src.predict import moments_cg as cg_moments
from ntkgp._src.predict.common import DRIVER, PRIOR, kernel_callable, kernel_part
from ntkgp._src.scale import tiles
from ntkgp._src.solve import linalg
from ntkgp._src.solve.features import FeatureFactor
from ntkgp._src.solve.operators import DenseKernelOperator, KernelOperator
from ntkgp._src.solve.solvers import CGFactor, Solver, as_solver, direct_result
from ntkgp._src.solve.tiled import TiledKernelOperator
from ntkgp._src.util import check_fits_in_memory


class Posterior:
    r"""Predictions of an infinitely wide network from its kernels: factor once, then predict
    at any test points and training times.

    Args:
        kernel_fn: an ``ntkgp.nn`` network or ``kernel_fn(x1, x2, get) -> Kernel``
            (``x2=None``: ``x1`` with itself).
        x_train: training inputs ``(N, ...)`` (feature solvers: also ``features.LazyRows``).
        y_train: targets ``(N,)`` or ``(N, K)``.
        mode: ``'nngp'``, ``'ntk'`` or ``'ntkgp'`` (see the module docs).
        solver: ``'auto'`` (Cholesky up to 20,000 points, conjugate gradients beyond),
            ``'cholesky'``, ``'eigh'`` (finite times), ``'cg'``, ``'features'`` / ``'nystrom'``
            (random / Nyström features of ``kernel_fn``; N in the millions), or a solver object
            (`ntkgp.linalg.CholeskySolver`, `EigenSolver`, `CGSolver`, `FeatureSolver`).
        diag_reg: :math:`\lambda \ge 0` on the diagonal of ``D``, times its mean diagonal
            unless ``diag_reg_absolute_scale``. For ``'nngp'``/``'ntkgp'`` it is the noise
            variance of the observations.
        diag_reg_absolute_scale: take ``diag_reg`` in the kernel's units.
        learning_rate: ``None`` for gradient flow, or the step :math:`\eta` of gradient descent
            (then finite times are whole numbers of steps); ``t`` is
            :math:`\eta \times` steps either way.
        momentum: heavy-ball momentum :math:`\beta \in [0, 1)` (needs ``learning_rate``).
        tile_size: rows per kernel tile for a matrix-free solver.
        devices: devices to spread kernel tiles over (default: all local ones).

    Raises:
        ValueError: for inputs of the wrong shape, NaN/inf, or bad options.
        MemoryError: when a dense solver's kernels would not fit in memory.
        NotPositiveDefiniteError: when Cholesky fails even with jitter.

    Example:
        >>> import numpy as np
        >>> from ntkgp import nn, predict
        >>> net = nn.mlp(2, 512, "relu")
        >>> x, y = np.random.default_rng(0).normal(size=(2, 8, 3))
        >>> post = predict.Posterior(net, x, y, mode="ntk", solver="eigh", diag_reg=1e-3)
        >>> mean, var = post.predict(x[:2], t=[1.0, None], return_var=True)
        >>> mean.shape, var.shape
        ((2, 2, 3), (2, 2))
    """

    def __init__(self, kernel_fn, x_train, y_train, *, mode: str = "ntk", solver="auto",
                 diag_reg=0.0, diag_reg_absolute_scale: bool = False,
                 learning_rate: Optional[float] = None, momentum: float = 0.0,
                 tile_size: Optional[int] = None, devices=None):
        kfn = kernel_callable(kernel_fn)
        mode = checks.check_mode(mode)
        x_train = training_rows(x_train, solver)
        n = x_train.shape[0]
        solver = as_solver(solver, n)
        kinds = sorted({DRIVER[mode], PRIOR[mode]})
        if solver.dense:
            what = f"the training kernels ({', '.join(kinds)}) and their factorization"
            check_fits_in_memory(n, x_train.dtype, len(kinds) + solver.work_matrices, what)
            k = kfn(x_train, None, tuple(kinds))
            sym = bool(getattr(k, "x1_is_x2", False))
            ops = {g: DenseKernelOperator(kernel_part(k, g, "kernel_fn(x_train, None)"), sym,
                                          g.upper()) for g in kinds}
        elif solver.name in ("features", "nystrom"):
            ops = solver.operators(kernel_fn, x_train, kinds)
        else:
            bars = getattr(solver, "progress", None)
            ops = {g: TiledKernelOperator(kfn, x_train, get=g, tile_size=tile_size,
                                          devices=devices, progress=bars) for g in kinds}
        self._build(ops, y_train, mode, solver, diag_reg, diag_reg_absolute_scale,
                    learning_rate, momentum, kfn, x_train)

    @classmethod
    def from_kernels(cls, k_train_train, y_train, *, mode: str = "nngp", solver="cholesky",
                     diag_reg=0.0, diag_reg_absolute_scale: bool = False,
                     learning_rate: Optional[float] = None, momentum: float = 0.0,
                     kernel_fn=None, x_train=None) -> Posterior:
        r"""A posterior on kernels already computed (then ``predict`` takes the test kernels,
        unless ``kernel_fn`` and ``x_train`` are given too).

        Args:
            k_train_train: the training kernel(s): a `Kernel` (``net.kernel(x, None)``), an
                ``(N, N)`` array (the kernel of the mode: NNGP for ``'nngp'``, NTK otherwise),
                a `KernelOperator` (e.g. `StoredKernelOperator` on a zarr store), or a dict
                ``{'nngp': ..., 'ntk': ...}`` of arrays or operators.
            y_train: targets ``(N,)`` or ``(N, K)``.
            mode: as for `Posterior`.
            solver: as for `Posterior` (default ``'cholesky'``).
            diag_reg: as for `Posterior`.
            diag_reg_absolute_scale: as for `Posterior`.
            learning_rate: as for `Posterior`.
            momentum: as for `Posterior`.
            kernel_fn: optional kernel function for test points.
            x_train: the training inputs of ``kernel_fn``.

        Returns:
            A `Posterior`.
        """
        mode = checks.check_mode(mode)
        if isinstance(k_train_train, dict):
            parts = dict(k_train_train)
        elif hasattr(k_train_train, "nngp") and hasattr(k_train_train, "ntk"):
            parts = {"nngp": k_train_train.nngp, "ntk": k_train_train.ntk}
        else:
            parts = {DRIVER[mode]: k_train_train}
        sym = bool(getattr(k_train_train, "x1_is_x2", False))
        ops = {}
        for g in sorted({DRIVER[mode], PRIOR[mode]}):
            v = parts.get(g)
            if v is None:
                raise ValueError(f"mode={mode!r} needs the {g} kernel of the training points, "
                                 "which was not given. Pass a Kernel computed with get=('nngp', "
                                 "'ntk') (e.g. `net.kernel(x_train, None)`).")
            ops[g] = v if isinstance(v, KernelOperator) else DenseKernelOperator(
                v, sym, f"k_train_train.{g}")
        n = ops[DRIVER[mode]].n
        kfn = None if kernel_fn is None else kernel_callable(kernel_fn)
        if kfn is not None:
            x_train, _ = checks.check_inputs(x_train, None, ndim=None)
        self = cls.__new__(cls)
        self._build(ops, y_train, mode, as_solver(solver, n), diag_reg, diag_reg_absolute_scale,
                    learning_rate, momentum, kfn, x_train)
        return self

    def _build(self, ops, y_train, mode, solver: Solver, diag_reg, absolute, learning_rate,
               momentum, kfn, x_train):
        checks.check_nonneg(diag_reg, "diag_reg")
        self.mode, self.solver = mode, solver
        self.learning_rate, self.momentum = common.check_learning_rate(learning_rate,
                                                                      momentum)
        self.kernel_fn, self.x_train = kfn, x_train
        d = ops[DRIVER[mode]]
        y, self.y_was_1d = checks.check_targets(y_train, d.n)
        self.factor = solver.factor(d, diag_reg, bool(absolute), DRIVER[mode].upper())
        p = ops[PRIOR[mode]] if mode == "ntk" else None
        if isinstance(self.factor, CGFactor):
            self.y_train = np.asarray(y, np.float64)
            self.prior = p
            self.alpha = self.factor.solve(self.y_train, getattr(solver, "x0", None))
        elif isinstance(self.factor, FeatureFactor):
            self.y_train, self.prior, self.alpha = np.asarray(y, np.float64), p, None
            self.factor.fit(self.y_train, p)
        else:
            self.y_train = y.astype(self.factor.added.dtype)
            self.alpha = None
            self.prior = None if p is None else p.dense()
            if isinstance(self.factor, linalg.Eigh) and p is not None:
                self.prior = common.rotate(self.factor.evecs, self.prior)
        self.m = int(np.prod(self.y_train.shape))

    # -- what was solved ---------------------------------------------------------------------
    @property
    def solve_result(self):
        """How the solver met the training system: a `ntkgp.linalg.SolveResult`."""
        if isinstance(self.factor, (CGFactor, FeatureFactor)):
            return self.factor.result()
        return direct_result(self.factor)

    @property
    def noise(self):
        r"""What was added to the diagonal of ``D`` (:math:`\sigma^2`, in the kernel's units)."""
        return self.factor.added

    def with_targets(self, y_train) -> Posterior:
        """The same factored kernels with other targets (no new factorization; conjugate
        gradients solve once more)."""
        new = self._copy()
        y, new.y_was_1d = checks.check_targets(y_train, self.y_train.shape[0])
        if isinstance(self.factor, CGFactor):
            new.y_train = np.asarray(y, np.float64)
            new.alpha = self.factor.solve(new.y_train)
        elif isinstance(self.factor, FeatureFactor):
            new.y_train = np.asarray(y, np.float64)
            new.factor = self.factor.refit(new.y_train, self.prior)
        else:
            new.y_train = y.astype(self.y_train.dtype)
        new.m = int(np.prod(new.y_train.shape))
        return new

    def as_mode(self, mode: str) -> Posterior:
        """This posterior's factor in another mode with the same driving kernel (``'ntk'`` to
        ``'ntkgp'``: the trained ensemble's mean is the NTK-GP's mean)."""
        checks.check_mode(mode)
        if DRIVER[mode] != DRIVER[self.mode] or (mode == "ntk" and self.mode != "ntk"):
            raise ValueError(f"a {self.mode!r} posterior cannot serve mode {mode!r}; build one "
                             "for it.")
        new = self._copy()
        new.mode = mode
        if mode != "ntk":
            new.prior = None
        return new

    def _copy(self) -> Posterior:
        new = Posterior.__new__(Posterior)
        new.__dict__.update(self.__dict__)
        return new

    def _rate(self):
        """The static time argument of the moments: ``None``, a step, or (step, momentum)."""
        return (self.learning_rate, self.momentum) if self.momentum else self.learning_rate

    def predict(self, x_test=None, t=None, *, return_var: bool = False,
                return_cov: bool = False, k_test_train=None, k_test_test=None):
        r"""Mean (and variance or covariance) of the outputs at test points, at time ``t``.

        Args:
            x_test: test inputs ``(M, ...)``; ``None`` (with no ``k_test_train``) for the
                training points.
            t: training time :math:`t = \eta \times \text{steps}`: a number, a 1-D array of
                ``T`` times, or ``None``/``inf`` for convergence (the Bayesian posterior for
                ``'nngp'``/``'ntkgp'``). Finite times need ``solver='eigh'``.
            return_var: also return the variances ``(M,)`` (``(T, M)``).
            return_cov: also return the covariance ``(M, M)`` (``(T, M, M)``); dense solvers.
            k_test_train: instead of ``x_test``, the test-train kernel ``(M, N)``: a `Kernel`
                (``net.kernel(x_test, x_train)``), or an array of the mode's driving kernel.
            k_test_test: with ``k_test_train``, for variances or covariances: a `Kernel` or
                the ``(M, M)`` array of the prior kernel (NTK for ``'ntkgp'``, else NNGP).

        Returns:
            The mean ``(M, K)`` (``(T, M, K)`` for an array of times; no ``K`` axis for 1-D
            targets); ``(mean, var)`` with ``return_var``; a `Gaussian` ``(mean, cov)`` with
            ``return_cov``. The ``K`` outputs share one (co)variance.
        """
        if return_var and return_cov:
            raise ValueError("pass return_var=True or return_cov=True, not both (the "
                             "covariance holds the variances on its diagonal).")
        ts, scalar = common.normalize_times(t)
        common.check_steps(ts, self.learning_rate)
        inf = t is None or common.is_infinite(ts)
        if not inf and not self.solver.finite_time:
            raise ValueError(f"predictions at a finite training time t need "
                             f"solver='eigh'; this posterior was solved with "
                             f"{self.solver.name!r}, which gives t=inf only.")
        want = "cov" if return_cov else "var" if return_var else None
        if x_test is None and k_test_train is None:
            mean, second = self._train_points(ts, inf, want)
        elif isinstance(self.factor, FeatureFactor):
            mean, second = moments_features.predict(self, x_test, k_test_train, want)
            mean, second = mean[None], (None if second is None else second[None])
        elif isinstance(self.factor, CGFactor):
            if want == "cov":
                raise ValueError("conjugate gradients give predictive variances "
                                 "(return_var=True) but not full covariances; use "
                                 "solver='cholesky' for those.")
            mean, second = cg_moments.predict(self, x_test, k_test_train, k_test_test, want)
            mean, second = mean[None], (None if second is None else second[None])
        elif k_test_train is not None:
            d_td, p_td, p_tt = common.given_kernels(self.mode, self.y_train.shape[0],
                                                    k_test_train, k_test_test, want)
            return self._dense(d_td, p_td, p_tt, ts, inf, scalar, want)
        else:
            return self._dense_from_inputs(x_test, ts, inf, scalar, want)
        return common.finish(mean, second, scalar, self.y_was_1d, want)

    def _plan(self, ts, at_inf, scalar, want) -> dense.Plan:
        if not (at_inf and isinstance(self.factor, linalg.Cholesky)):
            common.warn_if_divergent(self.factor.evals, self.m, self.learning_rate,
                                     self.momentum)
        return dense.plan(self.factor, at_inf, ts.shape[0], scalar, self.y_was_1d, want,
                          self._rate())

    def _dense(self, d_td, p_td, p_tt, ts, at_inf, scalar, want):
        """The result from test kernels, in its final shapes (one compiled program)."""
        p = self._plan(ts, at_inf, scalar, want)
        mean, c = dense.moments(p, self.factor, self.y_train, self.prior, ts, self.m, d_td,
                                p_td, p_tt)
        return common.result(mean, c, want)

    def _dense_from_inputs(self, x_test, ts, at_inf, scalar, want):
        if self.kernel_fn is None:
            raise ValueError("this posterior was built from kernels alone: pass the test "
                             "kernels (`k_test_train=`, and `k_test_test=` for (co)variances).")
        x_test, _ = checks.check_inputs(x_test, self.x_train[:1], ndim=None)
        x_test = x_test.astype(self.x_train.dtype)
        p = self._plan(ts, at_inf, scalar, want)

        def predict(x):  # the test kernels and the moments (one program for a network)
            return dense.from_inputs(self.kernel_fn, self.mode, p, self.factor, self.y_train,
                                     self.prior, ts, self.m, x, self.x_train)
        if want == "cov":
            return common.result(*predict(x_test), want)
        # fixed-size chunks of test rows: memory bounded, one compiled program for any M; cut
        # and joined on the host when concrete (no small programs to compile)
        parts, rows = [], tiles.TEST_ROWS
        x_test = np.asarray(x_test) if checks.is_concrete(x_test) else x_test
        for a, b in tiles.row_chunks(x_test.shape[0], rows):
            mean, c = predict(tiles.pad_rows(x_test[a:b], rows))
            parts.append((mean if want is None else (mean, c), b - a))
        first = parts[0][0] if want is None else parts[0][0][0]
        xp = np if checks.is_concrete(first) else jnp

        def join(k):
            got = [(xp.asarray(o if want is None else o[k]), n) for o, n in parts]
            return xp.concatenate([g[:n] if scalar else g[:, :n] for g, n in got],
                                  axis=0 if scalar else 1)
        if want is None:
            return jnp.asarray(join(0))
        return jnp.asarray(join(0)), jnp.asarray(xp.maximum(join(1), 0.0))

    def _train_points(self, ts, at_inf, want):
        """Outputs on the training points during training: :math:`(I - e^{-tD/m}) y`."""
        y = self.y_train
        n = y.shape[0]
        t = ts.shape[0]
        if at_inf and not isinstance(self.factor, linalg.Eigh):
            second = {"cov": jnp.zeros((t, n, n), y.dtype), "var": jnp.zeros((t, n), y.dtype),
                      None: None}[want]
            return jnp.broadcast_to(jnp.asarray(y), (t,) + y.shape), second
        f = self.factor
        w = f.evals if self.prior is None else self.prior
        common.warn_if_divergent(f.evals, self.m, self.learning_rate, self.momentum)
        mean, c = common.moments_train(f.evals, f.evecs, w, y, ts, self.m, self._rate(),
                                       want is not None)
        if want == "var":
            c = jnp.diagonal(c, axis1=-2, axis2=-1)
        return mean, c

    def log_marginal_likelihood(self):
        r"""Log evidence of the targets under the GP whose prior is the training kernel ``D``
        (NNGP for ``'nngp'``, NTK for ``'ntk'``/``'ntkgp'``) plus the noise, summed over
        the ``K`` outputs:

        .. math:: \log p(y) = -\tfrac12 \sum_k y_k^\top D^{-1} y_k - \tfrac{K}{2}\log\det D
                  - \tfrac{NK}{2}\log 2\pi

        Differentiable in everything that made the kernel (dense solvers).
        """
        return evidence.log_marginal_likelihood(self.factor, self.y_train)

_LEAVES = ("y_train", "factor", "prior", "x_train")


def _flatten(p: Posterior):
    """Dense posteriors are pytrees of their arrays (they pass through ``jax.jit`` and
    ``jax.grad``); a matrix-free one holds operators and is one opaque leaf-free node."""
    if isinstance(p.factor, (CGFactor, FeatureFactor)):
        return (), _Opaque(p.__dict__)
    rest = tuple(sorted((k, v) for k, v in p.__dict__.items() if k not in _LEAVES))
    return tuple(getattr(p, k) for k in _LEAVES), rest


def _unflatten(aux, children):
    p = Posterior.__new__(Posterior)
    if isinstance(aux, _Opaque):
        p.__dict__.update(aux.state)
    else:
        p.__dict__.update(dict(aux))
        p.__dict__.update(zip(_LEAVES, children))
    return p


class _Opaque:  # the state of a matrix-free posterior, compared by identity
    def __init__(self, state):
        self.state = dict(state)


jax.tree_util.register_pytree_node(Posterior, _flatten, _unflatten)

