r"""`FeatureMap`: random features whose inner products approximate a network's kernels.

:math:`\phi(x_1)\,\phi(x_2)^\top \approx` ``net.kernel(x1, x2, get)`` with an error that
shrinks like :math:`1/\sqrt m` in the number :math:`m` of random directions per activation
(the rules are in ``ntkgp._src.features.rules``). Regression on ``N`` rows with ``D`` features
then costs :math:`O(N D^2)` time and :math:`O(D^2)` memory instead of :math:`O(N^3)` and
:math:`O(N^2)`.
"""

from __future__ import annotations

import functools
from typing import Iterator, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.features import rules
from ntkgp._src.features.rows import LazyRows, is_lazy
from ntkgp._src.progress import progress_bar

#: rows per compiled call: the activations' ``rows x n_features`` stay small
ROWS = 2048


@functools.partial(jax.jit, static_argnames=("net", "width", "compute_ntk"))
def _draw(x, key, net, width, compute_ntk):
    """The Gaussian matrices of every activation, in the order the rules ask for them."""
    record = []
    rules.run(net, rules.input_features(x, compute_ntk), key, rules.Draws(width, record))
    return record


@functools.partial(jax.jit, static_argnames=("net", "width", "compute_ntk"))
def _features(x, key, draws, net, width, compute_ntk):
    f = rules.run(net, rules.input_features(x, compute_ntk), key,
                  rules.Draws(width, replay=draws))
    return rules.Feats(f.nngp, f.ntk)  # the arrays only (`bias` is for the rules)


