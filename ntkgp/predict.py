"""What infinitely wide networks predict, from their kernels.

The primary API is `Posterior`: a kernel operator and a solver behind one
``predict(x_test, t, return_var=, return_cov=)``, in one of three modes (``'nngp'`` Bayesian
posterior, ``'ntk'`` network trained by gradient descent, ``'ntkgp'`` NTK-GP). neural-tangents'
functions (`gp_inference`, `gradient_descent_mse_ensemble`, `gradient_descent_mse`,
`max_learning_rate`) keep their signatures and numbers as thin wrappers over it; `cg_inference`
is the shorthand for a posterior solved by conjugate gradients.
"""

from ntkgp._src.predict.common import Gaussian as Gaussian
from ntkgp._src.predict.dynamics import LinearizedDynamics as LinearizedDynamics
from ntkgp._src.predict.dynamics import gradient_descent_mse as gradient_descent_mse
from ntkgp._src.predict.dynamics import max_learning_rate as max_learning_rate
from ntkgp._src.predict.ensemble import Ensemble as Ensemble
from ntkgp._src.predict.ensemble import (
    gradient_descent_mse_ensemble as gradient_descent_mse_ensemble,
)
from ntkgp._src.predict.gp import GPInference as GPInference
from ntkgp._src.predict.gp import gp_inference as gp_inference
from ntkgp._src.predict.iterative import cg_inference as cg_inference
from ntkgp._src.predict.ode import gradient_descent as gradient_descent
from ntkgp._src.predict.ode_ensemble import SampledEnsemble as SampledEnsemble
from ntkgp._src.predict.ode_ensemble import (
    gradient_descent_ensemble as gradient_descent_ensemble,
)
from ntkgp._src.predict.orthant import LogProbability as LogProbability
from ntkgp._src.predict.orthant import log_orthant_probability as log_orthant_probability
from ntkgp._src.predict.posterior import Posterior as Posterior
