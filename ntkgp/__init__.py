"""ntkgp: neural tangent kernels and neural-network Gaussian processes on current JAX.

Every public module is an attribute of the package (``ntkgp.nn``, ``ntkgp.predict``, ...);
each is imported the first time it is used, so ``import ntkgp`` stays quick.
"""

import importlib

from ntkgp._version import __version__ as __version__

#: the public modules, in the order data flows through them
MODULES = ("nn", "kernels", "features", "empirical", "batching", "distributed", "linalg",
           "predict", "train", "compare", "experiments", "estimator", "data", "cli")


def __getattr__(name):
    if name in MODULES:
        return importlib.import_module(f"ntkgp.{name}")
    raise AttributeError(f"module 'ntkgp' has no attribute {name!r}; its modules are "
                         f"{', '.join(MODULES)}.")


def __dir__():
    return sorted(list(globals()) + list(MODULES))
