"""ntkgp: neural tangent kernels and neural-network Gaussian processes on current JAX."""

from ntkgp import compare as compare
from ntkgp import experiments as experiments
from ntkgp import kernels as kernels
from ntkgp import linalg as linalg
from ntkgp import nn as nn
from ntkgp import predict as predict
from ntkgp import train as train
from ntkgp._version import __version__ as __version__