class BaseFeatureMap:
    """What every feature map offers: ``phi(x)``, `features`, `kernel` and `chunks` over
    blocks of rows; subclasses give `_check`, `_prepare` (once per kind of input) and `_block`
    (the features of one padded block)."""

    get = "ntk"
    desc = "features"

    def _check(self, x):
        if is_lazy(x):
            x = LazyRows(x, "x")
            if x.ndim != 2:
                raise ValueError(f"`x` must have shape (N, d); got shape {x.shape}.")
            return x
        x, _ = checks.check_inputs(x, None, ndim=2)
        return x

    def _prepare(self, x, compute_ntk):
        return None

    def _block(self, block, state, compute_ntk) -> rules.Feats:
        raise NotImplementedError

    def features(self, x, compute_ntk: Optional[bool] = None) -> rules.Feats:
        """Both feature arrays of ``x`` ``(N, ...)``: ``Feats(nngp (N, D), ntk (N, D'))``
        (``ntk`` is ``None`` unless ``compute_ntk``, by default when ``get='ntk'``)."""
        x = self._check(x)
        ntk = self.get == "ntk" if compute_ntk is None else bool(compute_ntk)
        parts = [f for _, _, f in self.chunks(x, ntk, progress=False)]
        if len(parts) == 1:
            return parts[0]
        return rules.Feats(jnp.concatenate([p.nngp for p in parts]),
                           None if not ntk else jnp.concatenate([p.ntk for p in parts]))

    def __call__(self, x) -> jax.Array:
        """``phi(x)``: the features of the kernel ``get``, shape ``(N, D)``."""
        f = self.features(x)
        return f.ntk if self.get == "ntk" else f.nngp

    def kernel(self, x1, x2=None) -> jax.Array:
        r"""The kernel the features define: :math:`\phi(x_1)\phi(x_2)^\top`, ``(N1, N2)``."""
        a = self(x1)
        return a @ (a if x2 is None else self(x2)).T

    def chunks(self, x, compute_ntk: bool, progress: Optional[bool] = None,
               rows: int = ROWS) -> Iterator[Tuple[int, int, rules.Feats]]:
        """``(start, stop, Feats)`` for consecutive blocks of at most ``rows`` rows of ``x``
        (checked: an array or `LazyRows`, read span by span), each computed by one compiled
        program (the last block padded); a progress bar for more than 8 blocks unless
        ``progress=False``."""
        n = x.shape[0]
        size = min(rows, n)
        if isinstance(x, LazyRows):
            source = x.blocks(size)
        else:
            source = ((a, min(a + size, n), x[a:a + size]) for a in range(0, n, size))
        bar = progress_bar(source, total=-(-n // size), desc=self.desc,
                           enabled=True if progress is None else progress)
        state = self._prepare(x, compute_ntk)
        for a, b, block in bar:
            block = jnp.asarray(block)
            if b - a < size:
                block = jnp.concatenate([block, jnp.zeros((size - (b - a),) + x.shape[1:],
                                                          block.dtype)])
            f = self._block(block, state, bool(compute_ntk))
            if b - a < size:
                f = rules.Feats(f.nngp[:b - a], None if f.ntk is None else f.ntk[:b - a])
            yield a, b, f


class FeatureMap(BaseFeatureMap):
    r"""Random features of the NNGP or NTK of a network.

    ``phi = FeatureMap(net, n_features, key)`` is a function: ``phi(x)`` of shape ``(N, D)``,
    with :math:`\phi(x_1)\phi(x_2)^\top` an unbiased-per-layer Monte-Carlo estimate of the
    kernel whose error shrinks like :math:`1/\sqrt{m}`, ``m = n_features``: Dense layers map
    features exactly; each activation draws ``m`` Gaussian directions (see
    ``ntkgp.features``). The same ``key`` gives the same features on any rows, in any
    batches, so train and test features belong to one kernel.

    Args:
        net: an ``ntkgp.nn`` network of Dense layers (NTK parameterization), elementwise
            activations and the combinators (`serial`, `parallel`, `FanOut`, `FanInSum`).
        n_features: random directions ``m`` per activation layer. The NNGP features of a
            network ending in ``Dense`` have ``m + 1`` columns (with bias), its NTK features
            about ``2m + 1``.
        key: a ``jax.random`` key or an integer seed.
        get: ``'ntk'`` (default) or ``'nngp'``: the kernel ``phi(x)`` approximates.

    Raises:
        ValueError: for a network with a layer that has no feature rule (named), spatial
            layers, or bad arguments.
    """

    def __init__(self, net, n_features: int, key=0, get: str = "ntk"):
        self.n_features = checks.check_positive_int(n_features, "n_features")
        checks.check_choice(get, "get", ("nngp", "ntk"))
        if not hasattr(net, "kernel_map") or not hasattr(net, "features"):
            raise TypeError(f"`net` must be an ntkgp.nn network (a Layer); got "
                            f"{type(net).__name__}.")
        if net.spatial:
            raise ValueError(f"random features are implemented for networks on (N, d) inputs "
                             f"without convolutions or pooling; {net.name} has spatial "
                             "layers. Use its exact kernel (solver 'cholesky' or 'cg').")
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            key = jax.random.PRNGKey(int(key))
        self.net, self.key, self.get = net, key, get
        self.desc = "random features"
        self._draws = {}  # (d, dtype, compute_ntk) -> the Gaussian matrices, drawn once

    def __repr__(self):
        return (f"FeatureMap({self.net.name}, n_features={self.n_features}, "
                f"get={self.get!r})")

    def _matrices(self, x, compute_ntk):
        """The random matrices for inputs like ``x``, drawn on first use (then reused: no
        block of rows draws them again)."""
        sig = (x.shape[1:], np.dtype(x.dtype).name, bool(compute_ntk))
        if sig not in self._draws:
            self._draws[sig] = _draw(jnp.zeros((1,) + x.shape[1:], x.dtype), self.key,
                                     self.net, self.n_features, bool(compute_ntk))
        return self._draws[sig]

    def _prepare(self, x, compute_ntk):
        return self._matrices(x, compute_ntk)

    def _block(self, block, state, compute_ntk):
        return _features(block, self.key, state, self.net, self.n_features, compute_ntk)
