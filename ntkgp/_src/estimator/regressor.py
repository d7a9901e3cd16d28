r"""`NTKRegressor` and `NNGPRegressor`: infinitely wide networks as scikit-learn regressors."""

from __future__ import annotations

import numpy as np
import scipy.stats
from sklearn.base import RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ntkgp._src import checks
from ntkgp._src.estimator.base import NeuralKernelEstimator

ARGS_DOC = r"""
    Args:
        activation: ``'relu'``, ``'erf'``, ``'gelu'``, ``'abs'`` or ``'sin'``, or ``'auto'``:
            the one of ``AUTO_ACTIVATIONS`` (all five) whose fitted hyperparameters give the
            largest log marginal likelihood, all on the same rows (one hyperparameter fit per
            activation; with ``depth='auto'`` too, one per pair: 25).
        depth: number of hidden layers, or ``'auto'``: the depth from ``AUTO_DEPTHS`` (1 to
            5) whose fitted hyperparameters give the largest log marginal likelihood, all on
            the same rows (one hyperparameter fit per depth: five times the cost of one).
        W_std: weight scale :math:`\sigma_w` of every layer (start of the fit).
        b_std: bias scale :math:`\sigma_b` of every layer (start of the fit).
        parameterization: ``'ntk'`` or ``'standard'``.
        width: hidden width; only the standard-parameterization NTK depends on it.
        network: instead of the arguments above, an ``ntkgp.nn`` network with one output
            (its hyperparameters are then fixed and only ``diag_reg`` is fitted), or a
            function ``network(W_std, b_std) -> Layer`` (all three are fitted; define it at
            module level so that the estimator pickles).
        t: training time :math:`t = \eta \times \text{steps}` of gradient flow on the loss
            :math:`\frac{1}{2NK}\sum\|f(x_i)-y_i\|^2`; ``None`` (default) or ``inf`` for
            convergence.
        diag_reg: noise / ridge :math:`\lambda \ge 0`, relative to the mean diagonal of the
            training kernel (start of the fit).
        optimizer: ``'fmin_l_bfgs_b'`` to fit ``W_std``, ``b_std`` and ``diag_reg`` by
            maximizing the log marginal likelihood (JAX gradients, bounds ``BOUNDS``), or
            ``None`` to use them as given.
        n_restarts_optimizer: extra fits from random log-uniform starts within the bounds.
        max_fit_samples: the hyperparameters are fitted on at most this many training rows (a
            random subset); the final model uses all rows.
        tile_size: rows per kernel tile; ``None`` computes kernels whole up to 2048 rows and
            in memory-sized tiles (with a progress bar) beyond.
        solver: ``'cholesky'`` (exact factorization of the training kernel), ``'cg'``
            (preconditioned conjugate gradients on kernel tiles recomputed on the fly:
            memory ``O(N)``, for N too large to factor; `ntkgp.linalg.CGSolver`), or
            ``'auto'`` (default): ``'cg'`` above 20,000 training rows when ``t`` is
            ``None``/``inf``, with a warning saying so; or ``'features'``: regression on
            ``n_features`` random features of the network (`ntkgp.features.FeatureMap`; time
            :math:`O(N D^2)`, memory :math:`O(D^2)`, for millions of rows; NTK
            parameterization; hyperparameters still fitted on the exact kernel of
            ``max_fit_samples`` rows); or ``'nystrom'``: the same on Nyström features of the
            exact kernel on ``n_features`` landmark rows (`ntkgp.features.NystromMap`; any
            architecture). A finite ``t`` is always solved by eigendecomposition.
        n_features: random directions per activation layer for ``solver='features'``, or
            landmarks for ``'nystrom'`` (drawn with ``random_state`` when it is an integer,
            else seed 0).
        random_state: seed or ``RandomState`` for the subset and the restarts.
"""


_NORMALIZE_DOC = """\
        normalize_y: standardize each target before fitting and scale predictions back
            (the kernels have no amplitude of their own; default ``True``)."""

_REG_ATTRS = """

    Attributes:
        hyperparameters_: dict of the fitted ``W_std``, ``b_std``, ``diag_reg``.
        theta_: their logs, in the order ``hyperparameter_names_``.
        log_marginal_likelihood_value_: at ``theta_``.
        posterior_: the `ntkgp.predict.Posterior` of the training kernel at the fitted
            hyperparameters (mode ``mode``), which makes every prediction. With
            ``'cholesky'`` its training rows are padded to a few sizes (the padded rows carry
            no weight; see the hyperparameter how-to) so that fits of nearby sizes share
            compiled programs.
        solver_: ``'cholesky'``, ``'eigh'``, ``'cg'``, ``'features'`` or ``'nystrom'``.
            With ``'cg'``, ``log_marginal_likelihood_value_`` is NaN (no log-determinant is
            computed).
        kernel_: the kernel function of the fitted architecture.
        depth_: the number of hidden layers used (``depth``, or the one ``'auto'`` chose).
        activation_: the activation used (``activation``, or the one ``'auto'`` chose).
        evidence_by_depth_: for ``depth='auto'``, ``{depth: log marginal likelihood}`` at each
            depth's fitted hyperparameters (with the chosen activation).
        evidence_by_architecture_: when either is ``'auto'``,
            ``{(activation, depth): log marginal likelihood}`` of every candidate (one
            whose kernel could not be factorized is left out).
        X_train_, y_mean_, y_scale_, n_features_in_.
"""


