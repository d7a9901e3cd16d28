"""Finite-width training on MSE (full-batch GD, SGD, momentum) and the linearized model."""

from ntkgp._src.train import Centered as Centered
from ntkgp._src.train import History as History
from ntkgp._src.train import Linearized as Linearized
from ntkgp._src.train import center as center
from ntkgp._src.train import default_learning_rate as default_learning_rate
from ntkgp._src.train import linearize as linearize
from ntkgp._src.train import make_optimizer as make_optimizer
from ntkgp._src.train import mse_loss as mse_loss
from ntkgp._src.train import ntk_drift as ntk_drift
from ntkgp._src.train import train as train
