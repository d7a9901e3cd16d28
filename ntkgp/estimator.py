"""scikit-learn estimators on neural kernels: regressors and classifiers built on the NTK and
NNGP of infinitely wide networks, a scikit-learn ``Kernel`` adapter, and model files that hold
data only (`save_model`/`load_model`)."""

from ntkgp._src.estimator.base import AUTO_ACTIVATIONS as AUTO_ACTIVATIONS
from ntkgp._src.estimator.base import AUTO_DEPTHS as AUTO_DEPTHS
from ntkgp._src.estimator.base import BOUNDS as BOUNDS
from ntkgp._src.estimator.base import PrecisionWarning as PrecisionWarning
from ntkgp._src.estimator.classifier import NNGPClassifier as NNGPClassifier
from ntkgp._src.estimator.classifier import NTKClassifier as NTKClassifier
from ntkgp._src.estimator.persist import ModelFileError as ModelFileError
from ntkgp._src.estimator.persist import SavedModel as SavedModel
from ntkgp._src.estimator.persist import load_model as load_model
from ntkgp._src.estimator.persist import read_model as read_model
from ntkgp._src.estimator.persist import save_model as save_model
from ntkgp._src.estimator.regressor import NNGPRegressor as NNGPRegressor
from ntkgp._src.estimator.regressor import NTKRegressor as NTKRegressor
from ntkgp._src.estimator.sk_kernel import NeuralKernel as NeuralKernel
