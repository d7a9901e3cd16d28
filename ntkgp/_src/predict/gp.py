r"""Bayesian inference with NNGP/NTK kernels: neural-tangents' `gp_inference`, a thin wrapper of
`Posterior` on kernels already computed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Optional

import jax

from ntkgp._src import checks
from ntkgp._src.predict import blocks
from ntkgp._src.predict.common import DRIVER, PRIOR
from ntkgp._src.predict.posterior import Posterior
from ntkgp._src.solve.operators import DenseKernelOperator
from ntkgp._src.solve.solvers import CholeskySolver

MODES = checks.MODES


def _parts(k, name):
    """``{'nngp': array|None, 'ntk': array|None}`` from a `Kernel`-like object or an array
    (an array is taken as the prior kernel of a GP, i.e. the 'nngp' slot)."""
    if hasattr(k, "nngp") and hasattr(k, "ntk"):
        return {"nngp": k.nngp, "ntk": k.ntk}
    if k is None:
        raise TypeError(f"`{name}` must be an array or a Kernel, got None.")
    return {"nngp": k, "ntk": None}


def _check_get(get):
    if get not in MODES:
        raise ValueError(f"`get` must be one of {MODES}; got {get!r}. 'nngp': GP posterior "
                         "with the NNGP prior; 'ntkgp': GP posterior with the NTK as prior; "
                         "'ntk': infinitely wide network trained by gradient descent to "
                         "convergence (needs NNGP and NTK).")


class GPInference:
    """What `gp_inference` factored: one `Posterior` per mode, the NTK factored once for
    ``'ntk'`` and ``'ntkgp'``. A pytree (it can be passed through ``jax.jit`` and
    differentiated).

    Attributes:
        posteriors: ``{mode: Posterior}`` for the modes prepared.
    """

    def __init__(self, posteriors: dict, n_blocks=None):
        self.posteriors = dict(posteriors)
        self.n_blocks = n_blocks  # K with full output blocks (trace_axes=()), else None

    def _posterior(self, get):
        _check_get(get)
        if get not in self.posteriors:
            raise ValueError(f"This posterior was not prepared for get={get!r}; call "
                             f"gp_inference(..., get={get!r}) with a kernel that has it.")
        return self.posteriors[get]

    @property
    def y_train(self):
        """The targets ``(N, K)``."""
        return next(iter(self.posteriors.values())).y_train

    def predict(self, k_test_train, k_test_test=None, get: str = "nngp"):
        r"""Posterior mean (and covariance) of the outputs at test points.

        With :math:`K` the prior kernel (NNGP for ``'nngp'``, NTK for ``'ntkgp'``) and
        :math:`K_\mathrm{reg} = K + \sigma^2 I`:

        .. math:: \mu = K_{td} K_\mathrm{reg}^{-1} y, \qquad
                  \Sigma = K_{tt} - K_{td} K_\mathrm{reg}^{-1} K_{dt}.

        For ``'ntk'`` the mean is the same with :math:`\Theta`, and the covariance is that of
        the ensemble of infinitely wide networks trained to convergence (`Posterior`).

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
        post = self._posterior(get)
        if get == "ntk":
            parts = _parts(k_test_train, "k_test_train")
            missing = [p for p in ("ntk", "nngp") if parts[p] is None]
            if missing:
                raise ValueError(f"get='ntk' needs the {' and '.join(missing)} kernel of the "
                                 "test points (`k_test_train`), which was not given. Pass a "
                                 "Kernel computed with get=('nngp', 'ntk').")
        k = self.n_blocks
        if k is not None:
            return blocks.predict(post, k, k_test_train, k_test_test)
        return post.predict(k_test_train=k_test_train, k_test_test=k_test_test,
                            return_cov=k_test_test is not None)

    def log_marginal_likelihood(self, get: str = "nngp"):
        r"""Log evidence of the targets under the GP prior (`Posterior.log_marginal_likelihood`),
        summed over the ``K`` outputs.

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
        if get not in self.posteriors and not (get == "ntkgp" and "ntk" in self.posteriors):
            raise ValueError(f"This posterior was not factored for get={get!r}.")
        return self.posteriors.get(get, self.posteriors.get("ntk")).log_marginal_likelihood()


jax.tree_util.register_pytree_node(
    GPInference, lambda g: (tuple(g.posteriors.values()), (tuple(g.posteriors), g.n_blocks)),
    lambda aux, posts: GPInference(dict(zip(aux[0], posts)), aux[1]))


def gp_inference(k_train_train, y_train, *, diag_reg=0.0, diag_reg_absolute_scale: bool = False,
                 jitter: Optional[float] = None, get=None, trace_axes=(-1,)) -> GPInference:
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
        trace_axes: ``(-1,)``: kernels ``(N, N)``, the same for every output; ``()``:
            empirical kernels with full output blocks, ``(N, N, K, K)`` for targets
            ``(N, K)`` (test kernels ``(M, N, K, K)``, ``(M, M, K, K)``; the covariance comes
            back as ``(M, M, K, K)``).

    Returns:
        A `GPInference`; call ``.predict(k_test_train, k_test_test, get)`` and
        ``.log_marginal_likelihood(get)``. (neural-tangents' function, a thin wrapper of
        `Posterior`, which predicts from test inputs as well.)

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
    n_blocks = blocks.blocks_of(trace_axes, y_train)
    if n_blocks is not None:
        mats = blocks.parts(k_train_train, n_blocks, "k_train_train")
        k_train_train = SimpleNamespace(**mats) if isinstance(
            mats, dict) else mats
        y_train = blocks.column(y_train, n_blocks, "y_train")
    parts = _parts(k_train_train, "k_train_train")
    if get is None:
        modes = tuple(g for g in MODES if parts[DRIVER[g]] is not None
                      and parts[PRIOR[g]] is not None)
        if not modes:
            raise ValueError("`k_train_train` has neither an NNGP nor an NTK.")
    else:
        modes = (get,) if isinstance(get, str) else tuple(get)
        for g in modes:
            _check_get(g)
            missing = [p for p in sorted({DRIVER[g], PRIOR[g]}) if parts[p] is None]
            if missing:
                raise ValueError(f"get={g!r} needs the {' and '.join(missing)} kernel of the "
                                 "training points, which was not given. Pass a Kernel computed "
                                 "with get=('nngp', 'ntk') (e.g. `net.kernel(x_train, None)`), "
                                 "or use a mode that it has.")
    sym = bool(getattr(k_train_train, "x1_is_x2", False))  # exact by construction
    ops = {p: DenseKernelOperator(v, sym, f"k_train_train.{p}")
           for p, v in parts.items() if v is not None}
    posts = {}
    for g in sorted(modes, key=("ntk", "nngp", "ntkgp").index):  # 'ntk' before 'ntkgp'
        if g == "ntkgp" and "ntk" in posts:  # the same factor of the NTK
            posts[g] = posts["ntk"].as_mode("ntkgp")
        else:
            posts[g] = Posterior.from_kernels(
                ops, y_train, mode=g, solver=CholeskySolver(jitter), diag_reg=diag_reg,
                diag_reg_absolute_scale=diag_reg_absolute_scale)
    return GPInference({g: posts[g] for g in modes}, n_blocks)
