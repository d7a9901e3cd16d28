"""`Layer`: the (init, apply, kernel) triple of a network and its infinite-width limit."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.kernels import masks
from ntkgp._src.kernels.kernel import Kernel, input_kernel
from ntkgp._src.kernels.spatial import kernel_to_diagonal
from ntkgp._src.nn.blocking import per_pair, row_chunked


def keep_diag(out_ok: bool) -> bool:
    """The `Layer.diag_ok` of position-wise layers: the input needs what the output needs."""
    return out_ok


def keep_mask(mask):
    """The `Layer.mask_map` of layers that keep the positions of their inputs."""
    return mask


def drop_mask(mask):
    """The `Layer.mask_map` of layers whose outputs have no positions (pooling, Flatten)."""
    return None


@dataclasses.dataclass(frozen=True, eq=False)
class Layer:
    """A network (or layer) with its finite-width functions and infinite-width kernel.

    ``init, apply, kernel = layer`` unpacks it as the stax-style triple.

    Attributes:
        init: ``init(key, input_shape) -> (output_shape, params)``; ``input_shape`` includes the
            batch axis (``-1`` allowed).
        apply: ``apply(params, x, **kwargs) -> y``; ``x`` of shape ``(N, d)`` gives ``y`` of
            shape ``(N, out_dim)``.
        kernel: ``kernel(x1, x2=None, get=None) -> Kernel`` (or an array when ``get`` is a
            string): the NNGP and NTK of this network in the infinite-width limit.
        name: a short description.
        kernel_map: maps the `Kernel` of this layer's inputs to that of its outputs (a list of
            Kernels for multi-branch layers); what the combinators compose.
        structured: ``True`` when every layer with parameters has a structured empirical-NTK
            rule (``ntkgp.empirical`` uses it for ``implementation='structured'``).
        heavy: ``True`` when the kernel map does nonlinear work per pair of inputs (activations);
            `serial` stores the kernel after each such layer (see `materialized`).
        diag_ok: ``diag_ok(out_ok) -> in_ok``: whether the layer's input kernel may track only
            pairs of the same spatial position, given whether its output kernel may
            (``False`` for pooling, ``True`` for Flatten, ``out_ok`` for position-wise layers
            and convolutions). The network's kernel uses it to compute only what its readout
            needs.
        spatial: ``True`` when the network has layers for spatial inputs (Conv, pooling,
            Flatten); a network without any takes ``(N, d)`` inputs only.
        mask_map: ``mask_map(mask) -> mask``: the position mask ``(N, *S)`` of the layer's
            outputs given that of its inputs (lists for multi-branch layers; ``None`` when
            the outputs have no positions); see ``mask_constant``.
        features: the layer's random-feature rule ``(feats, key, draws) -> feats``
            (``ntkgp._src.features.rules``), or ``None`` where it has none.
    """

    init: Callable
    apply: Callable
    kernel: Callable
    name: str
    kernel_map: Callable
    structured: bool = True
    heavy: bool = False
    diag_ok: Callable = keep_diag
    spatial: bool = False
    mask_map: Callable = keep_mask
    features: Optional[Callable] = None

    def __iter__(self):
        return iter((self.init, self.apply, self.kernel))

    def __len__(self):
        return 3

    def __getitem__(self, i):
        return (self.init, self.apply, self.kernel)[i]

    def __repr__(self):
        return f"Layer({self.name})"


def _select(k: Kernel, get: tuple, single: bool):
    if single:
        if get[0] == "cov2":
            return k.cov2_or_cov1
        return getattr(k, get[0])
    return k.replace(nngp=k.nngp if "nngp" in get else None,
                     ntk=k.ntk if "ntk" in get else None)


def make_kernel_fn(kernel_map: Callable, name: str, diag_ok: Callable = keep_diag,
                   spatial: bool = False) -> Callable:
    """The public ``kernel(x1, x2=None, get=None)`` of a network from its ``kernel_map``."""
    # The outputs themselves are returned with every pair of positions (when spatial), or
    # (diagonal_spatial=True) only the pairs of a position with itself.

    def _run(x1, x2, compute_ntk, mask_constant=None, diag_out=False):
        (x1, p1), (x2, p2) = _split_graph(x1), _split_graph(x2)
        m1 = m2 = None
        if mask_constant is not None:
            x1, e1 = masks.mask_inputs(x1, mask_constant)
            m1 = masks.position_mask(e1)
            if x2 is not None:
                x2, e2 = masks.mask_inputs(x2, mask_constant)
                m2 = masks.position_mask(e2)
        k = input_kernel(x1, x2, compute_ntk=compute_ntk,
                         diagonal_spatial=bool(diag_ok(diag_out)))
        out = kernel_map(masks.remask(k.replace(mask1=m1, mask2=m2, pattern1=p1,
                                                pattern2=p2)))
        if isinstance(out, (list, tuple)):
            raise ValueError(f"The network {name} ends with {len(out)} parallel branches; join "
                             "them with FanInSum() or FanInConcat() before taking its kernel.")
        if diag_out:
            out = kernel_to_diagonal(out)
        return out.replace(mask1=None, mask2=None, pattern1=None, pattern2=None)

    @functools.partial(jax.jit, static_argnames=("get", "masked", "diag_out"))
    def _core(x1, x2, get, mask_constant, masked, pattern1=None, pattern2=None,
              diag_out=False):
        run = functools.partial(_run, mask_constant=mask_constant if masked else None,
                                diag_out=diag_out)
        entries = per_pair(x1, bool(diag_ok(diag_out)))
        if pattern1 is not None:  # sliced into blocks of rows with their inputs
            x1 = (x1, pattern1)
            x2 = None if x2 is None else (x2, pattern2)
        k = row_chunked(run, x1, x2, "ntk" in get, entries)
        # finite iff every entry is (or the sum itself overflowed: then an exact check)
        total = sum(jnp.sum(a) for a in jax.tree.leaves(k) if hasattr(a, "dtype"))
        return k, jnp.isfinite(total)

    def kernel(x1, x2=None, get=None, *, mask_constant=None, pattern=None,
               diagonal_spatial=None, diagonal_batch=None) -> Any:
        r"""Infinite-width NNGP and NTK of the network.

        Args:
            x1: array of shape ``(N1, d)``, or ``(N1, *S, C)`` for convolutional networks
                (``S`` the spatial axes, ``C`` channels last).
            x2: array of shape ``(N2, ...)`` like ``x1``, or ``None`` for ``x1`` against
                itself (symmetric). An ``x2`` equal to ``x1`` (the same array, or entries
                within 1e-12 of it: neural-tangents' rule) is ``x1`` against itself too: its
                pairs of an input with itself are self-pairs (`Dropout`'s added variance),
                only the pairs on and above the diagonal are computed, and ``cov2`` is
                ``cov1``. Inside ``jit`` two arguments are two unknown arrays: there pass
                ``None`` (or the same traced array) for ``x1`` against itself.
            get: ``'nngp'``, ``'ntk'``, ``'cov1'`` or ``'cov2'`` (returns that array:
                ``(N1, N2)`` for the kernels, the per-example variances ``(N1,)``/``(N2,)``
                for ``cov1``/``cov2``), a tuple of them, or ``None`` for both kernels (returns
                a `Kernel`).
            mask_constant: entries of ``x1``/``x2`` equal to it are absent (e.g. the padding
                of sequences of different lengths; may be ``nan``): they are zeroed, and a
                spatial position with all channels absent takes no part in attention, pooling
                or normalization over positions, and its kernel entries are zero.
            pattern: the graphs of ``x1`` and ``x2`` for `Aggregate` layers, a pair
                ``(pattern1, pattern2)`` (``pattern2`` ``None`` when ``x2`` is; one array is
                taken as ``pattern1``), each with a first axis of examples.
            diagonal_spatial: for networks whose outputs keep spatial axes ``S``: ``True``
                returns only the pairs of a position with itself, ``(N1, N2, *S)``, and
                computes only those where no layer needs more; ``None``/``False``: every pair
                of positions, ``(N1, N2, *S, *S)`` (neural-tangents' argument).
            diagonal_batch: accepted for neural-tangents' code: ntkgp always keeps only the
                per-example variances (``cov1`` of shape ``(N1, ...)``), and the kernels do
                not depend on it.

        Returns:
            A `Kernel`, or an array of shape ``(N1, N2)`` when ``get`` is a string (shape
            ``(N1, N2, *S, *S)`` when the network's outputs keep spatial axes ``S``).

        Raises:
            ValueError: for inputs of the wrong shape, with NaN/inf, empty, or an unknown
                ``get``; and (outside ``jit``) when the kernel overflows (NaN/inf), naming the
                largest input and what to do.
        """
        names, single = checks.normalize_get(get, variances=True)
        if diagonal_spatial not in (None, True, False) or \
                diagonal_batch not in (None, True, False):
            raise TypeError("`diagonal_spatial` and `diagonal_batch` must be True, False or "
                            f"None; got {diagonal_spatial!r} and {diagonal_batch!r}.")
        diag_out = bool(diagonal_spatial)
        kernels = tuple(g for g in names if g in ("nngp", "ntk")) or ("nngp",)
        raw1, raw2 = x1, x2
        if mask_constant is not None:
            _check_mask_constant(mask_constant)
            x1 = masks.mask_inputs(checks.as_float_array(x1, "x1"), mask_constant)[0]
            if x2 is not None:
                x2 = masks.mask_inputs(checks.as_float_array(x2, "x2"), mask_constant)[0]
        x1, x2 = checks.check_inputs(x1, x2, ndim=None if spatial else 2)
        if x1.ndim < 2:
            raise ValueError(f"`x1` must have shape (N, d) (or (N, *S, C) for images and "
                             f"signals); got shape {tuple(x1.shape)}. Add a batch axis, e.g. "
                             "`x[None]` for one example or `x[:, None]` for one feature.")
        p1, p2 = _check_pattern(pattern, x1, x2)
        # x2 equal to x1 is x1 against itself, as in neural-tangents (self-pairs, e.g.
        # Dropout's variance term), computed as such: half the pairs, exactly symmetric
        # (masked inputs: their raw entries, absent ones included)
        same = x2 is not None and (raw1 is raw2 or (
            checks.same_inputs(x1, x2) if mask_constant is None else
            checks.same_inputs(jnp.asarray(raw1), jnp.asarray(raw2)))) and \
            (p1 is None or checks.same_inputs(p1, p2))
        if same:
            x2 = raw2 = p2 = None
        if mask_constant is None:
            k, finite = _core(x1, x2, kernels, None, False, p1, p2, diag_out)
        else:
            for raw, nm in ((raw1, "x1"), (raw2, "x2")):
                if raw is not None and checks.is_concrete(raw):
                    masks.check_some_present(raw, mask_constant, nm)
            raw1 = jnp.asarray(raw1, x1.dtype)
            raw2 = None if raw2 is None else jnp.asarray(raw2, x1.dtype)
            k, finite = _core(raw1, raw2, kernels, jnp.asarray(mask_constant, x1.dtype), True,
                              p1, p2, diag_out)
        if same:
            k = k.replace(cov2=k.cov1)
        out = _select(k, names, single)
        if not checks.is_concrete(finite):
            return out
        if bool(finite):
            for a in jax.tree.leaves(out):
                checks.mark_finite(a)  # a solve of this kernel need not check it again
            return out
        checks.check_kernel_finite(out, name, x1, x2)
        return out

    kernel.__name__ = "kernel"
    kernel._ntkgp_name = name  # identifies the architecture (ntkgp.batching's tile store)
    return kernel


def make_layer(name: str, init: Callable, apply: Callable, kernel_map: Callable,
               structured: bool = True, heavy: bool = False,
               diag_ok: Callable = keep_diag, spatial: bool = False,
               mask_map: Callable = keep_mask, remask: bool = False,
               combinator: bool = False, features: Optional[Callable] = None) -> Layer:
    """A `Layer` from its functions.

    Leaf layers (``combinator=False``) get their masks handled here: the output kernel carries
    ``mask_map`` of the input masks, and with ``remask`` its entries at absent positions are
    zeroed, as are the finite layer's outputs there. Combinators pass masks to their layers.
    """
    if not combinator:
        kernel_map = _masked_kernel_map(kernel_map, mask_map, remask)
    apply = _tag(apply, name, None if combinator else mask_map, remask)
    layer = Layer(init=init, apply=apply,
                  kernel=make_kernel_fn(kernel_map, name, diag_ok, spatial),
                  name=name, kernel_map=kernel_map, structured=structured, heavy=heavy,
                  diag_ok=diag_ok, spatial=spatial, mask_map=mask_map, features=features)
    apply._ntkgp_layer = layer  # lets ntkgp.empirical find the structure behind `layer.apply`
    return layer


def _masks_of(k, field):
    if isinstance(k, Kernel):
        return getattr(k, field)
    return [getattr(v, field) for v in k]


def _any_mask(m):
    return m is not None and not (isinstance(m, list) and all(v is None for v in m))


def _masked_kernel_map(kernel_map, mask_map, remask):
    def mapped(k):
        out = kernel_map(k)
        m1 = _masks_of(k, "mask1")
        if not _any_mask(m1):
            return out
        o1 = mask_map(m1)
        m2 = _masks_of(k, "mask2")
        o2 = mask_map(m2) if _any_mask(m2) else None
        if isinstance(out, Kernel):
            out = out.replace(mask1=o1, mask2=o2)
            return masks.remask(out) if remask else out
        o2 = [None] * len(out) if o2 is None else o2
        return [v.replace(mask1=a, mask2=b) for v, a, b in zip(out, o1, o2)]

    return mapped


def _split_graph(x):
    """``(inputs, pattern)`` from what `row_chunked` passes: an array or an (array, pattern)
    pair."""
    if isinstance(x, tuple):
        return x
    return x, None


def _check_pattern(pattern, x1, x2):
    """``(pattern1, pattern2)`` as arrays, their first axes checked against the inputs'."""
    if pattern is None:
        return None, None
    if isinstance(pattern, (tuple, list)):
        if len(pattern) != 2:
            raise ValueError(f"`pattern` must be a pair (pattern1, pattern2); got a sequence of "
                             f"{len(pattern)}.")
        p1, p2 = pattern
    else:
        p1, p2 = pattern, None
    if p1 is None:
        raise ValueError("`pattern=(pattern1, pattern2)`: pattern1 (the graphs of x1) is None.")
    p1 = jnp.asarray(p1)
    p2 = None if p2 is None or x2 is None else jnp.asarray(p2)
    if x2 is not None and p2 is None:
        raise ValueError("With x2 given, pass the graphs of both: pattern=(pattern1, "
                         "pattern2).")
    for p, x, nm in ((p1, x1, "pattern1"), (p2, x2, "pattern2")):
        if p is not None and (p.ndim < 2 or p.shape[0] != x.shape[0]):
            raise ValueError(f"`{nm}` must have one graph per example: a first axis of "
                             f"{x.shape[0]}; got shape {tuple(p.shape)}.")
    return p1, p2


def _check_mask_constant(c):
    if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, float, np.number)):
        raise TypeError(f"`mask_constant` must be a real number (the value that marks absent "
                        f"entries, e.g. 0.0, -1e9 or float('nan')); got {c!r}.")


def _tag(apply, name, mask_map, remask):
    @functools.wraps(apply)
    def tagged(params, x, *, mask_constant=None, mask=None, **kwargs):
        if mask_constant is not None:
            _check_mask_constant(mask_constant)
            x = jnp.asarray(x)
            if checks.is_concrete(x):
                masks.check_some_present(x, mask_constant, "x")
            x, entry = masks.mask_inputs(x, mask_constant)
            mask = masks.position_mask(entry)
        if mask is None:
            return apply(params, x, **kwargs)
        y = apply(params, x, mask=mask, **kwargs)
        if remask and mask_map is not None:
            out = mask_map(mask)
            if out is not None:
                y = jnp.where(out[..., None], jnp.zeros((), y.dtype), y)
        return y

    tagged.__name__ = f"apply[{name}]"
    return tagged


Shape = Tuple[int, ...]
OptFloat = Optional[float]
