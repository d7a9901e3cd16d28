r"""Bayesian inference with NNGP/NTK kernels: `gp_inference` and its `Posterior`."""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from ntkgp._src import checks
from ntkgp._src.predict import common
from ntkgp._src.solve import linalg

Array = jax.Array
MODES = ("nngp", "ntk", "ntkgp")
_NEEDS = {"nngp": ("nngp",), "ntkgp": ("ntk",), "ntk": ("ntk", "nngp")}


def _parts(k, name):
    """``{'nngp': array|None, 'ntk': array|None}`` from a `Kernel`-like object or an array
    (an array is taken as the prior kernel of a GP, i.e. the 'nngp' slot)."""
    if hasattr(k, "nngp") and hasattr(k, "ntk"):
        return {"nngp": k.nngp, "ntk": k.ntk}
    if k is None:
        raise TypeError(f"`{name}` must be an array or a Kernel, got None.")
    return {"nngp": k, "ntk": None}


def _check_mode(get, parts, what):
    if get not in MODES:
        raise ValueError(f"`get` must be one of {MODES}; got {get!r}. 'nngp': GP posterior "
                         "with the NNGP prior; 'ntkgp': GP posterior with the NTK as prior; "
                         "'ntk': infinitely wide network trained by gradient descent to "
                         "convergence (needs NNGP and NTK).")
    missing = [p for p in _NEEDS[get] if parts.get(p) is None]
    if missing:
        raise ValueError(f"get={get!r} needs the {' and '.join(missing)} kernel of {what}, "
                         f"which was not given. Pass a Kernel computed with get=('nngp', 'ntk') "
                         "(e.g. `net.kernel(x_train, None)`), or use a mode that it has.")


