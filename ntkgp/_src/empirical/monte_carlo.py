r"""Monte-Carlo estimates of the infinite-width kernels from finite networks.

.. math::
    \bar K = \frac{1}{S}\sum_{s=1}^S \hat K_{\theta_s}, \qquad
    \bar\Theta = \frac{1}{S}\sum_{s=1}^S \hat\Theta_{\theta_s}, \qquad \theta_s \sim p(\theta_0)

For a network of width :math:`n`, :math:`\hat K` and :math:`\hat\Theta` converge to the
analytic kernels as :math:`n \to \infty` (fluctuations :math:`O(n^{-1/2})`), so comparing the
two is an independent check of the analytic recursion.
"""

from __future__ import annotations

from typing import Optional, Sequence

import jax
import jax.numpy as jnp

from ntkgp._src import checks
from ntkgp._src.empirical.empirical import empirical_nngp_fn, empirical_ntk_fn
from ntkgp._src.empirical.functions import BATCHED_KWARGS, as_apply_fn, as_layer, split_kwargs
from ntkgp._src.kernels.kernel import Kernel
from ntkgp._src.progress import progress_bar


def monte_carlo_kernel(net, key, n_samples: int, x1, x2=None, get=None,
                       trace_axes: Sequence[int] = (-1,), implementation: str = "auto",
                       progress: Optional[bool] = None, *, diagonal_axes: Sequence[int] = (),
                       vmap_axes=None, **kwargs):
    r"""Average the empirical NNGP and NTK of ``net`` over ``n_samples`` random initializations.

    Args:
        net: an ``ntkgp.nn`` network, or an ``(init_fn, apply_fn)`` pair with
            ``init_fn(key, input_shape) -> (output_shape, params)``.
        key: a ``jax.random`` key; sample ``s`` uses ``jax.random.fold_in(key, s)``, so the
            first S samples are the same whatever ``n_samples`` is.
        n_samples: number of initializations :math:`S`.
        x1: array of shape ``(N1, d)``.
        x2: array of shape ``(N2, d)`` or ``None``.
        get: ``'nngp'``, ``'ntk'``, a tuple of them, or ``None`` for both.
        trace_axes: output axes averaged over (see `empirical_ntk_fn`).
        implementation: empirical NTK implementation.
        progress: show a progress bar (default: once the samples have taken 2 s).
        diagonal_axes: output axes of which only the diagonal is kept (see
            `empirical_ntk_fn`).
        vmap_axes: ``0`` when ``apply_fn`` treats examples independently (see
            `empirical_ntk_fn`; irrelevant for ``ntkgp.nn`` networks).
        **kwargs: keyword arguments of the network's ``apply``; ``pattern`` (the graphs of
            `ntkgp.nn.Aggregate`) as ``(pattern1, pattern2)`` (see `empirical_ntk_fn`).

    Returns:
        A `Kernel` with ``nngp``/``ntk`` of shape ``(N1, N2)`` (for ``trace_axes=(-1,)``), or one
        array when ``get`` is a string.
    """
    n_samples = checks.check_positive_int(n_samples, "n_samples")
    names, single = checks.normalize_get(get)
    if as_layer(net) is not None:
        init_fn, apply_fn = as_layer(net).init, net
    else:
        try:
            init_fn, apply_fn = net[0], net[1]
        except (TypeError, IndexError):
            raise TypeError("`net` must be an ntkgp.nn network or an (init_fn, apply_fn) "
                            f"pair; got {type(net).__name__}.") from None
    x1, x2 = checks.check_inputs(x1, x2, ndim=None)
    ntk_fn = (empirical_ntk_fn(apply_fn, trace_axes, diagonal_axes, vmap_axes, implementation)
              if "ntk" in names else None)
    nngp_fn = empirical_nngp_fn(apply_fn, trace_axes, diagonal_axes)
    apply = as_apply_fn(apply_fn)

    def init_params(k):
        return init_fn(k, x1.shape)[1]

    init_params = jax.jit(init_params)

    per1, per2, shared = split_kwargs(kwargs, BATCHED_KWARGS, x1, x2)

    def var(params, x, per):
        y = apply(params, x, **per, **shared)
        return jnp.mean(y.reshape(y.shape[0], -1) ** 2, axis=-1)

    var = jax.jit(var)
    acc = {}
    show = True if progress is None else progress
    for s in progress_bar(range(n_samples), total=n_samples, desc="monte carlo", enabled=show):
        params = init_params(jax.random.fold_in(key, s))
        sample = {"nngp": nngp_fn(x1, x2, params, **kwargs), "cov1": var(params, x1, per1)}
        if x2 is not None:
            sample["cov2"] = var(params, x2, per2)
        if ntk_fn is not None:
            sample["ntk"] = ntk_fn(x1, x2, params, **kwargs)
        for name, v in sample.items():
            acc[name] = v if name not in acc else acc[name] + v
    mean = {name: v / n_samples for name, v in acc.items()}
    k = Kernel(nngp=mean["nngp"] if "nngp" in names else None, ntk=mean.get("ntk"),
               cov1=mean["cov1"], cov2=mean.get("cov2"), x1_is_x2=x2 is None)
    return getattr(k, names[0]) if single else k
