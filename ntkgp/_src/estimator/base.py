r"""What the scikit-learn estimators share: input checks, the solver choice, and
marginal-likelihood fitting of the hyperparameters (the network and its kernel functions are
in `network`); predictions come from one `ntkgp.predict.Posterior`."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from ntkgp._src import checks
from ntkgp._src.estimator.evidence_fit import BOUNDS as BOUNDS
from ntkgp._src.estimator.evidence_fit import (
    EvidenceProgram,
    evidence_at,
    maximize_evidence,
)
from ntkgp._src.estimator.network import (
    NAMES,
    KernelFunction,
    build_network,
    lml_function,
)
from ntkgp._src.estimator.padding import pad_inputs, pad_rows, padded_posterior
from ntkgp._src.nn.core import Layer
from ntkgp._src.nn.spec import ACTIVATIONS
from ntkgp._src.predict.posterior import Posterior
from ntkgp._src.scale.tiles import DENSE_MAX_N
from ntkgp._src.solve.features import FeatureSolver
from ntkgp._src.solve.linalg import NotPositiveDefiniteError
from ntkgp._src.solve.solvers import as_solver

# KernelFunction must stay importable from this module: models pickled before it moved to
# `network` refer to it here.

_warned = set()
#: the depths ``depth='auto'`` compares (Arora et al. 2020 cross-validated depths 1 to 5)
AUTO_DEPTHS = (1, 2, 3, 4, 5)
#: the activations ``activation='auto'`` compares: every one the estimators' networks offer
AUTO_ACTIVATIONS = tuple(ACTIVATIONS)


def is_auto(value):
    """Whether an architecture argument (``depth``, ``activation``) asks to be chosen by the
    evidence."""
    return isinstance(value, str) and value == "auto"


class PrecisionWarning(UserWarning):
    """float64 data met ``jax_enable_x64=False``: the computation runs in float32."""


def warn_float32_once(x):
    """Warn once per process when float64 data will be computed in float32."""
    if x.dtype == np.float64 and not jax.config.read("jax_enable_x64") and \
            "f64" not in _warned:
        _warned.add("f64")
        warnings.warn("ntkgp estimator: the data are float64 but JAX runs in float32 "
                      "(jax_enable_x64 is off), so kernels and solves use float32. For float64 "
                      "accuracy call jax.config.update('jax_enable_x64', True) at start-up "
                      "(or set JAX_ENABLE_X64=1).", PrecisionWarning, stacklevel=3)


def compute_dtype(x):
    """float32 input stays float32; anything else is computed in JAX's default float."""
    if x.dtype == np.float32:
        return np.dtype(np.float32)
    return np.dtype(np.float64 if jax.config.read("jax_enable_x64") else np.float32)


def _seed(random_state):
    """The random features' seed: ``random_state`` when it is an integer, else 0."""
    return int(random_state) if isinstance(random_state, (int, np.integer)) else 0


def _above(value, than):
    """Whether evidence ``value`` is larger than ``than`` (NaN or ``None``: never)."""
    return value is not None and (than is None or not value <= than) and value == value


def check_architecture(est):
    """Validate the architecture arguments (at fit, as scikit-learn does)."""
    if est.network is not None:
        for name in ("depth", "activation"):
            if is_auto(getattr(est, name)):
                raise ValueError(f"{name}='auto' chooses the {name} of the estimator's own "
                                 f"network; with `network=` there is no {name} to choose. "
                                 "Compare networks by `log_marginal_likelihood_value_` or "
                                 "cross-validation.")
        if not (isinstance(est.network, Layer) or callable(est.network)):
            raise TypeError("`network` must be None, an ntkgp.nn network (Layer), or a "
                            "function network(W_std, b_std) -> Layer; got "
                            f"{type(est.network).__name__}.")
        return
    if est.activation not in ACTIVATIONS and not is_auto(est.activation):
        raise ValueError(f"`activation` must be one of {sorted(ACTIVATIONS)} or 'auto'; got "
                         f"{est.activation!r}. For another architecture pass `network=`.")
    if not is_auto(est.depth):
        checks.check_int(est.depth, "depth", 1)
    checks.check_int(est.width, "width", 1)
    checks.check_choice(est.parameterization, "parameterization", ("ntk", "standard"))
    for name in ("W_std", "b_std"):
        checks.check_nonneg(getattr(est, name), name)


def check_fit_options(est):
    """Validate the options of the fit itself (at fit, as scikit-learn does)."""
    for name, low in (("max_fit_samples", 1), ("n_restarts_optimizer", 0)):
        checks.check_int(getattr(est, name), name, low)
    if est.tile_size is not None:
        checks.check_int(est.tile_size, "tile_size", 1)