@dataclasses.dataclass(frozen=True)
class Posterior:
    r"""Factored training kernels and targets; predicts at any test points without refactoring.

    Made by `gp_inference`. A pytree (it can be passed through ``jax.jit`` and
    differentiated).

    Attributes:
        y_train: array of shape ``(N, K)``.
        nngp: `ntkgp.linalg.Cholesky` of the regularized NNGP, or ``None``.
        ntk: `ntkgp.linalg.Cholesky` of the regularized NTK, or ``None``.
        k_nngp: array of shape ``(N, N)``, the NNGP of the training points without
            regularization (the prior of the initial outputs in mode ``'ntk'``), or ``None``.
        y_was_1d: static; whether ``y_train`` was given with shape ``(N,)``.
    """

    y_train: Array
    nngp: Optional[linalg.Cholesky]
    ntk: Optional[linalg.Cholesky]
    k_nngp: Optional[Array]
    y_was_1d: bool = False

    def _factor(self, get):
        return self.nngp if get == "nngp" else self.ntk

    def predict(self, k_test_train, k_test_test=None, get: str = "nngp"):
        r"""Posterior mean (and covariance) of the outputs at test points.

        With :math:`K` the prior kernel (NNGP for ``'nngp'``, NTK for ``'ntkgp'``) and
        :math:`K_\mathrm{reg} = K + \sigma^2 I`:

        .. math:: \mu = K_{td} K_\mathrm{reg}^{-1} y, \qquad
                  \Sigma = K_{tt} - K_{td} K_\mathrm{reg}^{-1} K_{dt}.

        For ``'ntk'`` the mean is the same with :math:`\Theta`, and the covariance is that of
        the ensemble of infinitely wide networks trained to convergence,
        :math:`K_{tt} + Z^\top K Z - Z^\top K_{dt} - K_{td} Z`, :math:`Z = \Theta_\mathrm{reg}^{-1}
        \Theta_{dt}` (`gradient_descent_mse_ensemble` at :math:`t=\infty`).

        Args:
            k_test_train: array of shape ``(M, N)``, or a `Kernel` (``net.kernel(x_test,
                x_train)``) with the kernels that ``get`` needs.
            k_test_test: ``None`` (mean only), or the test-test kernel: an array ``(M, M)``
                (the NNGP, or the NTK for ``'ntkgp'``) or a `Kernel`.
            get: ``'nngp'``, ``'ntkgp'`` or ``'ntk'``.

        Returns:
            The mean, of shape ``(M, K)`` (``(M,)`` for 1-D targets), or a `Gaussian`
            ``(mean, cov)`` with ``cov`` of shape ``(M, M)`` when ``k_test_test`` is given.
        """
        parts = _parts(k_test_train, "k_test_train")
        _check_mode(get, parts, "the test points (`k_test_train`)")
        if self._factor(get) is None or (get == "ntk" and self.k_nngp is None):
            raise ValueError(f"This posterior was not prepared for get={get!r}; call "
                             f"gp_inference(..., get={get!r}) with a kernel that has it.")
        n = self.y_train.shape[0]
        kind = "nngp" if get == "nngp" else "ntk"
        d_td = checks.as_float_array(parts[kind], "k_test_train")
        m = d_td.shape[0] if d_td.ndim == 2 else -1
        d_td = common.check_matrix(d_td, (m, n), "k_test_train",
                                   f" It is the kernel of M test points (rows) against the {n} "
                                   "training points (columns).")
        compute_cov = k_test_test is not None
        p_td, p_tt = d_td, None
        if compute_cov:
            want = "ntk" if get == "ntkgp" else "nngp"
            is_kernel = hasattr(k_test_test, "nngp") and hasattr(k_test_test, "ntk")
            p_tt = getattr(k_test_test, want) if is_kernel else k_test_test
            if p_tt is None:
                raise ValueError(f"get={get!r} needs the {want} kernel of the test points in "
                                 "`k_test_test`.")
            p_tt = common.check_matrix(p_tt, (m, m), "k_test_test")
            if get == "ntk":
                p_td = common.check_matrix(parts["nngp"], (m, n), "k_test_train.nngp")
        p_dd = self.k_nngp if get == "ntk" else None
        mean, cov = common.moments_cholesky(self._factor(get), self.y_train, d_td, p_td,
                                            p_tt, p_dd, compute_cov)
        return common.finish(mean, cov, True, self.y_was_1d, compute_cov)

    def log_marginal_likelihood(self, get: str = "nngp") -> Array:
        r"""Log evidence of the targets under the GP prior, summed over the ``K`` outputs.

        .. math:: \log p(y) = -\tfrac12 \sum_k y_k^\top K_\mathrm{reg}^{-1} y_k
                  - \tfrac{K}{2}\log\det K_\mathrm{reg} - \tfrac{NK}{2}\log 2\pi

        Differentiable with respect to everything that made the kernel (e.g. ``W_std`` of the
        layers, and ``diag_reg``). Inside ``jax.jit``, a kernel that cannot be factorized gives
        NaN.

        Args:
            get: ``'nngp'`` (NNGP prior) or ``'ntkgp'`` (NTK prior).

        Returns:
            A scalar.

        Example:
            Gradient with respect to the weight scale and the noise, through the kernel:

            >>> import jax, numpy as np
            >>> from ntkgp import nn, predict
            >>> x, y = np.random.default_rng(0).normal(size=(2, 8, 3))
            >>> def lml(w_std, noise):
            ...     net = nn.serial(nn.Dense(512, W_std=w_std), nn.Relu(), nn.Dense(1, W_std=w_std))
            ...     k = net.kernel(x, None, ("nngp",))
            ...     return predict.gp_inference(k, y, diag_reg=noise).log_marginal_likelihood()
            >>> g_w, g_noise = jax.grad(lml, argnums=(0, 1))(1.5, 0.1)
            >>> bool(np.isfinite(g_w) and np.isfinite(g_noise))
            True
        """
        if get not in ("nngp", "ntkgp"):
            raise ValueError(f"`get` must be 'nngp' or 'ntkgp' (a GP prior) for the marginal "
                             f"likelihood; got {get!r}.")
        f = self._factor(get)
        if f is None:
            raise ValueError(f"This posterior was not factored for get={get!r}.")
        n, k = self.y_train.shape
        white = f.solve_lower(self.y_train)
        return (-0.5 * jnp.sum(white ** 2) - 0.5 * k * f.logdet()
                - 0.5 * n * k * jnp.log(2 * jnp.pi).astype(white.dtype))


jax.tree_util.register_dataclass(Posterior, data_fields=["y_train", "nngp", "ntk", "k_nngp"],
                                 meta_fields=["y_was_1d"])


