r"""`NystromMap`: features of a network's exact kernel on landmark rows (Nyström).

With landmarks :math:`L` (rows of the training set) and :math:`K_{LL} = U\Lambda U^\top`,

.. math:: \phi(x) = K(x, L)\,U\Lambda^{-1/2}, \qquad
          \phi(x)\cdot\phi(x') = K(x, L)\,K_{LL}^{+}\,K(L, x'),

the kernel projected on the span of the landmarks' functions: exact on the landmarks, never
above the kernel (:math:`K - \phi\phi^\top` is positive semi-definite), and data-adaptive,
so it keeps the top of the kernel's spectrum that regression relies on. Any network (or
kernel function) works, convolutional and attention networks included: the features cost
``N x D`` exact kernel entries, not ``N x N``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.features import rules
from ntkgp._src.features.feature_map import BaseFeatureMap
from ntkgp._src.features.rows import LazyRows, is_lazy, lazy_like, take_rows


def _inv_sqrt(k: np.ndarray, eps: float) -> np.ndarray:
    """:math:`U\\Lambda^{-1/2}` over the eigenvalues of ``k`` above ``100 eps`` times the
    largest (the rest are rounding: duplicate or nearly dependent landmarks)."""
    w, u = np.linalg.eigh(0.5 * (k + k.T))
    keep = w > 100 * eps * max(float(w[-1]), np.finfo(np.float64).tiny)
    return u[:, keep] / np.sqrt(w[keep])


class NystromMap(BaseFeatureMap):
    r"""Nyström features of the NNGP and NTK of a network on landmark rows.

    ``phi = NystromMap(net, landmarks)``: ``phi(x)`` of shape ``(N, D)`` with
    :math:`\phi(x)\phi(x')^\top = K(x, L)\,K_{LL}^{+}\,K(L, x')` (``D`` the numerical rank of
    the landmarks' kernel, at most their number). Use `NystromMap.from_rows` to draw the
    landmarks from the training rows.

    Args:
        kernel_fn: an ``ntkgp.nn`` network or ``kernel_fn(x1, x2, get) -> Kernel``.
        landmarks: rows ``(D, ...)`` shaped like the inputs.
        get: ``'ntk'`` (default) or ``'nngp'``: the kernel ``phi(x)`` approximates.

    Raises:
        TypeError: ``kernel_fn`` is not a network or a function.
        ValueError: bad landmarks (NaN/inf, empty) or ``get``.
    """

    desc = "Nystrom features"

    def __init__(self, kernel_fn, landmarks, get: str = "ntk"):
        checks.check_choice(get, "get", ("nngp", "ntk"))
        fn = getattr(kernel_fn, "kernel", kernel_fn)
        if not callable(fn):
            raise TypeError(f"`kernel_fn` must be an ntkgp.nn network or a function "
                            f"kernel_fn(x1, x2, get); got {type(kernel_fn).__name__}.")
        self.landmarks, _ = checks.check_inputs(landmarks, None, ndim=None)
        self.kernel_fn, self.get = fn, get
        k = fn(self.landmarks, None, ("nngp", "ntk"))
        eps = float(np.finfo(self.landmarks.dtype).eps)
        self.projections = {g: jnp.asarray(_inv_sqrt(np.asarray(getattr(k, g), np.float64),
                                                     eps), self.landmarks.dtype)
                            for g in ("nngp", "ntk")}
        self.n_features = int(self.projections[get].shape[1])

    @classmethod
    def from_rows(cls, kernel_fn, x, n_landmarks: int, key=0, get: str = "ntk"):
        """Landmarks drawn uniformly without replacement from the rows of ``x`` (all rows
        when there are at most ``n_landmarks``); ``key``: an integer seed or a
        ``jax.random`` key.

        Args:
            kernel_fn: as `NystromMap`.
            x: the rows ``(N, ...)`` (e.g. the training inputs).
            n_landmarks: how many landmarks, ``D``.
            key: seed of the draw.
            get: as `NystromMap`.

        Returns:
            A `NystromMap`.
        """
        n_landmarks = checks.check_positive_int(n_landmarks, "n_landmarks")
        if is_lazy(x):
            x = LazyRows(x, "x")
        n = x.shape[0]
        if n <= n_landmarks:
            return cls(kernel_fn, x[0:n] if isinstance(x, LazyRows) else x, get)
        if not isinstance(key, (int, np.integer)):
            key = int(jax.random.randint(key, (), 0, 2 ** 31 - 1))
        rows = np.sort(np.random.default_rng(int(key)).choice(n, n_landmarks, replace=False))
        return cls(kernel_fn, take_rows(x, rows), get)

    def __repr__(self):
        return (f"NystromMap({len(self.landmarks)} landmarks, n_features={self.n_features}, "
                f"get={self.get!r})")

    def _check(self, x):
        if is_lazy(x):
            return lazy_like(x, self.landmarks.shape[1:], "x").astype(self.landmarks.dtype)
        x, _ = checks.check_inputs(x, self.landmarks[:1], ndim=None)
        return x.astype(self.landmarks.dtype)

    def _block(self, block, state, compute_ntk):
        gets = ("nngp", "ntk") if compute_ntk else ("nngp",)
        k = self.kernel_fn(block.astype(self.landmarks.dtype), self.landmarks, gets)
        ntk = k.ntk @ self.projections["ntk"] if compute_ntk else None
        return rules.Feats(k.nngp @ self.projections["nngp"], ntk)