class NeuralKernelEstimator(BaseEstimator):
    """Common base: the architecture and training-time arguments; see `NTKRegressor`."""

    #: the posterior this estimator predicts with (fixed per class): 'ntk', the network trained
    #: by gradient descent, or 'nngp', the Bayesian posterior
    mode = "ntk"

    def __init__(self, activation="relu", *, depth=1, W_std=1.5, b_std=0.05,
                 parameterization="ntk", width=1024, network=None, t=None, diag_reg=1e-2,
                 optimizer="fmin_l_bfgs_b", n_restarts_optimizer=0, max_fit_samples=2000,
                 tile_size=None, solver="auto", n_features=2048, random_state=None):
        self.activation = activation
        self.depth = depth
        self.W_std = W_std
        self.b_std = b_std
        self.parameterization = parameterization
        self.width = width
        self.network = network
        self.t = t
        self.diag_reg = diag_reg
        self.optimizer = optimizer
        self.n_restarts_optimizer = n_restarts_optimizer
        self.max_fit_samples = max_fit_samples
        self.tile_size = tile_size
        self.solver = solver
        self.n_features = n_features
        self.random_state = random_state

    # -- hyperparameters ---------------------------------------------------------------------
    def _free_names(self):
        return ("diag_reg",) if isinstance(self.network, Layer) else NAMES

    def _depth(self):
        """The number of hidden layers: ``depth``, or the one ``depth='auto'`` chose."""
        return self.depth_ if is_auto(self.depth) else self.depth

    def _activation(self):
        """The activation: ``activation``, or the one ``activation='auto'`` chose."""
        return self.activation_ if is_auto(self.activation) else self.activation

    def _auto(self):
        """Whether the architecture is chosen by the evidence (an argument is ``'auto'``)."""
        return is_auto(self.depth) or is_auto(self.activation)

    def _arch(self, hp):
        return dict(activation=self._activation(), depth=self._depth(), W_std=hp["W_std"],
                    b_std=hp["b_std"], parameterization=self.parameterization, width=self.width,
                    network=self.network)

    def _lml(self, names):
        """``(theta, fixed, x, y) -> log p(y)``, jitted and cached per architecture."""
        return lml_function(self.mode, self._activation(), self._depth(), self.parameterization,
                            self.width, self.network, tuple(names))

    def _fixed(self, dtype):
        return jnp.asarray([self.W_std, self.b_std, self.diag_reg], dtype)

    def _program(self, x, y):
        """The `EvidenceProgram` of this architecture on the rows ``x``, ``y``."""
        return EvidenceProgram(self._lml(self._free_names())[1], self._fixed(x.dtype), x, y)

    def _fit_hyperparameters(self, x, y, rng):
        """``(hyperparameters, log evidence, program)``: the free hyperparameters at the
        maximum of the log marginal likelihood of ``y`` (in log space, L-BFGS-B with
        closed-form gradients, from the given values and ``n_restarts_optimizer`` random
        starts), at the activation ``activation_`` and depth ``depth_``, and the
        `EvidenceProgram` that found them; the evidence is ``None`` when nothing was fitted
        and the architecture is given."""
        names = self._free_names()
        hp = {"W_std": float(self.W_std), "b_std": float(self.b_std),
              "diag_reg": float(self.diag_reg)}
        if self.optimizer is None and not self._auto():
            return hp, None, None
        program = self._program(x, y)
        if self.optimizer is None:
            return hp, evidence_at(program, [hp[n] for n in names]), program
        which = f", {self.activation_}, depth {self.depth_}" if self._auto() else ""
        out = maximize_evidence(
            program, names, [hp[n] for n in names], int(self.n_restarts_optimizer), rng,
            f"{type(self).__name__}: marginal likelihood evaluations ({x.shape[0]} rows{which})")
        if out is None:
            self._check_scale(x, hp)
            raise NotPositiveDefiniteError(
                "the kernel of the training data could not be factorized for any "
                "hyperparameters tried; raise `diag_reg`, remove duplicate rows, or enable "
                "x64.")
        hp.update({n: float(np.exp(v)) for n, v in zip(names, out[0])})
        return hp, out[1], program

    # -- fitting and predicting --------------------------------------------------------------
    def _validate_fit(self, X, y, **kw):
        check_architecture(self)
        check_fit_options(self)
        if self.t is not None and not (np.isscalar(self.t) and self.t >= 0):
            raise ValueError(f"`t` must be None (trained to convergence) or a number >= 0; "
                             f"got {self.t!r}.")
        checks.check_nonneg(self.diag_reg, "diag_reg")
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], **kw)
        warn_float32_once(X)
        return X.astype(compute_dtype(X)), y

    def _fit_targets(self, X, Y):
        """Fit hyperparameters (and the depth and activation, where ``'auto'``) on at most
        ``max_fit_samples`` rows, and factor the training kernel for targets ``Y``
        ``(N, K)``."""
        Y = Y.astype(X.dtype)
        if self.optimizer not in (None, "fmin_l_bfgs_b"):
            raise ValueError(f"`optimizer` must be 'fmin_l_bfgs_b' or None; got "
                             f"{self.optimizer!r}.")
        rng = check_random_state(self.random_state)
        x, y = X, Y
        if self.optimizer is not None and X.shape[0] > self.max_fit_samples:
            rows = np.sort(rng.choice(X.shape[0], self.max_fit_samples, replace=False))
            x, y = X[rows], Y[rows]
        for stale in ("evidence_by_architecture_", "evidence_by_depth_"):  # of an earlier fit
            self.__dict__.pop(stale, None)
        fits, failed, best = {}, None, None
        for act in AUTO_ACTIVATIONS if is_auto(self.activation) else (self.activation,):
            for depth in AUTO_DEPTHS if is_auto(self.depth) else (int(self.depth),):
                self.activation_, self.depth_ = act, depth
                try:
                    hp, value, program = self._fit_hyperparameters(x, y, rng)
                except NotPositiveDefiniteError as e:  # one candidate: the others may fit
                    if not self._auto():
                        raise
                    failed = e
                    continue
                fits[act, depth] = hp, value
                # the best candidate's program only: its evaluations' kernels are kept
                if best is None or _above(value, fits[best[0]][1]):
                    best = (act, depth), program
        if not fits:
            raise failed
        if self._auto():  # the largest evidence, on the same rows for every candidate
            evidence = {k: float(v) for k, (_, v) in fits.items()}
            self.activation_, self.depth_ = best[0]  # the first of equal ones
            self.evidence_by_architecture_ = evidence
            if is_auto(self.depth):
                self.evidence_by_depth_ = {d: v for (a, d), v in evidence.items()
                                           if a == self.activation_}
        program = best[1] if x is X else None  # not on a subsample of the rows
        return self._factor(X, Y, fits[best[0]][0], program=program)

    def _check_scale(self, X, hp):
        """The kernel of the 16 largest rows at ``hp``: inputs that overflow in this precision
        fail here with a message that says so (`KernelFunction` checks what it computes)."""
        big = np.argsort(np.max(np.abs(X.reshape(len(X), -1)), axis=1))[-16:]
        KernelFunction(self._arch(hp))(X[big])

    def _factor(self, X, Y, hp, alpha=None, solver=None, program=None):
        """Build the posterior of the training kernel at the hyperparameters ``hp``; ``alpha``
        and ``solver`` restore a saved model (its CG solution to start from, and the solver it
        used). Where the fit maximizes the evidence on all the rows, the dense posterior takes
        the training kernels and their factor from its program at ``hp`` (``program``, the
        fit's, or a new one for a saved model: the same numbers either way)."""
        self.targets_ = Y
        self.hyperparameters_ = hp
        self.hyperparameter_names_ = self._free_names()
        self.theta_ = np.log([hp[n] for n in self.hyperparameter_names_])
        self.kernel_ = KernelFunction(self._arch(hp), self.tile_size)
        self.X_train_ = X
        # a saved model's solution is where an iterative solver starts
        solver = solver or self._pick_solver(X.shape[0])
        features = solver in ("features", "nystrom")
        solver = FeatureSolver(int(self.n_features), _seed(self.random_state),
                               "random" if solver == "features" else "nystrom") if features \
            else as_solver(solver, X.shape[0]).starting_from(alpha)
        self.solver_ = solver.name
        if not solver.dense:  # a matrix-free solve never checks the whole kernel
            self._check_scale(X, hp)
        # random features are drawn from the network itself; the other solvers use its kernel
        source = build_network(**self._arch(hp)) if features else self.kernel_
        if solver.name == "cholesky":  # on padded rows: one compiled program for nearby N
            solved = None
            if (self.optimizer is not None or self._auto()) and \
                    X.shape[0] <= self.max_fit_samples:
                solved = (program or self._program(X, Y)).solved_at(self.theta_)
                if not np.isfinite(solved[0]):  # left to the solver's jitter and its errors
                    solved = None
            self.posterior_, lml = padded_posterior(self.kernel_, X, Y, self.mode,
                                                    hp["diag_reg"], solver, solved)
        else:
            self.posterior_ = Posterior(source, X, Y, mode=self.mode, diag_reg=hp["diag_reg"],
                                        solver=solver, tile_size=self.tile_size)
            lml = float(self.posterior_.log_marginal_likelihood()) \
                if self.posterior_.solver.dense or features else float("nan")
        self.log_marginal_likelihood_value_ = lml
        return self

    def _pick_solver(self, n):
        """'cholesky', 'eigh' (a finite training time) or 'cg' for ``n`` training rows (see
        ``solver``); says when it switches to 'cg'."""
        checks.check_choice(self.solver, "solver",
                            ("auto", "cholesky", "cg", "features", "nystrom"))
        if self.solver in ("features", "nystrom"):
            checks.check_int(self.n_features, "n_features", 1)
        finite_t = self.t is not None and np.isfinite(self.t)
        if self.solver in ("cg", "features", "nystrom") and finite_t:
            raise ValueError(f"solver={self.solver!r} predicts the network trained to "
                             f"convergence (t=None or inf) only; got t={self.t!r}. Use "
                             "solver='cholesky' for a finite training time.")
        if finite_t:
            return "eigh"
        if self.solver != "auto":
            return self.solver
        if n > DENSE_MAX_N:
            warnings.warn(f"{n} training rows > {DENSE_MAX_N}: solving by preconditioned "
                          "conjugate gradients on kernel tiles (solver='cg'; no N x N matrix is "
                          "held; predictive variances cost one more solve, full covariances "
                          "are not available). Pass solver='cholesky' for the exact "
                          "factorization.", UserWarning, stacklevel=4)
            return "cg"
        return "cholesky"

    def _check_x(self, X):
        check_is_fitted(self, "posterior_")
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return X.astype(self.X_train_.dtype)

    def _latent(self, X, var=False, cov=False, posterior=None, t=None):
        """Mean ``(M, K)`` of the outputs (normalized units) and their variance ``(M,)`` or
        covariance ``(M, M)`` (shared by the ``K`` outputs), from ``posterior`` (default the
        fitted one, at the model's time ``t``)."""
        X = self._check_x(X)
        m = X.shape[0]
        if posterior is None:
            posterior, t = self.posterior_, self.t
        # padded test rows (dropped below): a bounded set of shapes for any number of rows
        out = posterior.predict(pad_inputs(X), t, return_var=var, return_cov=cov)
        if var or cov:
            mean, second = out
            second = np.asarray(second)
            return np.asarray(mean)[:m], second[:m, :m] if cov else second[:m]
        return np.asarray(out)[:m], None

    def log_marginal_likelihood(self, theta=None, eval_gradient=False):
        r"""Log marginal likelihood of the training targets under the GP prior of the model.

        The prior is the NNGP kernel (`NNGPRegressor`) or the NTK used as a GP kernel
        (`NTKRegressor`; its posterior mean is the trained network's mean at
        :math:`t=\infty`), with noise variance ``diag_reg`` times the kernel's mean diagonal,
        summed over the outputs:
        :math:`\log p(Y) = -\tfrac12\sum_k y_k^\top K_\mathrm{reg}^{-1} y_k
        - \tfrac{K}{2}\log\det K_\mathrm{reg} - \tfrac{NK}{2}\log 2\pi` (normalized targets).

        Args:
            theta: log-hyperparameters in the order of ``hyperparameter_names_``; ``None``
                for the fitted value.
            eval_gradient: also return the gradient with respect to ``theta`` (closed form).

        Returns:
            A float, and an array of shape ``(len(theta),)`` when ``eval_gradient``.
        """
        check_is_fitted(self, "posterior_")
        if theta is not None and not self.posterior_.solver.dense:
            raise ValueError(f"this model was solved with solver={self.solver_!r}: its "
                             "training kernel is never held, so the evidence at other "
                             "`theta` is not available; refit with solver='cholesky' (or on a "
                             "subset) to evaluate it.")
        if theta is None:
            if eval_gradient:
                raise ValueError("eval_gradient=True needs `theta`; pass "
                                 "`theta=est.theta_` for the fitted hyperparameters.")
            return self.log_marginal_likelihood_value_
        theta = np.asarray(theta, np.float64)
        names = self.hyperparameter_names_
        if theta.shape != (len(names),):
            raise ValueError(f"`theta` must have shape ({len(names)},), the logs of "
                             f"{', '.join(names)}; got shape {theta.shape}.")
        x = self.X_train_
        y = np.asarray(self.targets_)
        value, value_and_grad = self._lml(names)
        args = (jnp.asarray(theta, x.dtype), self._fixed(x.dtype))
        if eval_gradient:
            v, g = value_and_grad(*args, *pad_rows(x, y))[:2]
            return float(v), np.asarray(g, np.float64)
        return float(value(*args, x, y))
