"""Experiments on the Bayesian picture of SGD: which functions SGD finds against the NNGP
posterior (Mingard et al. 2021), ensembles of trained networks against the closed forms,
sub-network lottery tickets against tangent-space tickets, and where the tangent-space picture
breaks (large learning rates, the laziness scale, the parameterization)."""

from ntkgp._src.checks import OPTIMIZERS as OPTIMIZERS
from ntkgp._src.experiments.bayes import bayes_log_probabilities as bayes_log_probabilities
from ntkgp._src.experiments.bayes import (
    sample_posterior_functions as sample_posterior_functions,
)
from ntkgp._src.experiments.boolean import TARGETS as TARGETS
from ntkgp._src.experiments.boolean import BooleanProblem as BooleanProblem
from ntkgp._src.experiments.boolean import boolean_problem as boolean_problem
from ntkgp._src.experiments.boolean import default_net as default_net
from ntkgp._src.experiments.boolean import function_frequencies as function_frequencies
from ntkgp._src.experiments.boolean import image_problem as image_problem
from ntkgp._src.experiments.boolean import pack_functions as pack_functions
from ntkgp._src.experiments.boolean import unpack_function as unpack_function
from ntkgp._src.experiments.catapult import RateResult as RateResult
from ntkgp._src.experiments.catapult import RateRow as RateRow
from ntkgp._src.experiments.catapult import learning_rate_sweep as learning_rate_sweep
from ntkgp._src.experiments.ensemble_sweep import EnsembleResult as EnsembleResult
from ntkgp._src.experiments.ensemble_sweep import EnsembleRow as EnsembleRow
from ntkgp._src.experiments.ensemble_sweep import ensemble_sweep as ensemble_sweep
from ntkgp._src.experiments.laziness import LazinessResult as LazinessResult
from ntkgp._src.experiments.laziness import laziness_sweep as laziness_sweep
from ntkgp._src.experiments.laziness import parameterization_sweep as parameterization_sweep
from ntkgp._src.experiments.laziness import sweeps_from_json as sweeps_from_json
from ntkgp._src.experiments.laziness import sweeps_to_json as sweeps_to_json
from ntkgp._src.experiments.plots import plot_ensemble as plot_ensemble
from ntkgp._src.experiments.plots import plot_laziness as plot_laziness
from ntkgp._src.experiments.plots import plot_learning_rates as plot_learning_rates
from ntkgp._src.experiments.plots import plot_parameterizations as plot_parameterizations
from ntkgp._src.experiments.plots import plot_sgd_vs_bayes as plot_sgd_vs_bayes
from ntkgp._src.experiments.plots import plot_tickets as plot_tickets
from ntkgp._src.experiments.sgd_bayes import sgd_vs_bayes as sgd_vs_bayes
from ntkgp._src.experiments.sgd_bayes_result import SGDBayesResult as SGDBayesResult
from ntkgp._src.experiments.sgd_bayes_result import SGDBayesRow as SGDBayesRow
from ntkgp._src.experiments.sgd_runs import SGDSample as SGDSample
from ntkgp._src.experiments.sgd_runs import sample_sgd_functions as sample_sgd_functions
from ntkgp._src.experiments.tickets import TicketResult as TicketResult
from ntkgp._src.experiments.tickets import TicketRow as TicketRow
from ntkgp._src.experiments.tickets import lottery_tickets as lottery_tickets
from ntkgp._src.experiments.tickets import magnitude_mask as magnitude_mask
from ntkgp._src.experiments.tickets import random_mask as random_mask
