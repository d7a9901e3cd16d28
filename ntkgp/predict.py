"""Closed-form predictions of infinitely wide networks: Bayesian posterior (NNGP/NTK) and
gradient-descent training on MSE at any time; the linearized dynamics of one given network."""

from ntkgp._src.predict.common import Gaussian as Gaussian
from ntkgp._src.predict.dynamics import LinearizedDynamics as LinearizedDynamics
from ntkgp._src.predict.dynamics import gradient_descent_mse as gradient_descent_mse
from ntkgp._src.predict.dynamics import max_learning_rate as max_learning_rate
from ntkgp._src.predict.ensemble import Ensemble as Ensemble
from ntkgp._src.predict.ensemble import (
    gradient_descent_mse_ensemble as gradient_descent_mse_ensemble,
)
from ntkgp._src.predict.gp import Posterior as Posterior
from ntkgp._src.predict.gp import gp_inference as gp_inference
from ntkgp._src.predict.iterative import IterativePosterior as IterativePosterior
from ntkgp._src.predict.iterative import cg_inference as cg_inference
from ntkgp._src.predict.orthant import LogProbability as LogProbability
from ntkgp._src.predict.orthant import log_orthant_probability as log_orthant_probability