class _Regressor(RegressorMixin, NeuralKernelEstimator):

    def __init__(self, activation="relu", *, depth=1, W_std=1.5, b_std=0.05,
                 parameterization="ntk", width=1024, network=None, t=None, diag_reg=1e-2,
                 normalize_y=True, optimizer="fmin_l_bfgs_b", n_restarts_optimizer=0,
                 max_fit_samples=2000, tile_size=None, solver="auto", n_features=2048,
                 random_state=None):
        super().__init__(activation, depth=depth, W_std=W_std, b_std=b_std,
                         parameterization=parameterization, width=width, network=network, t=t,
                         diag_reg=diag_reg, optimizer=optimizer,
                         n_restarts_optimizer=n_restarts_optimizer,
                         max_fit_samples=max_fit_samples, tile_size=tile_size, solver=solver,
                         n_features=n_features, random_state=random_state)
        self.normalize_y = normalize_y

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X, y):
        """Fit the hyperparameters (unless ``optimizer=None``) and factor the training kernel.

        Args:
            X: array-like of shape ``(N, d)``.
            y: array-like of shape ``(N,)`` or ``(N, K)``.

        Returns:
            ``self``.
        """
        X, y = self._validate_fit(X, y, multi_output=True, y_numeric=True)
        y = np.asarray(y, np.float64)
        self._y_1d = y.ndim == 1
        Y = y.reshape(len(y), -1)
        if self.normalize_y:
            self.y_mean_ = Y.mean(axis=0)
            scale = Y.std(axis=0)
            self.y_scale_ = np.where(scale > 0, scale, 1.0)
        else:
            self.y_mean_, self.y_scale_ = np.zeros(Y.shape[1]), np.ones(Y.shape[1])
        return self._fit_targets(X, (Y - self.y_mean_) / self.y_scale_)

    def _out(self, a):
        return a[..., 0] if self._y_1d else a

    def predict(self, X, return_std=False, return_cov=False, predictive=False):
        r"""Mean of the outputs at ``X``, and optionally their std or covariance.

        By default the spread is that of the noise-free function. `NNGPRegressor`: the
        Bayesian posterior of the NNGP. `NTKRegressor`: the distribution, over random
        initializations, of infinitely wide networks trained by gradient descent for time
        ``t`` (Lee et al. 2019), which is not a Bayesian posterior and is often far narrower
        than the errors.

        With ``predictive=True`` it is the predictive distribution of new targets
        :math:`y_* = f(x_*) + \varepsilon`: the posterior of the Gaussian process whose
        marginal likelihood was fitted (the NNGP, or the NTK as a GP kernel; the same mean at
        :math:`t = \infty`) plus the fitted noise variance ``noise_variance_``,

        .. math:: \sigma_*^2 = K_{**} - K_{*d}(K_{dd} + \sigma^2 I)^{-1} K_{d*} + \sigma^2.

        This is what an interval for new observations needs (`predict_interval`).

        Args:
            X: array-like of shape ``(M, d)``.
            return_std: also return the standard deviation, ``(M,)`` or ``(M, K)``.
            return_cov: also return the covariance, ``(M, M)`` or ``(M, M, K)`` (the outputs
                share one kernel; with ``normalize_y`` each is scaled by its variance).
            predictive: the spread of new targets, noise included (needs ``t=None``).

        Returns:
            The mean, ``(M,)`` for 1-D training targets or ``(M, K)``; with ``(mean, std)``
            or ``(mean, cov)`` when asked.
        """
        if return_std and return_cov:
            raise ValueError("At most one of return_std or return_cov can be requested.")
        if predictive and not (return_std or return_cov):
            raise ValueError("predictive=True is about the spread of new targets: ask for it "
                             "with return_std=True or return_cov=True (the mean is the same "
                             "either way), or use predict_interval(X, coverage).")
        if predictive:
            if self.t is not None:
                raise ValueError(
                    f"predictive=True gives the Gaussian-process predictive distribution of "
                    f"the trained-to-convergence model; this model predicts at t={self.t!r}. "
                    "Fit with t=None for predictive intervals.")
            post = self.posterior_ if self.mode == "nngp" else self.posterior_.as_mode("ntkgp")
            mean, c = self._latent(X, var=return_std, cov=return_cov, posterior=post)
            noise = float(post.noise)
            c = c + noise if return_std else c + noise * np.eye(c.shape[0], dtype=c.dtype)
        else:
            mean, c = self._latent(X, var=return_std, cov=return_cov)
        mean = self._out(mean * self.y_scale_ + self.y_mean_)
        if return_std:
            return mean, self._out(np.sqrt(c)[:, None] * self.y_scale_)
        if return_cov:
            return mean, self._out(c[:, :, None] * self.y_scale_ ** 2)
        return mean

    def predict_interval(self, X, coverage=0.95):
        r"""Central interval that holds a new target at ``X`` with probability ``coverage``
        under the fitted Gaussian process, noise included: :math:`\mu_* \pm z\,\sigma_*`
        with :math:`z = \Phi^{-1}((1 + \mathrm{coverage})/2)` and :math:`\sigma_*` from
        ``predict(X, return_std=True, predictive=True)``.

        Args:
            X: array-like of shape ``(M, d)``.
            coverage: probability in (0, 1), e.g. 0.95.

        Returns:
            ``(lower, upper)``, each ``(M,)`` for 1-D training targets or ``(M, K)``.
        """
        checks.check_scalar(coverage, "coverage")
        if not 0.0 < coverage < 1.0:
            raise ValueError(f"`coverage` must be a probability in (0, 1), e.g. 0.95; got "
                             f"{coverage!r}.")
        mean, std = self.predict(X, return_std=True, predictive=True)
        z = float(scipy.stats.norm.ppf(0.5 + 0.5 * coverage))
        return mean - z * std, mean + z * std

    @property
    def noise_variance_(self):
        r"""The fitted observation-noise variance :math:`\sigma^2` in the targets' units,
        ``(K,)`` (``diag_reg`` times the kernel's mean diagonal, times each output's
        variance with ``normalize_y``)."""
        check_is_fitted(self)
        return float(self.posterior_.noise) * self.y_scale_ ** 2

    def sample_y(self, X, n_samples=1, random_state=0):
        """Draw functions from the predictive distribution at ``X``.

        Args:
            X: array-like of shape ``(M, d)``.
            n_samples: number of draws.
            random_state: seed or ``RandomState``.

        Returns:
            Array of shape ``(M, n_samples)`` for 1-D targets, else ``(M, K, n_samples)``.
        """
        rng = check_random_state(random_state)
        mean, c = self._latent(X, cov=True)
        w, v = np.linalg.eigh(np.asarray(c, np.float64))
        root = v * np.sqrt(np.maximum(w, 0.0))
        z = rng.standard_normal((mean.shape[1], c.shape[0], n_samples))
        f = mean.T[:, :, None] + np.einsum("mr,krs->kms", root, z)  # (K, M, S)
        f = f * self.y_scale_[:, None, None] + self.y_mean_[:, None, None]
        f = np.moveaxis(f, 0, 1)  # (M, K, S)
        return f[:, 0] if self._y_1d else f


