"""Finite-width training on any loss (full-batch GD, SGD, momentum, Adam) and the linearized
model."""

from ntkgp._src.train.losses import cross_entropy_loss as cross_entropy_loss
from ntkgp._src.train.losses import curvature_bound as curvature_bound
from ntkgp._src.train.losses import loss_curvature as loss_curvature
from ntkgp._src.train.losses import mse_loss as mse_loss
from ntkgp._src.train.models import Centered as Centered
from ntkgp._src.train.models import Linearized as Linearized
from ntkgp._src.train.models import center as center
from ntkgp._src.train.models import linearize as linearize
from ntkgp._src.train.models import taylor_expand as taylor_expand
from ntkgp._src.train.training import History as History
from ntkgp._src.train.training import default_learning_rate as default_learning_rate
from ntkgp._src.train.training import make_optimizer as make_optimizer
from ntkgp._src.train.training import ntk_drift as ntk_drift
from ntkgp._src.train.training import train as train
