"""Analytic infinite-width kernels: the `Kernel` pytree and its helpers.

Each ``ntkgp.nn`` network computes its own kernel with ``net.kernel(x1, x2, get)``.
"""

from ntkgp._src.kernels.kernel import Kernel as Kernel
from ntkgp._src.kernels.kernel import input_kernel as input_kernel
