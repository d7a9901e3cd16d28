r"""Posterior moments on random features (`ntkgp.linalg.FeatureSolver`), in feature space.

With driving features :math:`\Phi` (``N x D``), :math:`A = (\Phi^\top\Phi + \sigma^2 I)^{-1}`
and the weights :math:`w = A\Phi^\top y`, the mean at :math:`x` is :math:`\phi_x^\top w`.
Covariances:

- ``'nngp'``/``'ntkgp'`` (prior = driving kernel):
  :math:`\phi_x^\top\phi_{x'} - \phi_x^\top\Phi^\top\Phi A\phi_{x'} =
  \sigma^2\,\phi_x^\top A\,\phi_{x'}`;
- ``'ntk'`` (prior: the NNGP features :math:`\Psi`): with :math:`C = \Phi^\top\Psi`,
  :math:`\Sigma = R^\top R`, :math:`R = \Psi_x^\top - C^\top A\,\Phi_x^\top`, which expands to
  :math:`\mathcal K_{xx} + z^\top\mathcal K z - 2\mathcal K_{xX} z` with
  :math:`z = (\Theta + \sigma^2 I)^{-1}\Theta_{Xx}` as for the exact kernels.

Nothing of size ``N`` is touched: test features cost one pass over the test rows, a block
at a time (for means and variances, memory of one block of features).
"""

from __future__ import annotations

import numpy as np

from ntkgp._src import checks
from ntkgp._src.features.rows import is_lazy, lazy_like


def predict(post, x_test, k_test_train, want):
    """``(mean (M, K), var (M,) / cov (M, M) / None)`` of a posterior on random features, in
    blocks of test rows (``x_test`` may be `LazyRows`-like: read span by span)."""
    if k_test_train is not None:
        raise ValueError("this posterior was solved on random features (solver='features'): "
                         "pass test inputs `x_test`, not test kernels.")
    f = post.factor
    fmap, drive = f.feature_map, f.op.get
    if is_lazy(x_test):
        x_test = lazy_like(x_test, post.x_train.shape[1:], "x_test")
    else:
        x_test, _ = checks.check_inputs(x_test, post.x_train[:1], ndim=None)
    x_test = x_test.astype(post.x_train.dtype)
    means, seconds = [], []
    for _, _, feats in fmap.chunks(x_test, "ntk" in (drive, post.mode), f.solver.progress):
        phi = np.asarray(getattr(feats, drive), np.float64)
        means.append(phi @ f.weights)
        if want is None:
            continue
        if post.mode == "ntk":
            r = np.asarray(feats.nngp, np.float64).T - f.cross.T @ f.solve(phi.T)
        else:
            r = f.solve_lower(phi.T)
        seconds.append(np.sum(r * r, axis=0) if want == "var" else r)
    mean = np.concatenate(means)
    if want is None:
        return mean, None
    r_scale = 1.0 if post.mode == "ntk" else float(f.added)
    if want == "var":
        return mean, r_scale * np.concatenate(seconds)
    r = np.concatenate(seconds, axis=1)
    return mean, r_scale * (r.T @ r)
