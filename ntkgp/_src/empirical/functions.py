r"""What the empirical kernels take as ``f``: an ``ntkgp.nn`` layer, any ``f(params, x)``, an
Equinox module or a Flax model; and the keyword arguments of ``f``.

The kernels differentiate a function of a pytree of parameters. A module of another library
holds its parameters (Equinox, Flax nnx) or takes them as variables (Flax linen); an
`Adapter` gives the kernels its ``apply(params, x)`` and turns what a user passes as
``params`` into the pytree that is differentiated:

============  ==============================  ==========================================
library       ``params`` the kernels take     differentiated; held fixed
============  ==============================  ==========================================
Equinox       ``None`` (the module's own), a  its inexact arrays
              module of the same structure,   (``eqx.is_inexact_array``); the rest as
              or ``eqx.partition``'s arrays   in the module given to the kernel function
Flax linen    the variables of ``init``       the ``'params'`` collection; the others
                                              (``batch_stats``...) as given
Flax nnx      ``None`` (the module's own), a  its ``nnx.Param`` state; other state
              module, or an ``nnx.State`` of  (batch statistics, RNG counters) as in the
              its parameters                  module given to the kernel function
============  ==============================  ==========================================

Batching: an Equinox module maps **one example** to its output (Equinox's convention: its
layers take unbatched inputs), so it is mapped over the examples (``jax.vmap``) and the
examples are independent; Flax models take the **batch** as it is, and examples are
independent only if ``vmap_axes=0`` says so (a BatchNorm in training mode couples them).

The libraries are recognized without being imported: a module can only come from a library
the caller has imported.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

STATE_KW = "_ntkgp_fixed_state"  # a shared keyword argument carrying the fixed state


class Adapter(NamedTuple):
    """``apply(params, x, **kwargs)`` of a module and how a user's ``params`` map to it.

    Attributes:
        name: the kind of module, for messages.
        apply: ``apply(params, x, **kwargs) -> (N, *O)`` on a batch of examples.
        split: ``split(params) -> (differentiated pytree, fixed state or None)``.
        independent: whether examples are known to be independent (Equinox: mapped).
    """

    name: str
    apply: Callable
    split: Callable[[Any], tuple]
    independent: bool


def _module_type(lib: str, attr: str):
    mod = sys.modules.get(lib)
    return getattr(mod, attr, None) if mod is not None else None


def adapt(f) -> Adapter | None:
    """The `Adapter` of an Equinox module or a Flax (linen or nnx) model, else ``None``."""
    eqx_module = _module_type("equinox", "Module")
    if eqx_module is not None and isinstance(f, eqx_module):
        return _equinox(f)
    nnx_module = _module_type("flax.nnx", "Module")
    if nnx_module is not None and isinstance(f, nnx_module):
        return _nnx(f)
    linen_module = _module_type("flax.linen", "Module")
    if linen_module is not None and isinstance(f, linen_module):
        return _linen(f)
    return None


def _equinox(model) -> Adapter:
    import equinox as eqx

    own, static = eqx.partition(model, eqx.is_inexact_array)
    structure = jax.tree.structure(own)

    def apply(p, x, **kwargs):
        fn = eqx.combine(p, static)
        return jax.vmap(lambda xi: fn(xi, **kwargs))(x)

    def split(params):
        if params is None:
            return own, None
        if isinstance(params, eqx.Module):
            params = eqx.filter(params, eqx.is_inexact_array)
        if jax.tree.structure(params) != structure:
            raise ValueError(
                f"`params` for the Equinox module {type(model).__name__} must be a module of "
                "the same structure (or eqx.partition(module, eqx.is_inexact_array)[0], or "
                f"None for the module's own); got a pytree {jax.tree.structure(params)}, "
                f"expected {structure}.")
        return params, None

    return Adapter(f"Equinox module {type(model).__name__}", apply, split, True)


def _linen(model) -> Adapter:
    def apply(p, x, **kwargs):
        fixed = kwargs.pop(STATE_KW, None) or {}
        return model.apply({**fixed, "params": p}, x, **kwargs)

    def split(params):
        if params is None:
            raise TypeError(
                f"`params` is required for the Flax linen module {type(model).__name__}: "
                "pass the variables of model.init(key, x).")
        if not hasattr(params, "keys") or "params" not in params:
            raise ValueError(
                f"`params` for the Flax linen module {type(model).__name__} must be the "
                "variables of model.init(key, x), a mapping with a 'params' collection; got "
                f"{type(params).__name__} with keys "
                f"{sorted(params) if hasattr(params, 'keys') else None}.")
        fixed = {k: v for k, v in params.items() if k != "params"}
        return params["params"], (fixed or None)

    return Adapter(f"Flax linen module {type(model).__name__}", apply, split, False)


def _nnx(model) -> Adapter:
    from flax import nnx

    graphdef, own, rest = nnx.split(model, nnx.Param, ...)

    def apply(p, x, **kwargs):
        fixed = kwargs.pop(STATE_KW, rest)
        return nnx.merge(graphdef, p, fixed)(x, **kwargs)

    def split(params):
        if params is None:
            return own, None
        if isinstance(params, nnx.Module):
            _, params, fixed = nnx.split(params, nnx.Param, ...)
            return params, fixed
        if not isinstance(params, nnx.State):
            raise ValueError(
                f"`params` for the Flax nnx module {type(model).__name__} must be a module, "
                "its parameters (nnx.state(module, nnx.Param)) or None for its own; got "
                f"{type(params).__name__}.")
        return params, None

    return Adapter(f"Flax nnx module {type(model).__name__}", apply, split, False)


def bind_params(adapter: Adapter | None, params, kwargs: dict, what: str) -> tuple:
    """``(params, kwargs)`` as the kernels take them: the adapter's differentiated pytree,
    with any fixed state as a shared keyword argument. Without an adapter, ``params`` is
    required as it is."""
    if adapter is None:
        if params is None:
            raise TypeError(f"`params` is required: {what}(x1, x2, params).")
        return params, kwargs
    if STATE_KW in kwargs:
        raise TypeError(f"`{STATE_KW}` is reserved for the state of {adapter.name}.")
    params, fixed = adapter.split(params)
    if fixed is not None:
        kwargs = {**kwargs, STATE_KW: fixed}
    return params, kwargs


def as_layer(f):
    from ntkgp._src.nn.core import Layer
    if isinstance(f, Layer):
        return f
    return getattr(f, "_ntkgp_layer", None)


def as_apply_fn(f, modules: bool = False):
    """``f(params, x)`` of an ``ntkgp.nn`` layer or a function; with ``modules``, also of an
    Equinox or Flax module (its `Adapter`'s ``apply``, taking the differentiated pytree)."""
    layer = as_layer(f)
    if layer is not None:
        return layer.apply
    adapter = adapt(f)
    if adapter is not None:
        if modules:
            return adapter.apply
        raise TypeError(f"`f` is an {adapter.name}; here it must be a function f(params, x) "
                        "or an ntkgp.nn layer (the empirical kernels take modules directly). "
                        "For Equinox: params, static = eqx.partition(model, "
                        "eqx.is_inexact_array); f = lambda p, x: jax.vmap(eqx.combine(p, "
                        "static))(x). For Flax linen: f = model.apply, params = variables.")
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


def independent_examples(f, vmap_axes, batched_kwargs):
    """``(independent, batched_kwargs)`` from neural-tangents' ``vmap_axes``: ``None``, ``0``
    or ``(in_axes, out_axes, kwargs_axes)`` with the examples on axis 0 (``kwargs_axes`` a
    dict naming keyword arguments with one entry per example, on their axis 0)."""
    batched = tuple(batched_kwargs)
    adapter = adapt(f)
    known = as_layer(f) is not None or (adapter is not None and adapter.independent)
    if vmap_axes is None:
        return known, batched
    fix = ("ntkgp's empirical kernels take the examples on axis 0 of `x` and of the output of "
           "`f`; move the batch axis first (jnp.moveaxis) and pass vmap_axes=0, or "
           "vmap_axes=None to assume nothing.")
    if isinstance(vmap_axes, (int, np.integer)) and not isinstance(vmap_axes, bool):
        if vmap_axes != 0:
            raise ValueError(f"vmap_axes={vmap_axes} is not supported: {fix}")
        return True, batched
    if not isinstance(vmap_axes, (tuple, list)) or len(vmap_axes) != 3:
        raise TypeError(f"`vmap_axes` must be None, 0 or (in_axes, out_axes, kwargs_axes); got "
                        f"{vmap_axes!r}.")
    in_axes, out_axes, kwargs_axes = vmap_axes
    if in_axes is None and out_axes is None:
        return known, batched
    if in_axes != 0 or out_axes != 0:
        raise ValueError(f"vmap_axes with in_axes={in_axes!r}, out_axes={out_axes!r} is not "
                         f"supported: {fix}")
    kwargs_axes = kwargs_axes or {}
    if not isinstance(kwargs_axes, dict) or any(a not in (0, None)
                                                  for a in kwargs_axes.values()):
        raise ValueError(f"`kwargs_axes` of `vmap_axes` must be a dict of keyword names to 0 "
                         f"(one entry per example) or None (shared); got {kwargs_axes!r}.")
    return True, batched + tuple(k for k, a in kwargs_axes.items() if a == 0)
