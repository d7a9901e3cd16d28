r"""Finite-width (empirical) kernels of any ``f(params, x)``.

.. math::
    \hat\Theta(x_1, x_2) = \frac{\partial f(x_1)}{\partial \theta}
        \frac{\partial f(x_2)}{\partial \theta}^\top, \qquad
    \hat K(x_1, x_2) = f(x_1) f(x_2)^\top,

averaged (not summed) over the output axes in ``trace_axes``, so that the kernel of a network
with K outputs estimates the per-output infinite-width kernel.

Three implementations give the same numbers:

* ``'jacobian'``: per-example Jacobians, contracted with one matrix product. Memory
  ``(N1 + N2) * K * P``; fastest when that fits and few output blocks are kept.
* ``'ntvp'``: NTK-vector products: for every output of every ``x2`` example a VJP gives a
  parameter vector and a JVP on all of ``x1`` gives a column of the kernel. Never holds a
  Jacobian: memory ``K * P``.
* ``'structured'``: for ``ntkgp.nn`` networks. A Dense layer :math:`h = c\,W a + c_b b` adds
  :math:`(c^2\, a_1 \cdot a_2 + c_b^2)\,(g_1 \cdot g_2)` with :math:`g = \partial f/\partial h`
  (the back-propagated signal), so only inputs and signals per layer are needed.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.kernels.kernel import Kernel
from ntkgp._src.kernels.layout import Layout, unsplit
from ntkgp._src.kernels.structured import ntk_structured
from ntkgp._src.util import device_free_memory_bytes

IMPLEMENTATIONS = ("auto", "jacobian", "ntvp", "structured")


def as_layer(f):
    from ntkgp._src.nn.core import Layer
    if isinstance(f, Layer):
        return f
    return getattr(f, "_ntkgp_layer", None)


def as_apply_fn(f):
    layer = as_layer(f)
    if layer is not None:
        return layer.apply
    if not callable(f):
        raise TypeError(f"`f` must be a function f(params, x) or an ntkgp.nn layer; got "
                        f"{type(f).__name__}.")
    return f


BATCHED_KWARGS = ("pattern",)


def split_kwargs(kwargs, batched, x1, x2):
    """``(per-example kwargs of x1, of x2, shared kwargs)``. A keyword in ``batched`` holds
    arrays with a first axis of examples, given as a pair ``(for_x1, for_x2)`` (``for_x1``
    alone, or ``(for_x1, None)``, when ``x2`` is ``None``); the others go to every call as
    they are."""
    per1, per2, shared = {}, {}, {}
    for name, v in kwargs.items():
        if name not in batched:
            shared[name] = v
            continue
        v1, v2 = v if isinstance(v, (tuple, list)) else (v, None)
        if x2 is not None and v2 is None:
            raise ValueError(f"`{name}` holds one entry per example: with x2 given, pass "
                             f"{name}=(for_x1, for_x2).")
        for val, x, nm, out in ((v1, x1, "x1", per1), (v2, x2, "x2", per2)):
            if x is None:
                continue
            val = jax.tree.map(jnp.asarray, val)
            if any(np.ndim(a) < 1 or a.shape[0] != x.shape[0] for a in jax.tree.leaves(val)):
                raise ValueError(f"`{name}` for {nm} must have one entry per example (a first "
                                 f"axis of {x.shape[0]}); got shapes "
                                 f"{[tuple(np.shape(a)) for a in jax.tree.leaves(val)]}.")
            out[name] = val
    return per1, per2, shared


def _count(x):
    return jax.tree.leaves(x)[0].shape[0]


def _head(x, n=1):
    return jax.tree.map(lambda a: a[:n], x)


def _bind(apply, shared):
    """``apply`` on ``(x, per-example kwargs)`` pairs, with the shared kwargs."""
    def f(p, xx):
        x, kw = xx
        return apply(p, x, **kw, **shared)
    return f


def _out_shape(apply, params, x):
    out = jax.eval_shape(lambda p, xx: apply(p, xx), params, x)
    n = _count(x)
    if not hasattr(out, "shape") or len(out.shape) < 1 or out.shape[0] != n:
        raise ValueError("`f(params, x)` must return one array whose first axis indexes the "
                         f"examples of x ({n}); got {out}.")
    return out.shape[1:]


def _symmetrize(theta):
    axes = (1, 0) + tuple(range(2, theta.ndim))
    if theta.ndim > 2:
        k = (theta.ndim - 2) // 2
        axes = (1, 0) + tuple(range(2 + k, 2 + 2 * k)) + tuple(range(2, 2 + k))
    return 0.5 * (theta + jnp.transpose(theta, axes))


# ----------------------------------------------------------------------------------------------
# Implementations. Each returns (N1, N2, Kk, Kk), averaged over the traced axes.
# ----------------------------------------------------------------------------------------------
def _jacobians(apply, params, x, layout):
    """Per-example Jacobians: a list of leaves of shape (N, Kk, Kt, P_leaf)."""

    def one(xi):
        return jax.jacrev(lambda p: apply(p, jax.tree.map(lambda a: a[None], xi))[0])(params)

    jac = jax.vmap(one)(x)
    return [_split_leaf(leaf, _count(x), layout) for leaf in jax.tree.leaves(jac)]


def _split_leaf(leaf, n, layout):
    """(N, *O, *pshape) -> (N, Kk, Kt, P)."""
    a = leaf.reshape((n,) + layout.out_shape + (-1,))
    a = layout.split(jnp.moveaxis(a, -1, 1), lead=2)  # (N, P, Kk, Kt)
    return jnp.transpose(a, (0, 2, 3, 1))


def _contract(j1s, j2s, kt):
    """sum over leaves of J1[a,i,t,p] J2[b,j,t,p], as plain 2-D matrix products."""
    hi = jax.lax.Precision.HIGHEST
    total = None
    for j1, j2 in zip(j1s, j2s):
        n1, kk = j1.shape[:2]
        n2 = j2.shape[0]
        if kk == 1:  # all outputs traced: (N1, Kt P) @ (Kt P, N2)
            t = jnp.matmul(j1.reshape(n1, -1), j2.reshape(n2, -1).T, precision=hi)
            t = t[:, :, None, None]
        elif j1.shape[2] == 1:  # nothing traced: (N1 Kk, P) @ (P, N2 Kk)
            t = jnp.matmul(j1.reshape(n1 * kk, -1), j2.reshape(n2 * kk, -1).T, precision=hi)
            t = t.reshape(n1, kk, n2, kk).transpose(0, 2, 1, 3)
        else:
            t = jnp.einsum("aitp,bjtp->abij", j1, j2, precision=hi)
        total = t if total is None else total + t
    return total / kt


def _ntk_jacobian(apply, params, x1, x2, layout):
    j1 = _jacobians(apply, params, x1, layout)
    j2 = j1 if x2 is None else _jacobians(apply, params, x2, layout)
    return _contract(j1, j2, layout.kt)


def _ntk_ntvp(apply, params, x1, x2, layout):
    xb = x1 if x2 is None else x2
    _, f1_lin = jax.linearize(lambda p: apply(p, x1), params)
    ko = layout.kk * layout.kt
    basis = jnp.eye(ko, dtype=jax.eval_shape(lambda: apply(params, _head(x1))).dtype)

    def column(xi):
        _, vjp = jax.vjp(lambda p: apply(p, jax.tree.map(lambda a: a[None], xi))[0], params)
        # Cotangent for output component o of this example, in the kept/traced order.
        cts = jax.vmap(lambda e: unsplit(e, layout))(basis)
        vs = jax.vmap(lambda ct: vjp(ct)[0])(cts)  # params with a leading Ko axis
        outs = layout.split(jax.vmap(f1_lin)(vs), lead=2)  # (Ko, N1, Kk, Kt)
        outs = outs.reshape(layout.kk, layout.kt, _count(x1), layout.kk, layout.kt)
        # theta[a, i, j] = mean over t of d f_(i,t)(x1_a) . d f_(j,t)(xi)
        return jnp.einsum("jtait->aij", outs) / layout.kt

    cols = jax.lax.map(column, xb)  # (N2, N1, Kk, Kk)
    return jnp.transpose(cols, (1, 0, 2, 3))


def _param_count(params):
    return sum(int(np.prod(np.shape(leaf))) for leaf in jax.tree.leaves(params))


def choose_implementation(f, params, x1, x2, trace_axes=(-1,), apply_kwargs=None) -> str:
    """The implementation ``'auto'`` picks, with the cost model it uses.

    * ``'structured'`` whenever ``f`` is an ``ntkgp.nn`` network made of Dense layers: its
      cost is a few matrix products of widths, orders of magnitude below the others.
    * otherwise ``'jacobian'`` when the Jacobians fit in a quarter of free memory and
      at most 4 output blocks are kept per pair (its contraction costs ``2 N1 N2 Kk^2 Kt P``
      flops in one matrix product, vs about ``6 N1 N2 Kk Kt P`` for ``'ntvp'``);
    * else ``'ntvp'``.

    Args:
        f: an ``ntkgp.nn`` `Layer` or any ``f(params, x)``.
        params: a pytree of parameters of ``f``.
        x1: inputs ``(N1, ...)``.
        x2: inputs ``(N2, ...)`` or ``None``.
        trace_axes: output axes averaged over (``()`` keeps full blocks).
        apply_kwargs: keyword arguments of ``f`` as the kernel function takes them (see
            `empirical_ntk_fn`); with any, ``'structured'`` is not an option.

    Returns:
        ``'structured'``, ``'jacobian'`` or ``'ntvp'``.
    """
    layer = as_layer(f)
    if layer is not None and layer.structured and not apply_kwargs:
        return "structured"
    per1, _, shared = split_kwargs(apply_kwargs or {}, BATCHED_KWARGS, x1, x2)
    out_shape = _out_shape(_bind(as_apply_fn(f), shared), params, (x1, per1))
    layout = Layout(out_shape, trace_axes)
    n1 = x1.shape[0]
    n2 = 0 if x2 is None else x2.shape[0]
    itemsize = np.dtype(x1.dtype).itemsize
    jac_bytes = (n1 + n2) * layout.kk * layout.kt * _param_count(params) * itemsize
    if jac_bytes < device_free_memory_bytes() / 4 and layout.kk <= 4:
        return "jacobian"
    return "ntvp"


_IMPLS = {"jacobian": _ntk_jacobian, "ntvp": _ntk_ntvp, "structured": ntk_structured}


def empirical_ntk_fn(f, trace_axes: Sequence[int] = (-1,), implementation: str = "auto",
                     batched_kwargs: Sequence[str] = BATCHED_KWARGS) -> Callable:
    r"""The finite-width NTK :math:`\hat\Theta(x_1, x_2) = J(x_1) J(x_2)^\top` of ``f``.

    Args:
        f: ``f(params, x) -> y`` with ``params`` any pytree (an ``ntkgp.nn`` network's
            ``apply``, a Flax ``model.apply``, an Equinox model split into params and static
            parts), or an ``ntkgp.nn`` `Layer`. ``y`` has shape ``(N, *O)``.
        trace_axes: output axes (of ``y``) to average over; ``(-1,)`` gives an ``(N1, N2)``
            kernel for ``y`` of shape ``(N, K)``, ``()`` the full ``(N1, N2, K, K)`` blocks.
        implementation: ``'auto'``, ``'jacobian'``, ``'ntvp'`` or ``'structured'`` (ntkgp.nn
            Dense networks only); see the module docstring and `choose_implementation`.
        batched_kwargs: names of keyword arguments of ``f`` that hold one entry per example
            (the graphs of `ntkgp.nn.Aggregate`, ``pattern``), passed to ``ntk_fn`` as a pair
            ``(for_x1, for_x2)`` (``for_x1`` alone when ``x2`` is ``None``) and split with
            the examples; other keyword arguments go to every call of ``f`` unchanged.

    Returns:
        ``ntk_fn(x1, x2, params, **kwargs)`` returning an array of shape
        ``(N1, N2, *kept, *kept)`` (``x2=None`` means ``x1``; the result is then exactly
        symmetric); ``kwargs`` go to ``f`` (e.g. ``pattern=(A1, A2)``).

    Example:
        >>> import jax, numpy as np
        >>> from ntkgp import nn, empirical
        >>> net = nn.serial(nn.Dense(64), nn.Relu(), nn.Dense(3))
        >>> _, params = net.init(jax.random.PRNGKey(0), (-1, 5))
        >>> x = np.ones((4, 5), np.float32)
        >>> empirical.empirical_ntk_fn(net)(x, None, params).shape
        (4, 4)

    References:
        Novak et al. 2022, "Fast finite width neural tangent kernel",
        https://arxiv.org/abs/2206.08720.
    """
    checks.check_choice(implementation, "implementation", IMPLEMENTATIONS)
    apply = as_apply_fn(f)
    layer = as_layer(f)
    if implementation == "structured" and (layer is None or not layer.structured):
        raise ValueError("implementation='structured' needs an ntkgp.nn network whose "
                         "parameters are all in Dense layers; got "
                         f"{getattr(layer, 'name', type(f).__name__)}. Use 'auto', "
                         "'jacobian' or 'ntvp' for other functions.")

    @functools.partial(jax.jit, static_argnames=("impl",))
    def _core(x1, x2, params, shared, impl):
        if impl == "structured":
            x1, x2, fn = x1[0], None if x2 is None else x2[0], apply
        else:
            fn = _bind(apply, shared)
        layout = Layout(_out_shape(fn, params, x1), trace_axes)
        theta = _IMPLS[impl](fn, params, x1, x2, layout)
        if x2 is None:
            theta = _symmetrize(theta)
        return layout.finish(theta)

    def ntk_fn(x1, x2=None, params=None, **kwargs):
        x1, x2 = checks.check_inputs(x1, x2, ndim=None)
        if params is None:
            raise TypeError("`params` is required: ntk_fn(x1, x2, params).")
        per1, per2, shared = split_kwargs(kwargs, batched_kwargs, x1, x2)
        impl = implementation
        if impl == "structured" and kwargs:
            raise ValueError("implementation='structured' takes no keyword arguments of `f` "
                             f"(got {sorted(kwargs)}); use 'auto', 'jacobian' or 'ntvp'.")
        if impl == "auto":
            impl = choose_implementation(f, params, x1, x2, trace_axes, kwargs)
        return _core((x1, per1), None if x2 is None else (x2, per2), params, shared, impl)

    return ntk_fn


def empirical_nngp_fn(f, trace_axes: Sequence[int] = (-1,),
                      batched_kwargs: Sequence[str] = BATCHED_KWARGS) -> Callable:
    r"""The finite-width NNGP :math:`\hat K(x_1, x_2) = f(x_1) f(x_2)^\top` of ``f``, averaged
    over ``trace_axes``.

    Args:
        f: an ``ntkgp.nn`` `Layer` or any ``f(params, x)``.
        trace_axes: output axes averaged over; ``()`` keeps full ``K x K`` output blocks.
        batched_kwargs: keyword arguments with one entry per example (see
            `empirical_ntk_fn`).

    Returns:
        ``nngp_fn(x1, x2, params, **kwargs)`` returning an array of shape
        ``(N1, N2, *kept, *kept)``.
    """
    apply = as_apply_fn(f)

    @jax.jit
    def _core(x1, x2, params, shared):
        fn = _bind(apply, shared)
        y1 = fn(params, x1)
        layout = Layout(y1.shape[1:], trace_axes)
        y2 = y1 if x2 is None else fn(params, x2)
        s1, s2 = layout.split(y1), layout.split(y2)
        k = jnp.einsum("ait,bjt->abij", s1, s2, precision=jax.lax.Precision.HIGHEST) / layout.kt
        return layout.finish(k)

    def nngp_fn(x1, x2=None, params=None, **kwargs):
        x1, x2 = checks.check_inputs(x1, x2, ndim=None)
        if params is None:
            raise TypeError("`params` is required: nngp_fn(x1, x2, params).")
        per1, per2, shared = split_kwargs(kwargs, batched_kwargs, x1, x2)
        return _core((x1, per1), None if x2 is None else (x2, per2), params, shared)

    return nngp_fn


def empirical_kernel_fn(f, trace_axes: Sequence[int] = (-1,), implementation: str = "auto",
                        batched_kwargs: Sequence[str] = BATCHED_KWARGS) -> Callable:
    """Both empirical kernels: ``kernel_fn(x1, x2=None, get=None, params=None)``.

    Returns a `Kernel` (``get`` a tuple or ``None``) or one array (``get`` a string). With all
    output axes traced, ``cov1``/``cov2`` are the per-example output variances.

    Args:
        f: an ``ntkgp.nn`` `Layer` or any ``f(params, x)``.
        trace_axes: output axes averaged over; ``()`` keeps full ``K x K`` output blocks.
        implementation: of the NTK: ``'auto'``, ``'structured'``, ``'jacobian'`` or ``'ntvp'``
            (see `empirical_ntk_fn`).
        batched_kwargs: keyword arguments with one entry per example (see
            `empirical_ntk_fn`).

    Returns:
        ``kernel_fn(x1, x2=None, get=None, params=None, **kwargs)``; arrays of shape
        ``(N1, N2, *kept, *kept)``; ``kwargs`` go to ``f``.
    """
    ntk_fn = empirical_ntk_fn(f, trace_axes, implementation, batched_kwargs)
    nngp_fn = empirical_nngp_fn(f, trace_axes, batched_kwargs)
    apply = as_apply_fn(f)

    @jax.jit
    def variance(x, params, shared):
        y = _bind(apply, shared)(params, x)
        return jnp.mean(y.reshape(y.shape[0], -1) ** 2, axis=-1)

    def kernel_fn(x1, x2=None, get=None, params=None, **kwargs):
        names, single = checks.normalize_get(get)
        out = {}
        if "nngp" in names:
            out["nngp"] = nngp_fn(x1, x2, params, **kwargs)
        if "ntk" in names:
            out["ntk"] = ntk_fn(x1, x2, params, **kwargs)
        if single:
            return out[names[0]]
        x1c, x2c = checks.check_inputs(x1, x2, ndim=None)
        per1, per2, shared = split_kwargs(kwargs, batched_kwargs, x1c, x2c)
        return Kernel(nngp=out.get("nngp"), ntk=out.get("ntk"),
                      cov1=variance((x1c, per1), params, shared),
                      cov2=None if x2c is None else variance((x2c, per2), params, shared),
                      x1_is_x2=x2c is None)

    return kernel_fn
