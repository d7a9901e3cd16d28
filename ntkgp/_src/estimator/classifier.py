r"""`NTKClassifier` and `NNGPClassifier`: kernel regression on one-hot targets (the protocol of
Arora et al. 2020), with class probabilities from the predictive Gaussian."""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr
from sklearn.base import ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d

from ntkgp._src.estimator.base import NeuralKernelEstimator
from ntkgp._src.estimator.regressor import ARGS_DOC

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(48)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def argmax_probabilities(mean, std, chunk=1024):
    r"""``P(class c has the largest output)`` for independent Gaussian outputs with means
    ``mean`` ``(M, C)`` and a common std ``std`` ``(M,)`` per row:

    .. math:: p_c = \mathbb E_{z\sim N(0,1)} \prod_{j\ne c}
              \Phi\Big(\frac{\mu_c-\mu_j}{\sigma} + z\Big)

    by 48-point Gauss–Hermite quadrature, renormalized. Equal variances make :math:`p_c`
    increase with :math:`\mu_c`, so the most probable class is the one with the largest mean.
    """
    out = np.empty_like(mean, dtype=np.float64)
    c = mean.shape[1]
    off = ~np.eye(c, dtype=bool)
    for i in range(0, mean.shape[0], chunk):
        mu = np.asarray(mean[i:i + chunk], np.float64)
        s = np.maximum(np.asarray(std[i:i + chunk], np.float64), 1e-12)
        gap = (mu[:, :, None] - mu[:, None, :]) / s[:, None, None]      # (m, c, j)
        logphi = log_ndtr(gap[..., None] + _NODES)                      # (m, c, j, q)
        logp = np.sum(np.where(off[None, :, :, None], logphi, 0.0), axis=2)  # (m, c, q)
        p = np.exp(logp) @ _WEIGHTS
        out[i:i + chunk] = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-300)
    return out


class _Classifier(ClassifierMixin, NeuralKernelEstimator):

    def fit(self, X, y):
        """Fit on class labels of any type (regression on centered one-hot targets).

        Args:
            X: array-like of shape ``(N, d)``.
            y: labels of shape ``(N,)``.

        Returns:
            ``self``.
        """
        X, y = self._validate_fit(X, y)
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        c = len(self.classes_)
        if c < 2:
            raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes; "
                             f"got only one class ({self.classes_[0]!r}).")
        Y = np.eye(c)[codes] - 1.0 / c
        return self._fit_targets(X, Y)

    def decision_function(self, X):
        """The regression outputs, one per class: ``(M, C)``; for two classes ``(M,)``, the
        second output minus the first (positive means ``classes_[1]``)."""
        mean, _ = self._latent(X)
        return mean[:, 1] - mean[:, 0] if mean.shape[1] == 2 else mean

    def predict(self, X):
        """The class with the largest output: ``(M,)`` labels from ``classes_``."""
        mean, _ = self._latent(X)
        return self.classes_[np.argmax(mean, axis=1)]

    def predict_proba(self, X):
        r"""Probability of each class having the largest output, ``(M, C)``.

        Under the model's predictive Gaussian (`NNGPClassifier`: the posterior; `NTKClassifier`:
        the spread of trained infinitely wide networks over random initializations) the
        outputs at a point are independent with equal variances; this returns
        :math:`P(\arg\max_j f_j(x) = c)`. These are model probabilities, **not calibrated**:
        far from the data they tend to uniform, near the data they follow the fitted noise.
        Calibrate with ``sklearn.calibration.CalibratedClassifierCV`` when it matters.
        The most probable class is always ``predict``'s.
        """
        mean, var = self._latent(X, var=True)
        return argmax_probabilities(mean, np.sqrt(var))

    def predict_log_proba(self, X):
        """``log(predict_proba(X))``."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))


_CLS_ATTRS = r"""
    Attributes:
        classes_: the labels, sorted.
        hyperparameters_: dict of the fitted ``W_std``, ``b_std``, ``diag_reg``.
        theta_: their logs, in the order ``hyperparameter_names_``.
        log_marginal_likelihood_value_: of the one-hot targets at ``theta_``.
        depth_: the number of hidden layers used (``depth``, or the one ``'auto'`` chose).
        activation_: the activation used (``activation``, or the one ``'auto'`` chose).
        evidence_by_depth_: for ``depth='auto'``, ``{depth: log marginal likelihood}`` (with
            the chosen activation).
        evidence_by_architecture_: when either is ``'auto'``,
            ``{(activation, depth): log marginal likelihood}`` of every candidate (one
            whose kernel could not be factorized is left out).
        posterior_, kernel_, X_train_, n_features_in_.
"""


class NTKClassifier(_Classifier):
    __doc__ = r"""Classification by infinitely wide networks trained with MSE on one-hot targets.

    Each class is one output of the network; targets are one-hot vectors minus :math:`1/C`;
    the prediction is the class whose trained output (the NTK kernel-regression mean at
    time ``t``) is largest — the protocol of Arora et al. 2020, who found it competitive with
    random forests on small UCI sets.
""" + ARGS_DOC + _CLS_ATTRS + r"""
    References:
        Arora et al. 2020, https://arxiv.org/abs/1910.01663.

    Example:
        >>> from sklearn.datasets import load_iris
        >>> from ntkgp.estimator import NTKClassifier
        >>> X, y = load_iris(return_X_y=True)
        >>> clf = NTKClassifier(depth=2, optimizer=None).fit(X, y)
        >>> clf.predict_proba(X[:2]).shape, clf.score(X, y) > 0.9
        ((2, 3), True)
"""
    mode = "ntk"


class NNGPClassifier(_Classifier):
    __doc__ = r"""Classification by NNGP regression (the Bayesian posterior) on one-hot targets.

    As `NTKClassifier` with the NNGP kernel: the posterior mean of each class output decides,
    and `predict_proba` uses the posterior covariance.
""" + ARGS_DOC + _CLS_ATTRS + r"""
    References:
        Lee et al. 2018, https://arxiv.org/abs/1711.00165.
"""
    mode = "nngp"
