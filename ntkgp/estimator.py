"""scikit-learn estimators on neural kernels: regressors and classifiers built on the NTK and
NNGP of infinitely wide networks, and a scikit-learn ``Kernel`` adapter."""

from ntkgp._src.estimator.base import BOUNDS as BOUNDS
from ntkgp._src.estimator.base import PrecisionWarning as PrecisionWarning
from ntkgp._src.estimator.classifier import NNGPClassifier as NNGPClassifier
from ntkgp._src.estimator.classifier import NTKClassifier as NTKClassifier
from ntkgp._src.estimator.regressor import NNGPRegressor as NNGPRegressor
from ntkgp._src.estimator.regressor import NTKRegressor as NTKRegressor
from ntkgp._src.estimator.sk_kernel import NeuralKernel as NeuralKernel
