"""Kernels of many examples equal the same kernels computed in tiles of rows.

The reference values are for a few examples. With many, the whole kernel is another program:
the recursion loops over blocks of pairs (`blocking.row_chunked`, each layer's arrays at most
`blocking.MAX_CHUNK_ELEMENTS` entries), and the input Gram and the symmetrization span all
N1 x N2 pairs; a tile of a third of the rows is a program of the same kernel with other
blocks. The check was written after a wrong result of jaxlib 0.10.2 on this CPU: a sum over a
short leading axis of a broadcast product, ``jnp.sum(a[:, :, None, :] * b[:, None, :, :],
axis=0)`` with ``a, b`` of shape (3, 200, 256), misses by up to 30 in a third of its entries
(from the 129th column on), while the same program on 100 rows is right. These networks are
the shapes the benchmarks time, with 6.5 to 26 million kernel entries per layer in all, and
XLA's full optimization as users compile them. Measured (2026-12-04): the convolutional
kernels equal their tiles to the bit in both precisions, the fully connected one to 9e-7 of
its scale in float32 and to the bit in float64.
"""

import jax
import numpy as np
import pytest

from ntkgp import batching, nn
from tests.conftest import X64

CONV = dict(W_std=1.5, b_std=0.1)
CASES = {  # name: (network, examples, image shape or feature count)
    "same_flatten": (nn.serial(*[nn.Conv(8, (3, 3), padding="SAME", **CONV), nn.Relu()] * 3,
                               nn.Flatten(), nn.Dense(1)), 160, (16, 16, 3)),
    "valid_flatten": (nn.serial(*[nn.Conv(8, (3, 3), padding="VALID", **CONV), nn.Relu()] * 2,
                                nn.Flatten(), nn.Dense(1)), 160, (20, 20, 3)),
    "strided_flatten": (nn.serial(nn.Conv(8, (3, 3), (2, 2), padding="SAME", **CONV),
                                  nn.Erf(), nn.Conv(8, (3, 3), padding="SAME", **CONV),
                                  nn.Relu(), nn.Flatten(), nn.Dense(1)), 160, (32, 32, 3)),
    "pooled": (nn.serial(nn.Conv(8, (3, 3), padding="SAME", **CONV), nn.Relu(),
                         nn.AvgPool((2, 2), padding="SAME"),
                         nn.Conv(8, (3, 3), padding="VALID", **CONV), nn.Relu(),
                         nn.GlobalAvgPool(), nn.Dense(1)), 30, (10, 10, 3)),
    "fc": (nn.serial(nn.Dense(64, W_std=1.5, b_std=0.1), nn.Relu(), nn.Dense(64, W_std=1.5),
                     nn.Erf(), nn.Dense(1)), 2600, (8,)),
}


@pytest.mark.usefixtures("optimized_programs")
@pytest.mark.parametrize("x2_none", [True, False])
@pytest.mark.parametrize("name", sorted(CASES))
def test_large_kernel_equals_its_tiles(name, x2_none):
    net, n, shape = CASES[name]
    dtype = np.float64 if X64 else np.float32
    rng = np.random.default_rng(len(name))
    x1 = rng.standard_normal((n,) + shape).astype(dtype)
    x2 = None if x2_none else rng.standard_normal((n // 2,) + shape).astype(dtype)
    jax.clear_caches()  # the network's programs for these shapes, compiled at this level
    whole = net.kernel(x1, x2)
    tiled = batching.batch(net.kernel, n // 3)(x1, x2)
    for g in ("nngp", "ntk"):
        # Two programs of the same sums may round differently: float32 entries agree to a
        # few units of rounding of the matrix's scale. The miscompiled sum misses by O(1).
        want = np.asarray(getattr(tiled, g), np.float64)
        got = np.asarray(getattr(whole, g), np.float64)
        scale = np.abs(want).max()
        assert np.isfinite(got).all() and scale > 0
        np.testing.assert_allclose(got, want, rtol=0,
                                   atol=(1e-12 if X64 else 4e-6) * scale, err_msg=g)
