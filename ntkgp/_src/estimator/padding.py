r"""Training rows padded to a few sizes, so that an estimator compiles a bounded set of programs.

Every XLA program is compiled for the shapes of its inputs and stays in memory for the rest of
the process. Fitting at many training sizes (cross-validation folds, learning curves, grid
searches) would otherwise compile the kernel, the factorization and the prediction programs
once per size, until the process runs out of memory maps. The estimators pad their ``N``
training rows to `padded_rows` (16 sizes per doubling) and leave the padded rows out exactly:

- the training kernel's padded rows and columns are zero, except its padded diagonal, which is
  the mean diagonal of the data rows (so the relative noise ``diag_reg`` is unchanged), and the
  padded targets are zero; the regularized kernel is block diagonal, so the data rows' solve,
  factor and evidence are those of the data alone (the evidence is corrected for the padded
  block's own term);
- kernels of test points against the padded rows are zero in the padded columns, so the padded
  rows carry no weight in any mean, variance or covariance.

Test points are padded the same way (`pad_inputs`) and the padded rows' predictions dropped.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src.predict.common import DRIVER, PRIOR
from ntkgp._src.predict.evidence import mask_padded
from ntkgp._src.predict.posterior import Posterior
from ntkgp._src.solve.solvers import FactoredSolver
from ntkgp._src.util import check_fits_in_memory
from ntkgp._src.util import pad_rows as pad_to


def padded_rows(n: int) -> int:
    """The row count ``n`` data rows are padded to: the next multiple of 1/16 of the power of
    two below ``n`` (of 8 below 128), so at most 6% more rows (12% more kernel work) and 16
    sizes per doubling: the folds of a cross-validation (sizes within a row of each other)
    almost always share one."""
    step = max(8, 2 ** (max(int(n).bit_length() - 1, 0) - 4))
    return -(-int(n) // step) * step


def pad_inputs(x):
    """``x`` ``(N, ...)`` padded to `padded_rows` rows that repeat its last row (`util.pad_rows`:
    real data, so every kernel entry stays finite)."""
    return pad_to(x, padded_rows(x.shape[0]))


def pad_rows(x, y):
    """``(x, y, mask)`` padded to `padded_rows` (`pad_inputs`; padded targets are 0), ``mask``
    True on the data rows."""
    n = x.shape[0]
    x = pad_inputs(x)
    mask = np.arange(x.shape[0]) < n
    y = np.concatenate([y, np.zeros((x.shape[0] - n,) + y.shape[1:], y.dtype)])
    return x, y, mask


@jax.jit
def _mask_square(parts, n):
    """``(masked, means)``: `evidence.mask_padded` of each square kernel of padded rows."""
    data = (jnp.arange(next(iter(parts.values())).shape[0]) < n)
    out = {g: mask_padded(k, data.astype(k.dtype)) for g, k in parts.items()}
    return {g: v[0] for g, v in out.items()}, {g: v[1] for g, v in out.items()}


@jax.jit
def _mask_columns(parts, n):
    """Kernels against padded rows with the padded columns zero."""
    def one(k):
        valid = jnp.arange(k.shape[1]) < n
        return jnp.where(valid.reshape((1, -1) + (1,) * (k.ndim - 2)), k, 0)
    return jax.tree.map(one, parts)


class PaddedKernel:
    """``kernel_fn(x1, x2, get)`` of a posterior on padded training rows: against the training
    rows (``x2`` given) the padded columns are zero; a kernel of test points with themselves
    (``x2=None``) is unchanged. Picklable when ``kernel`` is."""

    def __init__(self, kernel, n: int):
        self.inner = kernel  # not `.kernel`: that names a network's kernel method
        self.n = int(n)

    def __call__(self, x1, x2=None, get=("nngp", "ntk")):
        out = self.inner(x1, x2, get)
        if x2 is None or x2.shape[0] == self.n:
            return out
        parts = {g: getattr(out, g) for g in ("nngp", "ntk") if getattr(out, g) is not None}
        return out.replace(**_mask_columns(parts, self.n))


def padded_posterior(kernel, x, y, mode, diag_reg, solver, solved=None):
    """``(posterior, log evidence)``: the dense `Posterior` of ``kernel`` on ``x`` ``(N, d)``
    and targets ``y`` ``(N, K)`` built on rows padded to `padded_rows`, which predicts exactly
    as the one on the data rows; the evidence is that of the data rows. ``solved``: the
    evidence, the padded training kernels and their factor computed already at these
    hyperparameters (by `network.lml_function`'s program), or ``None`` to compute them here
    with ``solver``."""
    n = x.shape[0]
    xp, yp, _ = pad_rows(x, y)
    if solved is not None:
        value, kernels, factor = solved
        post = Posterior.from_kernels(kernels, yp, mode=mode, solver=FactoredSolver(factor),
                                      diag_reg=diag_reg, kernel_fn=PaddedKernel(kernel, n),
                                      x_train=xp)
        return post, value
    kinds = tuple(sorted({DRIVER[mode], PRIOR[mode]}))
    check_fits_in_memory(xp.shape[0], xp.dtype, len(kinds) + solver.work_matrices,
                         f"the training kernels ({', '.join(kinds)}) and their factorization "
                         f"({n} rows padded to {xp.shape[0]})")
    k = kernel(xp, None, kinds)
    parts, means = _mask_square({g: getattr(k, g) for g in kinds}, n)
    # a Kernel of x with itself keeps its flag of exact symmetry (no symmetrizing copy)
    post = Posterior.from_kernels(k.replace(**parts), yp, mode=mode, solver=solver,
                                  diag_reg=diag_reg, kernel_fn=PaddedKernel(kernel, n),
                                  x_train=xp)
    value = float(post.log_marginal_likelihood())
    extra = xp.shape[0] - n
    if extra:  # the padded block's own term: zero targets of variance (mean diagonal + noise)
        var = float(means[DRIVER[mode]]) + float(post.noise)
        value += 0.5 * y.shape[1] * extra * (np.log(2 * np.pi) + np.log(var))
    return post, value
