"""The log marginal likelihood of the targets from any factor that gives a log determinant."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ntkgp._src.solve import linalg
from ntkgp._src.solve.features import FeatureFactor


def log_marginal_likelihood(f, y):
    r""":math:`\log p(y)` of ``y`` ``(N, K)`` under :math:`N(0, D)` for the regularized
    kernel ``D`` that ``f`` factors, summed over the ``K`` outputs."""
    if isinstance(f, FeatureFactor):
        return jnp.asarray(f.log_marginal_likelihood())
    if not isinstance(f, (linalg.Cholesky, linalg.Eigh)):
        raise ValueError("the log marginal likelihood needs log det of the kernel, which "
                         "conjugate gradients do not give; use solver='cholesky' (or "
                         "'features').")
    return _dense(f, y)


@jax.jit
def _dense(f, y):
    """`log_marginal_likelihood` of a Cholesky or eigendecomposition: one program (op by op,
    its dozen small operations each compiled on their own at every new shape)."""
    n, k = y.shape
    if isinstance(f, linalg.Cholesky):
        white = f.solve_lower(y)
        quad, logdet = jnp.sum(white ** 2), f.logdet()
    else:
        yv = f.evecs.T @ y
        quad = jnp.sum(yv ** 2 / f.evals[:, None])
        logdet = jnp.sum(jnp.log(f.evals))
    return (-0.5 * quad - 0.5 * k * logdet
            - 0.5 * n * k * jnp.log(2 * jnp.pi).astype(quad.dtype))


def log_marginal_likelihood_gradients(k, y, diag_reg, mask=None):
    r"""``(log p(y), dk, d_diag_reg, k_masked, factor)``: the evidence of ``y`` ``(N, K)``
    under :math:`N(0, D)`, :math:`D = \operatorname{sym}(k) + \lambda \bar k I` (``diag_reg``
    :math:`\lambda` relative to the mean diagonal :math:`\bar k`, as `linalg.cholesky`), with
    its gradients in closed form:

    .. math:: G = \tfrac12 (\alpha\alpha^\top - K D^{-1}), \quad \alpha = D^{-1} y, \qquad
              \frac{\partial \log p}{\partial k} = G + \frac{\lambda \operatorname{tr} G}{N} I,
              \qquad \frac{\partial \log p}{\partial \lambda} = \bar k \operatorname{tr} G.

    One Cholesky factor and one solve with the identity: half the time of reverse mode through
    the factorization (N=1200, float32: 0.047 s against 0.092 s), and a smaller program to
    compile. For use inside ``jax.jit``; a kernel that cannot be factorized gives NaN. The
    kernel as solved and its factor come out too, so that a posterior at these
    hyperparameters needs no second factorization.

    ``mask`` marks the rows that are data; the others are padding (so that data sets of
    nearby sizes share one compiled program). Padded rows of the kernel are :math:`\bar k` on
    the diagonal and 0 elsewhere (:math:`\bar k` the mean over the data rows), so those of
    ``D`` are :math:`(1 + \lambda) \bar k` there, and padded targets must be 0: the padded
    block then adds :math:`-\tfrac K2 \log((1 + \lambda) \bar k)` per row to the evidence,
    which is taken off, and its part of the derivatives cancels that term's exactly, so the
    value and the gradients are those of the data rows alone.

    Args:
        k: the prior kernel ``(N, N)``.
        y: targets ``(N, K)`` (0 on padded rows).
        diag_reg: :math:`\lambda \ge 0`.
        mask: ``None`` (all rows are data) or booleans ``(N,)``.

    Returns:
        A scalar, an ``(N, N)`` array (0 on padded rows and columns), a scalar, the kernel
        ``(N, N)`` that was solved (symmetrized, padded rows as above: :math:`D` less
        ``factor.added`` on its diagonal) and the `linalg.Cholesky` of :math:`D` (``added``
        :math:`= \lambda \bar k`).
    """
    n_all, outputs = y.shape
    data = jnp.ones(n_all, k.dtype) if mask is None else jnp.asarray(mask, k.dtype)
    n = jnp.sum(data)
    k_masked, mean_diag = mask_padded(0.5 * (k + k.T), data)
    added = diag_reg * mean_diag
    f = linalg.cholesky(k_masked + added * jnp.eye(n_all, dtype=k.dtype), 0.0,
                        symmetrize=False)
    alpha = f.solve(y)
    inverse = f.solve(jnp.eye(n_all, dtype=k.dtype))
    padded_logdet = (n_all - n) * jnp.log(mean_diag + added)
    value = (-0.5 * jnp.sum(alpha * y) - 0.5 * outputs * (f.logdet() - padded_logdet)
             - 0.5 * n * outputs * jnp.log(2 * jnp.pi).astype(k.dtype))
    g = 0.5 * (alpha @ alpha.T - outputs * inverse)
    trace = jnp.sum(jnp.diagonal(g) * data)
    dk = data[:, None] * data[None, :] * g + jnp.diag(data * (diag_reg * trace / n))
    factor = linalg.Cholesky(f.chol, f.chol_t, added.astype(k.dtype))
    return value, dk, mean_diag * trace, k_masked, factor


def mask_padded(k, data):
    r"""``(k_masked, mean)``: the square kernel ``k`` ``(N, N)`` of padded rows with its data
    block kept, the padded rows and columns 0 and the padded diagonal the data rows' mean
    diagonal ``mean`` (``data``: 1 on data rows, 0 on padded ones); for use inside
    ``jax.jit``."""
    mean = jnp.sum(jnp.diagonal(k) * data) / jnp.sum(data)
    both = data[:, None] * data[None, :]
    return both * k + jnp.diag((1 - data) * mean), mean
