r"""Finite-width (empirical) kernels of any ``f(params, x)``.

.. math::
    \hat\Theta(x_1, x_2) = \frac{\partial f(x_1)}{\partial \theta}
        \frac{\partial f(x_2)}{\partial \theta}^\top, \qquad
    \hat K(x_1, x_2) = f(x_1) f(x_2)^\top,

averaged (not summed) over the output axes in ``trace_axes``, so that the kernel of a network
with K outputs estimates the per-output infinite-width kernel.

Three implementations give the same numbers:

* ``'jacobian'``: Jacobians, contracted with one matrix product. Memory
  ``(N1 + N2) * K * P``; fastest when that fits and few output blocks are kept.
* ``'ntvp'``: NTK-vector products: for every output of every ``x2`` example a VJP gives a
  parameter vector and a JVP on all of ``x1`` gives a column of the kernel. Never holds a
  Jacobian: memory ``K * P``.
* ``'structured'``: for ``ntkgp.nn`` networks. A Dense layer :math:`h = c\,W a + c_b b` adds
  :math:`(c^2\, a_1 \cdot a_2 + c_b^2)\,(g_1 \cdot g_2)` with :math:`g = \partial f/\partial h`
  (the back-propagated signal), so only inputs and signals per layer are needed.

Output axes are traced (averaged), kept as pairs or kept as a diagonal (``diagonal_axes``),
as neural-tangents lays them out (see `ntkgp._src.kernels.layout`). With ``vmap_axes=0`` the
examples are taken to be independent (``f`` of a batch is ``f`` of each example, stacked) and
Jacobians are per example; with ``None`` (the default, as in neural-tangents) they are of the
whole batch, which is right for any ``f`` but costs a factor of the batch size more. Networks
of ``ntkgp.nn`` are known to treat examples independently, whatever ``vmap_axes`` says.
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp

from ntkgp._src import checks
from ntkgp._src.empirical import implementations as impls
from ntkgp._src.empirical.functions import (
    BATCHED_KWARGS,
    adapt,
    as_apply_fn,
    as_layer,
    bind_params,
    independent_examples,
    split_kwargs,
)
from ntkgp._src.kernels.kernel import Kernel
from ntkgp._src.kernels.layout import DIAGONAL, PAIR, Layout

IMPLEMENTATIONS = ("auto", "jacobian", "ntvp", "structured")


def choose_implementation(f, params, x1, x2, trace_axes=(-1,), apply_kwargs=None,
                          diagonal_axes=()) -> str:
    """The implementation ``'auto'`` picks, with the cost model it uses.

    * ``'structured'`` whenever ``f`` is an ``ntkgp.nn`` network made of Dense layers: its
      cost is a few matrix products of widths, orders of magnitude below the others.
    * otherwise ``'jacobian'`` when the Jacobians fit in a quarter of free memory and
      at most 4 output blocks are kept per pair (its contraction costs ``2 N1 N2 Kk^2 Kt P``
      flops in one matrix product, vs about ``6 N1 N2 Kk Kt P`` for ``'ntvp'``);
    * else ``'ntvp'``.

    Args:
        f: an ``ntkgp.nn`` `Layer`, any ``f(params, x)``, an Equinox or Flax module.
        params: a pytree of parameters of ``f`` (for modules, see `empirical_ntk_fn`).
        x1: inputs ``(N1, ...)``.
        x2: inputs ``(N2, ...)`` or ``None``.
        trace_axes: output axes averaged over (``()`` keeps full blocks).
        apply_kwargs: keyword arguments of ``f`` as the kernel function takes them (see
            `empirical_ntk_fn`); with any, ``'structured'`` is not an option.
        diagonal_axes: output axes kept as a diagonal.

    Returns:
        ``'structured'``, ``'jacobian'`` or ``'ntvp'``.
    """
    layer = as_layer(f)
    if layer is not None and layer.structured and not apply_kwargs:
        return "structured"
    adapter = adapt(f)
    if adapter is not None:
        params, apply_kwargs = bind_params(adapter, params, apply_kwargs or {}, "")
    per1, _, shared = split_kwargs(apply_kwargs or {}, BATCHED_KWARGS, x1, x2)
    shape = impls.out_shape(impls.bind(as_apply_fn(f, True), shared), params, (x1, per1))
    fits = impls.jacobian_fits(params, x1, x2, shape, trace_axes, diagonal_axes)
    return "jacobian" if fits else "ntvp"


def _symmetrize(theta, lead):
    """Exact symmetry of a kernel of x1 with itself, ``(*lead, Kk, Kk, Kd)``."""
    perm = list(range(theta.ndim))
    i, j = lead, lead + 1  # the pair of kept output axes
    perm[i], perm[j] = j, i
    if lead == 2:
        perm[0], perm[1] = 1, 0
    return 0.5 * (theta + jnp.transpose(theta, perm))


def _pairs(kernel, x1, x2, layout, independent, same_examples=None):
    """``kernel(x1, x2) -> (N1, N2, Kk, Kk, Kd)`` reduced over the examples as
    ``layout.batch`` says: ``(N1, N2, ...)``, ``(N, ...)`` (their diagonal) or ``(...)``
    (their mean). Independent examples are paired one at a time; otherwise
    ``same_examples(x1, x2) -> (N, Kk, Kk, Kd)`` when the implementation has it, else the
    diagonal of the full kernel."""
    if layout.batch == PAIR:
        theta = kernel(x1, x2)
        return _symmetrize(theta, 2) if x2 is None else theta
    if x2 is not None and impls.count(x1) != impls.count(x2):
        raise ValueError("`diagonal_axes`/`trace_axes` with the examples' axis 0 pair each "
                         f"example of x1 with the same one of x2; got {impls.count(x1)} and "
                         f"{impls.count(x2)} examples. Pass x2=None or equally many.")
    if independent:  # one example pair at a time
        def one(a, b):
            add1 = lambda t: jax.tree.map(lambda v: v[None], t)
            return kernel(add1(a), None if b is None else add1(b))[0, 0]
        theta = (jax.vmap(lambda a: one(a, None))(x1) if x2 is None
                 else jax.vmap(one)(x1, x2))
    elif same_examples is not None:
        theta = same_examples(x1, x2)
    else:
        theta = jnp.diagonal(kernel(x1, x2), axis1=0, axis2=1)
        theta = jnp.moveaxis(theta, -1, 0)
    if x2 is None:
        theta = _symmetrize(theta, 1)
    return theta if layout.batch == DIAGONAL else jnp.mean(theta, axis=0)


def empirical_ntk_fn(f, trace_axes: Sequence[int] = (-1,), diagonal_axes: Sequence[int] = (),
                     vmap_axes=None, implementation: str = "auto",
                     batched_kwargs: Sequence[str] = BATCHED_KWARGS) -> Callable:
    r"""The finite-width NTK :math:`\hat\Theta(x_1, x_2) = J(x_1) J(x_2)^\top` of ``f``.

    Args:
        f: ``f(params, x) -> y`` with ``params`` any pytree (an ``ntkgp.nn`` network's
            ``apply``, a Flax ``model.apply``), an ``ntkgp.nn`` `Layer`, or a module: an
            Equinox module (applied to one example at a time, as Equinox's layers are),
            a Flax linen module or a Flax nnx module (applied to the batch). ``y`` has
            shape ``(N, *O)``. A module's ``params`` are: Equinox and nnx, ``None`` for the
            module's own parameters or another module of the same structure (its inexact
            arrays, its ``nnx.Param`` state); linen, the variables of ``model.init``
            (``'params'`` differentiated, other collections held fixed).
        trace_axes: output axes (of ``y``, the examples' axis 0 among them) to average over;
            ``(-1,)`` gives an ``(N1, N2)`` kernel for ``y`` of shape ``(N, K)``, ``()`` the
            full ``(N1, N2, K, K)`` blocks, ``(0, -1)`` the mean over examples.
        diagonal_axes: output axes of which only the diagonal is computed: ``(0,)`` gives
            ``(N,)`` per-example kernels (``x1`` and ``x2`` equally many), ``(-1,)`` with
            ``trace_axes=()`` gives ``(N1, N2, K)``. Cheaper than keeping full pairs.
        vmap_axes: ``None`` (no assumption on ``f``), ``0`` (``f`` treats examples
            independently: Jacobians per example, a factor of N cheaper) or neural-tangents'
            ``(in_axes, out_axes, kwargs_axes)`` with axis 0 (``kwargs_axes`` names keyword
            arguments with one entry per example). Irrelevant for ``ntkgp.nn`` networks.
        implementation: ``'auto'``, ``'jacobian'``, ``'ntvp'`` or ``'structured'`` (ntkgp.nn
            Dense networks only); see the module docstring and `choose_implementation`.
        batched_kwargs: names of keyword arguments of ``f`` that hold one entry per example
            (the graphs of `ntkgp.nn.Aggregate`, ``pattern``), passed to ``ntk_fn`` as a pair
            ``(for_x1, for_x2)`` (``for_x1`` alone when ``x2`` is ``None``) and split with
            the examples; other keyword arguments go to every call of ``f`` unchanged.

    Returns:
        ``ntk_fn(x1, x2, params, **kwargs)`` returning an array with the output axes in
        order, each kept one twice and each diagonal one once, e.g. ``(N1, N2, H1, H2, C1,
        C2)`` for ``y`` of shape ``(N, H, C)`` and ``trace_axes=()`` (``x2=None`` means
        ``x1``; the result is then exactly symmetric); ``kwargs`` go to ``f`` (e.g.
        ``pattern=(A1, A2)``).

    Example:
        >>> import jax, numpy as np
        >>> from ntkgp import nn, empirical
        >>> net = nn.serial(nn.Dense(64), nn.Relu(), nn.Dense(3))
        >>> _, params = net.init(jax.random.PRNGKey(0), (-1, 5))
        >>> x = np.ones((4, 5), np.float32)
        >>> empirical.empirical_ntk_fn(net)(x, None, params).shape
        (4, 4)
        >>> empirical.empirical_ntk_fn(net, (), (0,))(x, None, params).shape
        (4, 3, 3)

    References:
        Novak et al. 2022, "Fast finite width neural tangent kernel",
        https://arxiv.org/abs/2206.08720.
    """
    checks.check_choice(implementation, "implementation", IMPLEMENTATIONS)
    apply = as_apply_fn(f, True)
    layer = as_layer(f)
    adapter = adapt(f)
    independent, batched_kwargs = independent_examples(f, vmap_axes, batched_kwargs)
    if implementation == "structured" and (layer is None or not layer.structured):
        raise ValueError("implementation='structured' needs an ntkgp.nn network whose "
                         "parameters are all in Dense layers; got "
                         f"{getattr(layer, 'name', type(f).__name__)}. Use 'auto', "
                         "'jacobian' or 'ntvp' for other functions.")

    @functools.partial(jax.jit, static_argnames=("impl",))
    def _core(x1, x2, params, shared, impl):
        fn = impls.bind(apply, shared)
        layout = Layout(impls.out_shape(fn, params, x1), trace_axes, diagonal_axes)
        if impl == "structured":
            def kernel(a, b):
                return impls.IMPLS[impl](apply, params, a[0], None if b is None else b[0],
                                         layout, True)
        else:
            def kernel(a, b):
                return impls.IMPLS[impl](fn, params, a, b, layout, independent)
        same = None
        if impl == "jacobian":
            def same(a, b):
                return impls.ntk_jacobian(fn, params, a, b, layout, independent, True)
        return layout.finish(_pairs(kernel, x1, x2, layout, independent, same))

    def ntk_fn(x1, x2=None, params=None, **kwargs):
        x1, x2 = checks.check_inputs(x1, x2, ndim=None)
        params, kwargs = bind_params(adapter, params, kwargs, "ntk_fn")
        per1, per2, shared = split_kwargs(kwargs, batched_kwargs, x1, x2)
        impl = implementation
        if impl == "structured" and kwargs:
            raise ValueError("implementation='structured' takes no keyword arguments of `f` "
                             f"(got {sorted(kwargs)}); use 'auto', 'jacobian' or 'ntvp'.")
        if impl == "auto":
            impl = choose_implementation(apply if adapter else f, params, x1, x2, trace_axes,
                                         kwargs, diagonal_axes)
        return _core((x1, per1), None if x2 is None else (x2, per2), params, shared, impl)

    return ntk_fn


def empirical_nngp_fn(f, trace_axes: Sequence[int] = (-1,), diagonal_axes: Sequence[int] = (),
                      batched_kwargs: Sequence[str] = BATCHED_KWARGS) -> Callable:
    r"""The finite-width NNGP :math:`\hat K(x_1, x_2) = f(x_1) f(x_2)^\top` of ``f``, averaged
    over ``trace_axes``.

    Args:
        f: an ``ntkgp.nn`` `Layer` or any ``f(params, x)``.
        trace_axes: output axes averaged over; ``()`` keeps full ``K x K`` output blocks.
        diagonal_axes: output axes of which only the diagonal is kept (see
            `empirical_ntk_fn`).
        batched_kwargs: keyword arguments with one entry per example (see
            `empirical_ntk_fn`).

    Returns:
        ``nngp_fn(x1, x2, params, **kwargs)`` returning an array laid out as
        `empirical_ntk_fn`'s.
    """
    apply = as_apply_fn(f, True)
    adapter = adapt(f)

    @jax.jit
    def _core(x1, x2, params, shared):
        fn = impls.bind(apply, shared)
        y1 = fn(params, x1)
        layout = Layout(y1.shape[1:], trace_axes, diagonal_axes)
        s1 = layout.split(y1)
        s2 = s1 if x2 is None else layout.split(fn(params, x2))

        def kernel(a, b):  # a, b: index arrays into the examples
            return jnp.einsum("aidt,bjdt->abijd", s1[a], s2[b],
                              precision=impls.HIGHEST) / layout.kt

        n1 = s1.shape[0]
        idx2 = None if x2 is None else jnp.arange(s2.shape[0])
        # the outputs are computed: any pairing of examples is exact, however f couples them
        theta = _pairs(lambda a, b: kernel(a, a if b is None else b), jnp.arange(n1), idx2,
                       layout, True)
        return layout.finish(theta)

    def nngp_fn(x1, x2=None, params=None, **kwargs):
        x1, x2 = checks.check_inputs(x1, x2, ndim=None)
        params, kwargs = bind_params(adapter, params, kwargs, "nngp_fn")
        per1, per2, shared = split_kwargs(kwargs, batched_kwargs, x1, x2)
        return _core((x1, per1), None if x2 is None else (x2, per2), params, shared)

    return nngp_fn


def empirical_kernel_fn(f, trace_axes: Sequence[int] = (-1,), diagonal_axes: Sequence[int] = (),
                        vmap_axes=None, implementation: str = "auto",
                        batched_kwargs: Sequence[str] = BATCHED_KWARGS) -> Callable:
    """Both empirical kernels: ``kernel_fn(x1, x2=None, get=None, params=None)``.

    Returns a `Kernel` (``get`` a tuple or ``None``) or one array (``get`` a string). With all
    output axes traced, ``cov1``/``cov2`` are the per-example output variances.

    Args:
        f: an ``ntkgp.nn`` `Layer` or any ``f(params, x)``.
        trace_axes: output axes averaged over; ``()`` keeps full ``K x K`` output blocks.
        diagonal_axes: output axes of which only the diagonal is kept.
        vmap_axes: whether ``f`` treats examples independently (see `empirical_ntk_fn`).
        implementation: of the NTK: ``'auto'``, ``'structured'``, ``'jacobian'`` or ``'ntvp'``
            (see `empirical_ntk_fn`).
        batched_kwargs: keyword arguments with one entry per example (see
            `empirical_ntk_fn`).

    Returns:
        ``kernel_fn(x1, x2=None, get=None, params=None, **kwargs)``; arrays laid out as
        `empirical_ntk_fn`'s; ``kwargs`` go to ``f``.
    """
    adapter = adapt(f)
    if adapter is not None:  # bound once here; the two kernels get the adapter's apply
        f = as_apply_fn(f, True)
        vmap_axes = 0 if vmap_axes is None and adapter.independent else vmap_axes
    ntk_fn = empirical_ntk_fn(f, trace_axes, diagonal_axes, vmap_axes, implementation,
                              batched_kwargs)
    _, batched_kwargs = independent_examples(f, vmap_axes, batched_kwargs)
    nngp_fn = empirical_nngp_fn(f, trace_axes, diagonal_axes, batched_kwargs)
    apply = as_apply_fn(f)

    @jax.jit
    def variance(x, params, shared):
        y = impls.bind(apply, shared)(params, x)
        return jnp.mean(y.reshape(y.shape[0], -1) ** 2, axis=-1)

    def kernel_fn(x1, x2=None, get=None, params=None, **kwargs):
        names, single = checks.normalize_get(get)
        if adapter is not None:
            params, kwargs = bind_params(adapter, params, kwargs, "kernel_fn")
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
