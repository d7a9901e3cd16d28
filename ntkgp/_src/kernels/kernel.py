"""The `Kernel` pytree: NNGP and NTK of a network's outputs on two batches of inputs."""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

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
            when a layer does not fix it).

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

    @property
    def shape(self) -> tuple:
        """``(N1, N2)``."""
        n2 = self.cov1.shape[0] if self.cov2 is None else self.cov2.shape[0]
        return (self.cov1.shape[0], n2)

    @property
    def cov2_or_cov1(self) -> Array:
        return self.cov1 if self.cov2 is None else self.cov2

    def replace(self, **changes) -> Kernel:
        """A copy with the given fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


jax.tree_util.register_dataclass(
    Kernel,
    data_fields=["nngp", "ntk", "cov1", "cov2"],
    meta_fields=["x1_is_x2", "is_gaussian", "width"],
)


def input_kernel(x1: Array, x2: Optional[Array], compute_ntk: bool) -> Kernel:
    r"""The kernel of the raw inputs: :math:`K_0(x, x') = x \cdot x' / d`, :math:`\Theta_0 = 0`.

    Args:
        x1: array of shape ``(N1, d)``.
        x2: array of shape ``(N2, d)`` or ``None`` for ``x1`` against itself.
        compute_ntk: whether to carry an NTK (zero for the inputs).
    """
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
