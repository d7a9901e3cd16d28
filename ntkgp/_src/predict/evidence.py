"""The log marginal likelihood of the targets from any factor that gives a log determinant."""

from __future__ import annotations

import jax.numpy as jnp

from ntkgp._src.solve import linalg
from ntkgp._src.solve.features import FeatureFactor


def log_marginal_likelihood(f, y):
    r""":math:`\log p(y)` of ``y`` ``(N, K)`` under :math:`N(0, D)` for the regularized
    kernel ``D`` that ``f`` factors, summed over the ``K`` outputs."""
    n, k = y.shape
    if isinstance(f, FeatureFactor):
        return jnp.asarray(f.log_marginal_likelihood())
    if isinstance(f, linalg.Cholesky):
        white = f.solve_lower(y)
        quad, logdet = jnp.sum(white ** 2), f.logdet()
    elif isinstance(f, linalg.Eigh):
        yv = f.evecs.T @ y
        quad = jnp.sum(yv ** 2 / f.evals[:, None])
        logdet = jnp.sum(jnp.log(f.evals))
    else:
        raise ValueError("the log marginal likelihood needs log det of the kernel, which "
                         "conjugate gradients do not give; use solver='cholesky' (or "
                         "'features').")
    return (-0.5 * quad - 0.5 * k * logdet
            - 0.5 * n * k * jnp.log(2 * jnp.pi).astype(quad.dtype))
