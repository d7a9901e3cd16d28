r"""`NeuralKernel`: an ntkgp kernel as a scikit-learn ``Kernel`` (for GaussianProcessRegressor,
KernelRidge, SVC, or ``kernel='precomputed'``), with hyperparameters and their gradients."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.gaussian_process.kernels import Hyperparameter, Kernel

from ntkgp._src.estimator.base import BOUNDS, compute_dtype
from ntkgp._src.estimator.network import kernel_function
from ntkgp._src.nn.spec import ACTIVATIONS


@functools.lru_cache(maxsize=64)
def _kernel_functions(kernel, activation, depth):
    """Jitted ``k(theta, x1, x2)``, its Jacobian in ``theta`` and the diagonal ``k(x, x)``,
    with ``theta = log([W_std, b_std])``; compiled once per architecture and shape."""
    fn = kernel_function(activation, depth, "ntk", 1, None)

    def k(theta, x1, x2):
        return fn(jnp.exp(theta), x1, x2, kernel)

    def diag(theta, x):
        return jax.vmap(lambda r: k(theta, r[None], None)[0, 0])(x)

    jac = jax.jacfwd(lambda theta, x: k(theta, x, None))
    return jax.jit(k), jax.jit(jac), jax.jit(diag)


class NeuralKernel(Kernel):
    r"""The NNGP or NTK of a fully connected network as a scikit-learn ``Kernel``.

    :math:`k(x, x')` is the infinite-width kernel of ``depth`` hidden layers of
    ``activation`` with weight and bias scales :math:`\sigma_w` = ``W_std`` and
    :math:`\sigma_b` = ``b_std`` (NTK parameterization). Its hyperparameters are
    ``W_std`` and ``b_std``; scikit-learn optimizes them on a log scale, and
    ``__call__(X, eval_gradient=True)`` returns the exact gradient (JAX forward mode).
    Combine it like any scikit-learn kernel, e.g. ``NeuralKernel() + WhiteKernel()``.

    Args:
        kernel: ``'nngp'`` or ``'ntk'``.
        activation: ``'relu'``, ``'erf'``, ``'gelu'``, ``'abs'`` or ``'sin'``.
        depth: number of hidden layers.
        W_std: :math:`\sigma_w > 0`.
        b_std: :math:`\sigma_b > 0` (or ``0`` with ``b_std_bounds='fixed'``).
        W_std_bounds: ``(low, high)`` or ``'fixed'``.
        b_std_bounds: ``(low, high)`` or ``'fixed'``.

    Example:
        >>> import numpy as np
        >>> from sklearn.gaussian_process import GaussianProcessRegressor
        >>> from sklearn.gaussian_process.kernels import WhiteKernel
        >>> from ntkgp.estimator import NeuralKernel
        >>> X = np.random.default_rng(0).normal(size=(30, 2)); y = np.sin(X[:, 0])
        >>> gpr = GaussianProcessRegressor(NeuralKernel(depth=2) + WhiteKernel(0.1)).fit(X, y)
        >>> gpr.predict(X[:3]).shape
        (3,)
    """

    def __init__(self, kernel="nngp", activation="relu", depth=1, W_std=1.5, b_std=0.05,
                 W_std_bounds=BOUNDS["W_std"], b_std_bounds=BOUNDS["b_std"]):
        self.kernel = kernel
        self.activation = activation
        self.depth = depth
        self.W_std = W_std
        self.b_std = b_std
        self.W_std_bounds = W_std_bounds
        self.b_std_bounds = b_std_bounds

    @property
    def hyperparameter_W_std(self):
        return Hyperparameter("W_std", "numeric", self.W_std_bounds)

    @property
    def hyperparameter_b_std(self):
        return Hyperparameter("b_std", "numeric", self.b_std_bounds)

    def _functions(self):
        if self.kernel not in ("nngp", "ntk"):
            raise ValueError(f"`kernel` must be 'nngp' or 'ntk'; got {self.kernel!r}.")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {sorted(ACTIVATIONS)}; got "
                             f"{self.activation!r}.")
        if isinstance(self.depth, bool) or not isinstance(self.depth, (int, np.integer)) \
                or self.depth < 1:
            raise ValueError(f"`depth` must be an integer >= 1; got {self.depth!r}.")
        return _kernel_functions(self.kernel, self.activation, int(self.depth))

    def _prepare(self, X):
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"NeuralKernel expects X of shape (n_samples, n_features); got "
                             f"shape {X.shape}.")
        X = X.astype(compute_dtype(X.astype(np.float64) if X.dtype.kind != "f" else X))
        theta = np.log(np.maximum([self.W_std, self.b_std], 1e-300))
        if self.b_std == 0:
            theta[1] = -np.inf  # exp(-inf) = 0: no bias
        return X, jnp.asarray(theta, X.dtype)

    def __call__(self, X, Y=None, eval_gradient=False):
        """The kernel matrix ``(n_X, n_Y)``, and with ``eval_gradient`` (``Y=None`` only) its
        gradient ``(n_X, n_X, n_free)`` with respect to the log of the free hyperparameters."""
        k, jac, _ = self._functions()
        X, theta = self._prepare(X)
        if Y is not None:
            if eval_gradient:
                raise ValueError("Gradient can only be evaluated when Y is None.")
            Y, _ = self._prepare(Y)
            return np.array(k(theta, X, Y.astype(X.dtype)), np.float64)
        K = np.array(k(theta, X, None), np.float64)
        if not eval_gradient:
            return K
        free = [i for i, h in enumerate((self.hyperparameter_W_std, self.hyperparameter_b_std))
                if not h.fixed]
        if not free:
            return K, np.empty((X.shape[0], X.shape[0], 0))
        return K, np.asarray(jac(theta, X), np.float64)[:, :, free]

    def diag(self, X):
        """``k(x, x)`` for each row, ``(n_X,)``, without the full matrix."""
        X, theta = self._prepare(X)
        return np.array(self._functions()[2](theta, X), np.float64)

    def is_stationary(self):
        return False

    def __repr__(self):
        return (f"NeuralKernel(kernel={self.kernel!r}, activation={self.activation!r}, "
                f"depth={self.depth}, W_std={self.W_std:.3g}, b_std={self.b_std:.3g})")
