"""The `Kernel` pytree: NNGP and NTK of a network's outputs on two batches of inputs."""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src.kernels.stored import per_example

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Kernel:
    r"""Infinite-width kernels of a network's outputs on inputs ``x1`` (N1) and ``x2`` (N2).

    For a fully connected network the pre-activations of every unit are, at infinite width,
    a zero-mean Gaussian process with covariance ``nngp`` (Lee et al. 2018), and the network
    trains like a kernel machine with the neural tangent kernel ``ntk`` (Jacot et al. 2018).

    Attributes:
        nngp: array of shape ``(N1, N2)``, :math:`K(x_1, x_2) = \mathbb{E}[f(x_1) f(x_2)]` of one
            output unit, or ``None`` when not requested.
        ntk: array of shape ``(N1, N2)``, :math:`\Theta(x_1, x_2)`, or ``None`` when not requested.
        cov1: array of shape ``(N1,)``, the variances :math:`K(x_1, x_1)` (diagonal of the NNGP
            of ``x1`` with itself).
        cov2: array of shape ``(N2,)``, or ``None`` when ``x2`` is ``x1`` (then ``cov2 = cov1``).
        x1_is_x2: static; ``True`` when the kernel is of ``x1`` against itself.
        is_gaussian: static; ``True`` when the layer outputs are zero-mean Gaussian (after an
            affine layer), which LayerNorm's limit needs.
        width: static; the number of features at this point of the finite network (``None``
            when a layer does not fix it); channels for convolutional layers.
        spatial_ndim: static; number of spatial axes ``S`` of the layer outputs (0 for
            ``(N, d)`` features, 1 for ``(N, L, C)`` signals, 2 for ``(N, H, W, C)`` images).
        diagonal_spatial: static; with spatial axes, ``True`` when only pairs of the *same*
            position are tracked (enough when the network ends in `Flatten`): ``nngp``/``ntk``
            have shape ``(N1, N2, *S)`` and ``cov1`` ``(N1, *S)``. ``False``: every pair of
            positions (needed before pooling): ``nngp``/``ntk`` ``(N1, N2, *S, *S)`` and
            ``cov1`` the self-covariance of each input ``(N1, *S, *S)``.
        mask1: boolean array of shape ``(N1, *S)``, ``True`` at positions of ``x1`` that are
            absent (padding, see ``mask_constant``), or ``None`` without masking.
        mask2: the same for ``x2`` (``None`` when ``x2`` is ``x1`` or without masking).
        pattern1: the graphs of ``x1`` (see `ntkgp.nn.Aggregate`), carried unchanged from
            the inputs to the layers that use them; ``None`` without graphs.
        pattern2: the graphs of ``x2`` (``None`` when ``x2`` is ``x1`` or without graphs).

    References:
        Lee et al. 2018, https://arxiv.org/abs/1711.00165;
        Jacot et al. 2018, https://arxiv.org/abs/1806.07572.
    """

    nngp: Optional[Array]
    ntk: Optional[Array]
    cov1: Array
    cov2: Optional[Array]
    x1_is_x2: bool = False
    is_gaussian: bool = False
    width: Optional[int] = None
    spatial_ndim: int = 0
    diagonal_spatial: bool = False
    mask1: Optional[Array] = None
    mask2: Optional[Array] = None
    pattern1: Optional[Array] = None
    pattern2: Optional[Array] = None

    @property
    def shape(self) -> tuple:
        """``(N1, N2)``."""
        n2 = self.cov1.shape[0] if self.cov2 is None else self.cov2.shape[0]
        return (self.cov1.shape[0], n2)

    def __repr__(self) -> str:
        """Shapes and dtypes, not values (``Kernel(nngp=f32[100,100], ...)``)."""
        def show(v):
            if v is None or isinstance(v, (bool, int)):
                return repr(v)
            a = getattr(v, "aval", None) or v          # abstract (traced) arrays too
            if not (hasattr(a, "dtype") and hasattr(a, "shape")):
                return repr(v)
            kind = {"f": "f", "i": "i", "b": "bool", "u": "u"}.get(a.dtype.kind, a.dtype.kind)
            bits = "" if kind == "bool" else str(a.dtype.itemsize * 8)
            return f"{kind}{bits}[{','.join(map(str, a.shape))}]"
        fields = ", ".join(f"{f.name}={show(getattr(self, f.name))}"
                           for f in dataclasses.fields(self))
        return f"Kernel({fields})"

    @property
    def cov2_or_cov1(self) -> Array:
        return self.cov1 if self.cov2 is None else self.cov2

    def replace(self, **changes) -> Kernel:
        """A copy with the given fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    @property
    def full_spatial(self) -> bool:
        """``True`` when every pair of spatial positions is tracked."""
        return self.spatial_ndim > 0 and not self.diagonal_spatial

    @property
    def spatial_shape(self) -> tuple:
        """The spatial shape ``S`` of the layer outputs (``()`` without spatial axes)."""
        return tuple(self.cov1.shape[1:1 + self.spatial_ndim])

    def variances(self, which: int = 1) -> Array:
        """Per-position variances of input 1 or 2, ``(N, *S)`` (blocked: recorded, `stored`)."""
        cov = self.cov1 if which == 1 or self.cov2 is None else self.cov2
        return per_example(spatial_diagonal(cov, self.spatial_ndim) if self.full_spatial
                           else cov, which)

    # --- operations (neural-tangents' `Kernel` methods, and the sum of independent branches)
    def slice(self, rows=slice(None), cols=slice(None)) -> Kernel:
        """The kernel of ``x1[rows]`` against ``x2[cols]`` (``x1[cols]`` when ``x2`` is
        ``x1``): neural-tangents' ``Kernel.slice(n1_slice, n2_slice)``.

        Args:
            rows: a slice, integer array or list selecting examples of ``x1``.
            cols: the same for ``x2``.

        Returns:
            A `Kernel` of shape ``(len(rows), len(cols))``; of ``x1`` against itself only
            when both select everything.
        """
        rows, cols = _example_index(rows), _example_index(cols)
        if _is_all(rows) and _is_all(cols):
            return self
        cov2 = self.cov1 if self.cov2 is None else self.cov2
        m2 = self.mask1 if self.mask2 is None else self.mask2
        symmetric = self.x1_is_x2 and _same(rows, cols)  # x1[rows] against itself

        def pair(a):
            return None if a is None else a[rows][:, cols]

        def take(a, idx):
            return None if a is None else a[idx]

        return self.replace(nngp=pair(self.nngp), ntk=pair(self.ntk), cov1=self.cov1[rows],
                            cov2=None if symmetric else cov2[cols], x1_is_x2=symmetric,
                            mask1=take(self.mask1, rows),
                            mask2=None if symmetric else take(m2, cols),
                            pattern1=None, pattern2=None)

    def __getitem__(self, idx) -> Kernel:
        """``k[examples]`` or ``k[examples, *positions]``: the same examples of both inputs
        (neural-tangents' indexing by the inputs' axes), and optionally spatial positions of
        both: slices, or integers that drop their axis (``...`` stands for the axes left out).

        ``k[i:j]`` is ``k.slice(slice(i, j), slice(i, j))``. An integer example index is an
        error, as in neural-tangents (it would drop the example axis): use ``k[i:i + 1]``.
        """
        r = self.spatial_ndim
        idx = expand_index(idx if isinstance(idx, tuple) else (idx,), 1 + r, "A Kernel")
        if isinstance(idx[0], (int, np.integer)):
            raise TypeError(f"Index the examples of a Kernel with a slice or an array "
                            f"(k[{idx[0]}:{idx[0] + 1}]), not an integer: the kernel keeps "
                            "its example axes.")
        out, sp = self.slice(idx[0], idx[0]), idx[1:]
        if all(p == slice(None) for p in sp):
            return out
        lay = sp + sp if out.full_spatial else sp
        e1, e2 = (slice(None),), (slice(None),) * 2
        return out.replace(
            nngp=None if out.nngp is None else out.nngp[e2 + lay],
            ntk=None if out.ntk is None else out.ntk[e2 + lay],
            cov1=out.cov1[e1 + lay],
            cov2=None if out.cov2 is None else out.cov2[e1 + lay],
            mask1=None if out.mask1 is None else out.mask1[e1 + sp],
            mask2=None if out.mask2 is None else out.mask2[e1 + sp],
            spatial_ndim=r - sum(isinstance(p, (int, np.integer)) for p in sp))

    @property
    def T(self) -> Kernel:
        """The kernel of ``x2`` against ``x1``: example axes swapped (and the two halves of
        the spatial axes with full spatial covariance)."""
        if self.x1_is_x2:
            return self
        return self.replace(nngp=swap_inputs(self.nngp, self), ntk=swap_inputs(self.ntk, self),
                            cov1=self.cov2_or_cov1, cov2=self.cov1, mask1=self.mask2,
                            mask2=self.mask1, pattern1=self.pattern2, pattern2=self.pattern1)

    def transpose(self, axes=None) -> Kernel:
        """Permute the spatial axes (of both inputs) as neural-tangents' ``Kernel.transpose``:
        ``axes`` a permutation of ``range(spatial_ndim)``; ``None`` keeps them (as
        neural-tangents). The kernel of ``x2`` against ``x1`` is `T`."""
        r = self.spatial_ndim
        if axes is None:
            return self
        axes = tuple(int(a) for a in axes)
        if sorted(axes) != list(range(r)):
            raise ValueError(f"`axes` must be a permutation of the {r} spatial axes "
                             f"{tuple(range(r))}; got {axes}.")
        half = axes + tuple(r + a for a in axes) if self.full_spatial else axes

        def perm(a, lead):
            return None if a is None else jnp.transpose(
                a, tuple(range(lead)) + tuple(lead + h for h in half))

        def pm(m):
            return None if m is None else jnp.transpose(m, (0,) + tuple(1 + a for a in axes))

        return self.replace(nngp=perm(self.nngp, 2), ntk=perm(self.ntk, 2),
                            cov1=perm(self.cov1, 1), cov2=perm(self.cov2, 1),
                            mask1=pm(self.mask1), mask2=pm(self.mask2))

    def __add__(self, other) -> Kernel:
        """``k1 + k2``: the kernel of the sum of two independent networks' outputs on the same
        inputs (every field adds). ``k + b`` with a number: neural-tangents' convention, the
        kernel of ``f + b * eps`` (``b**2`` added to the NNGP and the variances, not the NTK).
        """
        if isinstance(other, Kernel):
            if (self.shape != other.shape or self.x1_is_x2 != other.x1_is_x2
                    or self.cov1.shape != other.cov1.shape):
                raise ValueError(f"Kernels add only on the same inputs and layout: shapes "
                                 f"{self.shape} and {other.shape}, variances "
                                 f"{self.cov1.shape} and {other.cov1.shape}.")

            def add(a, b):
                if a is None or b is None:
                    return None
                return a + b

            return self.replace(nngp=add(self.nngp, other.nngp), ntk=add(self.ntk, other.ntk),
                                cov1=self.cov1 + other.cov1, cov2=add(self.cov2, other.cov2),
                                is_gaussian=self.is_gaussian and other.is_gaussian,
                                width=None)
        if isinstance(other, (int, float, np.number)) and not isinstance(other, bool):
            var = float(other) ** 2
            return self.replace(nngp=None if self.nngp is None else self.nngp + var,
                                cov1=self.cov1 + var,
                                cov2=None if self.cov2 is None else self.cov2 + var)
        return NotImplemented

    def __radd__(self, other) -> Kernel:
        if isinstance(other, (int, float)) and other == 0:  # sum(kernels)
            return self
        return self.__add__(other)

    def __mul__(self, other) -> Kernel:
        """``k * a``: the kernel of ``a * f`` (every field times ``a**2``), as neural-tangents."""
        if not isinstance(other, (int, float, np.number)) or isinstance(other, bool):
            return NotImplemented
        var = float(other) ** 2

        def mul(a):
            return None if a is None else a * var

        return self.replace(nngp=mul(self.nngp), ntk=mul(self.ntk), cov1=mul(self.cov1),
                            cov2=mul(self.cov2))

    __rmul__ = __mul__

    def __truediv__(self, other) -> Kernel:
        if not isinstance(other, (int, float, np.number)) or isinstance(other, bool):
            return NotImplemented
        return self.__mul__(1.0 / float(other))


def expand_index(idx: tuple, ndim: int, what: str) -> tuple:
    """``idx`` over ``ndim`` axes with ``...`` expanded and missing trailing axes filled with
    ``:``; only slices and integers (``IndexError`` otherwise, or for too many entries)."""
    if sum(i is Ellipsis for i in idx) > 1:
        raise IndexError(f"An index may hold one `...`; got {idx!r}.")
    if any(i is Ellipsis for i in idx):
        at = next(n for n, i in enumerate(idx) if i is Ellipsis)
        fill = ndim - (len(idx) - 1)
        idx = idx[:at] + (slice(None),) * max(fill, 0) + idx[at + 1:]
    if len(idx) > ndim:
        raise IndexError(f"{what} has {ndim} axes to index; got {len(idx)} entries in "
                         f"{idx!r}.")
    for i in idx[1:]:
        if isinstance(i, bool) or not isinstance(i, (slice, int, np.integer)):
            raise IndexError(f"{what} takes slices and integers for its positions (no arrays, "
                             f"None or booleans); got {i!r} in {idx!r}.")
    return tuple(idx) + (slice(None),) * (ndim - len(idx))


def _example_index(idx):
    if isinstance(idx, slice):
        return idx
    if isinstance(idx, (int, np.integer)):
        raise TypeError("Select examples with a slice or an integer array, not an integer "
                        "(the kernel keeps its example axes).")
    return np.asarray(idx)


def _is_all(idx) -> bool:
    return isinstance(idx, slice) and idx == slice(None)


def _same(a, b) -> bool:
    if isinstance(a, slice) or isinstance(b, slice):
        return a == b
    return a.shape == b.shape and bool(np.all(a == b))


def spatial_diagonal(cov: Array, r: int) -> Array:
    """``(N, *S, *S) -> (N, *S)``: the entries that pair a position with itself."""
    n, s = cov.shape[0], cov.shape[1:1 + r]
    p = int(np.prod(s, dtype=int))
    return jnp.diagonal(cov.reshape(n, p, p), axis1=1, axis2=2).reshape((n,) + s)


def swap_inputs(a: Array, k: Kernel) -> Array:
    """The same kernel array for (x2, x1): swap the two example axes and, with full spatial
    covariance, the two halves of the spatial axes."""
    if a is None:
        return None
    r = k.spatial_ndim
    if k.full_spatial:
        perm = (1, 0) + tuple(range(2 + r, 2 + 2 * r)) + tuple(range(2, 2 + r))
    else:
        perm = (1, 0) + tuple(range(2, a.ndim))
    return jnp.transpose(a, perm)


jax.tree_util.register_dataclass(
    Kernel,
    data_fields=["nngp", "ntk", "cov1", "cov2", "mask1", "mask2", "pattern1", "pattern2"],
    meta_fields=["x1_is_x2", "is_gaussian", "width", "spatial_ndim", "diagonal_spatial"],
)


def input_kernel(x1: Array, x2: Optional[Array], compute_ntk: bool,
                 diagonal_spatial: bool = False) -> Kernel:
    r"""The kernel of the raw inputs: :math:`K_0(x, x') = x \cdot x' / d`, :math:`\Theta_0 = 0`.

    Inputs with spatial axes, ``(N, *S, C)``, give the per-position kernel
    :math:`K_0(x, x')_{pq} = \sum_c x_{pc} x'_{qc} / C` over channels, for all pairs of positions
    ``p, q`` or (``diagonal_spatial``) only ``p = q``.

    Args:
        x1: array of shape ``(N1, d)`` or ``(N1, *S, C)``.
        x2: array of the same shape after the first axis, or ``None`` for ``x1`` against itself.
        compute_ntk: whether to carry an NTK (zero for the inputs).
        diagonal_spatial: track only pairs of the same position (see `Kernel`).

    Returns:
        A `Kernel` with ``nngp`` of shape ``(N1, N2)`` (``(N1, N2, *S, *S)`` for all pairs of
        positions, ``(N1, N2, *S)`` for same positions), ``ntk`` zeros of that shape (or
        ``None`` without ``compute_ntk``) and the per-example variances ``cov1``/``cov2``.
    """
    if x1.ndim > 2:
        return _spatial_input_kernel(x1, x2, compute_ntk, diagonal_spatial)
    d = x1.shape[-1]
    hi = jax.lax.Precision.HIGHEST  # TF32 on GPUs would cost 3 digits on the Gram matrix
    if x2 is None:
        gram = jnp.matmul(x1, x1.T, precision=hi) / d
        gram = 0.5 * (gram + gram.T)
        cov1 = jnp.sum(x1 * x1, axis=-1) / d
        cov2 = None
    else:
        gram = jnp.matmul(x1, x2.T, precision=hi) / d
        cov1 = jnp.sum(x1 * x1, axis=-1) / d
        cov2 = jnp.sum(x2 * x2, axis=-1) / d
    ntk = jnp.zeros_like(gram) if compute_ntk else None
    return Kernel(nngp=gram, ntk=ntk, cov1=cov1, cov2=cov2, x1_is_x2=x2 is None,
                  is_gaussian=False, width=d)


def _spatial_input_kernel(x1, x2, compute_ntk, diagonal):
    hi = jax.lax.Precision.HIGHEST
    s, c = x1.shape[1:-1], x1.shape[-1]
    r = len(s)
    p = int(np.prod(s, dtype=int))

    def flat(x):
        return x.reshape(x.shape[0], p, c)

    def cov(x):
        xf = flat(x)
        if diagonal:
            return jnp.sum(xf * xf, axis=-1).reshape((x.shape[0],) + s) / c
        g = jnp.einsum("npc,nqc->npq", xf, xf, precision=hi) / c
        return (0.5 * (g + jnp.swapaxes(g, 1, 2))).reshape((x.shape[0],) + s + s)

    a = flat(x1)
    b = a if x2 is None else flat(x2)
    n1, n2 = a.shape[0], b.shape[0]
    if c <= 8:  # a sum of products per channel: XLA:CPU's batched products with so short a
        # contraction run at a third of the speed (f32, 200 x 200 pairs, 16 x 16 positions,
        # 3 channels: 16 ms against 44 ms; 16 channels 39 against 43; 32 channels 98 against 58)
        ea, eb = (a[:, None, :], b[None, :, :]) if diagonal else (a[:, None, :, None],
                                                                  b[None, :, None, :])
        gram = sum(ea[..., i] * eb[..., i] for i in range(c))
    else:
        gram = jnp.einsum("ipc,jpc->ijp" if diagonal else "ipc,jqc->ijpq", a, b, precision=hi)
    gram = gram.reshape((n1, n2) + (s if diagonal else s + s)) / c
    cov1 = cov(x1)
    cov2 = None if x2 is None else cov(x2)
    # Not symmetrized here for x2=None: the recursion is elementwise per pair and the network's
    # kernel is symmetrized at the end; a transposed copy here would be fused into (and
    # re-read by) every later layer (measured 3x slower).
    return Kernel(nngp=gram, ntk=jnp.zeros_like(gram) if compute_ntk else None, cov1=cov1,
                  cov2=cov2, x1_is_x2=x2 is None, is_gaussian=False, width=c, spatial_ndim=r,
                  diagonal_spatial=diagonal)
