"""Finite-width (empirical) NTK and NNGP of any ``f(params, x)``, and Monte-Carlo averages."""

from ntkgp._src.empirical.empirical import choose_implementation as choose_implementation
from ntkgp._src.empirical.empirical import empirical_kernel_fn as empirical_kernel_fn
from ntkgp._src.empirical.empirical import empirical_nngp_fn as empirical_nngp_fn
from ntkgp._src.empirical.empirical import empirical_ntk_fn as empirical_ntk_fn
from ntkgp._src.empirical.monte_carlo import monte_carlo_kernel as monte_carlo_kernel
from ntkgp._src.empirical.ntk_vp import empirical_ntk_vp_fn as empirical_ntk_vp_fn
