"""Concatenation of branches along the channel axis or a spatial axis."""

from __future__ import annotations

from typing import List

import jax.numpy as jnp

from ntkgp._src.kernels.kernel import Kernel
from ntkgp._src.nn.combinators import check_branches, joined_mask
from ntkgp._src.nn.core import Layer, make_layer


def FanInConcat(axis: int = -1) -> Layer:
    r"""Concatenate the branches along the channel axis or a spatial axis.

    Channels (``axis=-1``): a following Dense layer averages over features, so the kernel is
    the width-weighted mean :math:`K = \sum_i n_i K_i / \sum_i n_i`.

    A spatial axis: the positions of the branches are laid side by side. Branches of
    independent parameters with zero-mean Gaussian outputs (each ending in a Dense or Conv
    layer) are independent, so the covariance of two positions from different branches is 0
    and the kernel is block-diagonal over branches along that axis (with every pair of
    positions; with same-position pairs only, the branches' kernels are concatenated).

    Args:
        axis: ``-1`` (channels), or a spatial axis of the inputs ``(N, *S, C)``, counted
            with the batch axis first (``1 .. len(S)``, or negative); not the batch axis.

    Returns:
        A `Layer` mapping a list of arrays to one: ``(N, ..., sum n_i)`` for channels, or
        ``(N, ..., sum L_i, ..., C)`` along a spatial axis (other axes must agree).

    Raises:
        ValueError: at the batch axis; branches whose other axes differ; along a spatial
            axis, branches whose outputs are not zero-mean Gaussian (e.g. ending in an
            activation), whose cross-covariance is not zero.
    """
    axis = int(axis)
    name = f"FanInConcat(axis={axis})" if axis != -1 else "FanInConcat()"

    def resolve(ndim: int) -> int:
        """The axis as a non-negative index of ``(N, *S, C)`` inputs of ``ndim`` axes."""
        a = axis % ndim if -ndim <= axis < ndim else None
        if a is None or a == 0:
            raise ValueError(f"{name}: the axis must be the channel axis (-1) or a spatial axis "
                             f"(1..{ndim - 2}) of inputs with {ndim} axes; got {axis} "
                             "(the batch axis cannot be concatenated).")
        return a

    def check_shapes(shapes):
        check_branches(shapes, name)
        a = resolve(len(shapes[0]))
        rest = {tuple(s[1:a]) + tuple(s[a + 1:]) for s in shapes}
        if len(rest) != 1 or len({len(s) for s in shapes}) != 1:
            raise ValueError(f"{name} needs branches whose shapes agree except along axis "
                             f"{axis}; got {[tuple(s) for s in shapes]}.")
        return a

    def init(key, input_shapes):
        a = check_shapes(input_shapes)
        out = list(input_shapes[0])
        out[a] = sum(s[a] for s in input_shapes)
        return tuple(out), ()

    def apply(params, xs, **kwargs):
        check_branches(xs, name)
        a = check_shapes([x.shape for x in xs])
        return jnp.concatenate(xs, axis=a)

    def kernel_map(ks: List[Kernel]) -> Kernel:
        check_branches(ks, name)
        r = ks[0].spatial_ndim
        if axis == -1 or axis == r + 1:
            return _channels(ks, name)
        a = resolve(r + 2) - 1  # the spatial axis, 0-based
        if not all(k.is_gaussian for k in ks):
            raise ValueError(f"{name} along a spatial axis needs every branch to end in a "
                             "zero-mean Gaussian layer (Dense or Conv, not an activation): "
                             "otherwise positions of different branches are correlated "
                             "through their means. Add a Dense or Conv layer at the end of "
                             "each branch.")
        return _positions(ks, a, r, name)

    def mask_map(ms):  # masks (N, *S): the positions of inputs (N, *S, C)
        if all(m is None for m in ms):
            return None
        ndim = next(m for m in ms if m is not None).ndim + 1
        a = resolve(ndim)
        if a == ndim - 1:  # channels: a position is absent when it is in every branch
            return joined_mask(ms)
        if any(m is None for m in ms):
            raise ValueError(f"{name} along a spatial axis joins branches that are all masked "
                             "or none: pass mask_constant to the whole network.")
        return jnp.concatenate(ms, axis=a)

    return make_layer(name, init, apply, kernel_map, mask_map=mask_map)


def _channels(ks, name):
    if any(k.width is None for k in ks):
        raise ValueError(f"{name} needs the width of each branch; end each branch with a "
                         "Dense layer or an Identity of a Dense output.")
    total = sum(k.width for k in ks)

    def mix(field):
        vals = [getattr(k, field) for k in ks]
        if vals[0] is None:
            return None
        return sum(k.width / total * v for k, v in zip(ks, vals))

    return ks[0].replace(nngp=mix("nngp"), ntk=mix("ntk"), cov1=mix("cov1"),
                         cov2=mix("cov2"), is_gaussian=all(k.is_gaussian for k in ks),
                         width=total)


def _positions(ks, a, r, name):
    """Branch kernels side by side along spatial axis ``a``: concatenated (same-position
    pairs), or block-diagonal (every pair of positions: zero between branches)."""
    shapes = {k.spatial_shape[:a] + k.spatial_shape[a + 1:] for k in ks}
    if len(shapes) != 1 or len({k.diagonal_spatial for k in ks}) != 1:
        raise ValueError(f"{name} needs branches whose kernels agree except along the "
                         f"concatenated axis; got spatial shapes "
                         f"{[k.spatial_shape for k in ks]}.")
    full = ks[0].full_spatial
    sizes = [k.spatial_shape[a] for k in ks]

    def join(mats, lead):
        if mats[0] is None:
            return None
        if not full:
            return jnp.concatenate(mats, axis=lead + a)
        ax1, ax2 = lead + a, lead + r + a
        rows = []
        for i, m in enumerate(mats):
            blocks = []
            for j, size in enumerate(sizes):
                if i == j:
                    blocks.append(m)
                else:
                    shape = list(m.shape)
                    shape[ax2] = size
                    blocks.append(jnp.zeros(shape, m.dtype))
            rows.append(jnp.concatenate(blocks, axis=ax2))
        return jnp.concatenate(rows, axis=ax1)

    widths = {k.width for k in ks}
    return ks[0].replace(nngp=join([k.nngp for k in ks], 2), ntk=join([k.ntk for k in ks], 2),
                         cov1=join([k.cov1 for k in ks], 1),
                         cov2=None if ks[0].cov2 is None else join([k.cov2 for k in ks], 1),
                         is_gaussian=True, width=widths.pop() if len(widths) == 1 else None)