class NTKRegressor(_Regressor):
    __doc__ = r"""Regression with infinitely wide networks trained by gradient descent.

    Predicts the mean (and spread over random initializations) of an infinitely wide
    fully connected network trained on MSE for time ``t`` (:math:`\infty` by default): at
    convergence the mean is kernel regression with the NTK :math:`\Theta`,

    .. math:: \mu(x) = \Theta_{x d}(\Theta_{dd} + \lambda \bar\theta I)^{-1} y.

    Hyperparameters are fitted by maximizing the marginal likelihood of the GP whose kernel is
    the NTK (``log_marginal_likelihood``).
""" + ARGS_DOC + _NORMALIZE_DOC + _REG_ATTRS + r"""
    References:
        Jacot et al. 2018, https://arxiv.org/abs/1806.07572; Lee et al. 2019,
        https://arxiv.org/abs/1902.06720; Arora et al. 2020,
        https://arxiv.org/abs/1910.01663.

    Example:
        >>> import numpy as np
        >>> from ntkgp.estimator import NTKRegressor
        >>> X = np.random.default_rng(0).normal(size=(40, 3)); y = np.sin(X[:, 0])
        >>> reg = NTKRegressor(depth=2, optimizer=None).fit(X, y)
        >>> mean, std = reg.predict(X[:5], return_std=True)
        >>> mean.shape, std.shape, reg.score(X, y) > 0.9
        ((5,), (5,), True)
"""
    mode = "ntk"


class NNGPRegressor(_Regressor):
    __doc__ = r"""Gaussian-process regression with the NNGP kernel of an infinitely wide network.

    The exact Bayesian posterior of the network's prior over functions (at ``t=None``);
    a finite ``t`` instead gives an infinitely wide network whose readout layer alone was
    trained for time ``t``.

    .. math:: \mu(x) = K_{xd}(K_{dd} + \lambda \bar k I)^{-1} y, \qquad
              \Sigma = K_{xx} - K_{xd}(K_{dd} + \lambda \bar k I)^{-1}K_{dx}.
""" + ARGS_DOC + _NORMALIZE_DOC + _REG_ATTRS + r"""
    References:
        Lee et al. 2018, https://arxiv.org/abs/1711.00165; Matthews et al. 2018,
        https://arxiv.org/abs/1804.11271.

    Example:
        >>> import numpy as np
        >>> from ntkgp.estimator import NNGPRegressor
        >>> X = np.random.default_rng(0).normal(size=(40, 3)); y = np.sin(X[:, 0])
        >>> gp = NNGPRegressor(depth=2).fit(X, y)
        >>> sorted(gp.hyperparameters_)
        ['W_std', 'b_std', 'diag_reg']
"""
    mode = "nngp"