def gp_inference(k_train_train, y_train, *, diag_reg=0.0, diag_reg_absolute_scale: bool = False,
                 jitter: Optional[float] = None, get=None) -> Posterior:
    r"""Factor the training kernels once for exact posterior predictions.

    The NNGP is the prior over functions of an infinitely wide network at initialization; the
    posterior given noisy targets :math:`y = f(X) + \varepsilon`,
    :math:`\varepsilon \sim \mathcal N(0, \sigma^2 I)` is

    .. math:: \mu_* = K_{*d}(K_{dd} + \sigma^2 I)^{-1} y, \qquad
              \Sigma_* = K_{**} - K_{*d}(K_{dd} + \sigma^2 I)^{-1} K_{d*}.

    :math:`\sigma^2` is ``diag_reg`` times the mean of the diagonal of :math:`K_{dd}`
    (``diag_reg_absolute_scale=False``, as neural-tangents), or ``diag_reg`` itself.

    Args:
        k_train_train: a `Kernel` of the training points with itself (``net.kernel(x_train,
            None)``), or an array of shape ``(N, N)`` (the prior kernel of a GP).
        y_train: targets of shape ``(N,)`` or ``(N, K)``.
        diag_reg: :math:`\ge 0`, observation-noise variance (relative by default).
        diag_reg_absolute_scale: whether ``diag_reg`` is in the kernel's units.
        jitter: see `ntkgp.linalg.cholesky` (``None``: escalate with a warning when needed).
        get: the modes to prepare, a string or tuple from ``'nngp'``, ``'ntk'``, ``'ntkgp'``;
            ``None`` for all that ``k_train_train`` allows (an array: ``'nngp'``). Each
            kernel is factored once, whatever the modes.

    Returns:
        A `Posterior`; call ``.predict(k_test_train, k_test_test, get)`` and
        ``.log_marginal_likelihood(get)``.

    Raises:
        ValueError: for shapes that disagree, NaN/inf, or a mode whose kernel is missing.
        NotPositiveDefiniteError: when a kernel cannot be factorized (outside jit).

    References:
        Lee et al. 2018, https://arxiv.org/abs/1711.00165;
        He et al. 2020 (NTK-GP), https://arxiv.org/abs/2007.05864.

    Example:
        >>> import numpy as np
        >>> from ntkgp import nn, predict
        >>> net = nn.serial(nn.Dense(512), nn.Relu(), nn.Dense(1))
        >>> x, y = np.random.default_rng(0).normal(size=(2, 8, 3))
        >>> post = predict.gp_inference(net.kernel(x), y, diag_reg=1e-2, get="nngp")
        >>> mean, cov = post.predict(net.kernel(x[:2], x), net.kernel(x[:2], None, "nngp"))
        >>> mean.shape, cov.shape
        ((2, 3), (2, 2))
    """
    parts = _parts(k_train_train, "k_train_train")
    if get is None:
        modes = tuple(g for g in MODES if all(parts.get(p) is not None for p in _NEEDS[g]))
        if not modes:
            raise ValueError("`k_train_train` has neither an NNGP nor an NTK.")
    else:
        modes = (get,) if isinstance(get, str) else tuple(get)
        for g in modes:
            _check_mode(g, parts, "the training points")
    kinds = {p for g in modes for p in (("nngp",) if g == "nngp" else ("ntk",))}
    n = None
    for p in ("nngp", "ntk"):
        if parts[p] is not None:
            parts[p] = checks.check_square(parts[p], f"k_train_train.{p}")
            n = parts[p].shape[0]
    y, was_1d = common.check_targets(y_train, n)
    symmetric = bool(getattr(k_train_train, "x1_is_x2", False))  # exact by construction
    factors = {p: linalg.cholesky(parts[p], diag_reg, diag_reg_absolute_scale=
                                  diag_reg_absolute_scale, jitter=jitter, name=f"{p.upper()}",
                                  symmetrize=not symmetric)
               for p in ("nngp", "ntk") if p in kinds}
    y = y.astype(jnp.result_type(*[f.chol.dtype for f in factors.values()]))
    k_nngp = parts["nngp"] if "ntk" in modes else None
    return Posterior(y_train=y, nngp=factors.get("nngp"), ntk=factors.get("ntk"),
                     k_nngp=k_nngp, y_was_1d=was_1d)


