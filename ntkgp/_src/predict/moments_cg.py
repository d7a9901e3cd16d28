r"""Posterior moments from a conjugate-gradient solve: :math:`\mu = D_{xX}\alpha` with
:math:`\alpha = (D + \sigma^2 I)^{-1} y`, and variances by one block solve per
``VARIANCE_ROWS`` test points (memory ``O(N \times`` ``VARIANCE_ROWS``)).

Variances: ``'nngp'``/``'ntkgp'``: :math:`k_{xx} - k_{xX} (K + \sigma^2 I)^{-1} k_{Xx}`;
``'ntk'``: the variance of the infinite ensemble trained to convergence,
:math:`\mathcal K_{xx} + z^\top \mathcal K z - 2\, \mathcal K_{xX} z` with
:math:`z = (\Theta + \sigma^2 I)^{-1}\Theta_{Xx}` and :math:`\mathcal K` the NNGP.
"""

from __future__ import annotations

import numpy as np

from ntkgp._src import checks
from ntkgp._src.predict.common import DRIVER, PRIOR, kernel_part
from ntkgp._src.scale import tiles


def predict(post, x_test, k_test_train, k_test_test, want):
    """``(mean (M, K), var (M,) or None)`` of a posterior solved by conjugate gradients, from
    test inputs (its operator recomputes the test kernels) or given test kernels."""
    n = post.y_train.shape[0]
    d_op = post.factor.op
    if k_test_train is None:
        if not hasattr(d_op, "cross"):
            raise ValueError("this posterior's kernel is stored, not recomputed: pass the test "
                             "kernels (`k_test_train=`, and `k_test_test=` for variances).")
        x_test, _ = checks.check_inputs(x_test, None, ndim=None)
        mean = d_op.cross(x_test, post.alpha)
        if want is None:
            return mean, None
        var = np.concatenate([_input_variances(post, x_test[a:b])
                              for a, b in tiles.row_chunks(len(x_test), tiles.VARIANCE_ROWS)])
        return mean, np.maximum(var, 0.0)
    d_td = np.asarray(kernel_part(k_test_train, DRIVER[post.mode], "`k_test_train`"),
                      np.float64)
    if d_td.ndim != 2 or d_td.shape[1] != n:
        raise ValueError(f"`k_test_train` must have shape (M, {n}), test points against the "
                         f"{n} training points; got {d_td.shape}.")
    mean = d_td @ post.alpha
    if want is None:
        return mean, None
    if k_test_test is None:
        raise ValueError("variances need the test kernel `k_test_test` too (its diagonal, "
                         "shape (M,), is enough).")
    p_tt = np.asarray(kernel_part(k_test_test, PRIOR[post.mode], "`k_test_test`"), np.float64)
    p_diag = p_tt if p_tt.ndim == 1 else np.diagonal(p_tt)
    p_td = (np.asarray(kernel_part(k_test_train, "nngp", "`k_test_train`"), np.float64)
            if post.mode == "ntk" else None)
    var = np.concatenate([
        _variances(post, d_td[a:b].T, None if p_td is None else p_td[a:b].T, p_diag[a:b])
        for a, b in tiles.row_chunks(d_td.shape[0], tiles.VARIANCE_ROWS)])
    return mean, np.maximum(var, 0.0)


def _input_variances(post, x_test):
    d_op = post.factor.op
    g = post.prior
    d_xt = d_op.cross_columns(x_test)  # (N, m)
    if post.mode == "ntk":
        return _variances(post, d_xt, g.cross_columns(x_test), g.test_diagonal(x_test))
    return _variances(post, d_xt, None, d_op.test_diagonal(x_test))


def _variances(post, d_xt, p_xt, p_diag):
    """Variances of ``m`` test points from their columns ``D[X, x]`` ``(N, m)`` (and ``P[X,
    x]`` for mode 'ntk') and the prior's diagonal ``(m,)``."""
    z = post.factor.solve(d_xt)
    if post.mode == "ntk":
        return p_diag + np.sum(z * post.prior.matmat(z), axis=0) - 2.0 * np.sum(p_xt * z, axis=0)
    return p_diag - np.sum(d_xt * z, axis=0)
