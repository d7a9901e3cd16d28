"""The diagonal-layout convolution of kernels (same-position pairs, what a network ending in
Flatten needs) against its formula evaluated entry by entry: paddings (circular wrapping more
than once), strides and filters on 1 to 3 spatial axes."""

import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from ntkgp._src.kernels import spatial
from tests.conftest import X64

CASES = [  # (spatial shape, filter, strides, padding)
    ((7,), (3,), (1,), "SAME"),
    ((9,), (4,), (2,), "VALID"),
    ((5,), (3,), (2,), "CIRCULAR"),
    ((3,), (5,), (1,), "CIRCULAR"),  # the filter wraps around more than once
    ((5, 6), (3, 3), (1, 1), "SAME"),
    ((8, 8), (3, 2), (2, 1), "SAME"),
    ((6, 5), (2, 3), (1, 2), "VALID"),
    ((4, 5), (3, 3), (1, 1), "CIRCULAR"),
    ((4, 3, 2), (2, 3, 1), (1, 2, 1), "SAME"),
]


def _formula(a, lead, filt, strides, padding):
    r"""$K'_q = \frac{1}{|F|} \sum_{d \in F} K_{s q + d - \mathrm{pad}}$ per position,
    zero outside (circular: wrapped), in float64 from the definition."""
    shape = a.shape[lead:]
    outs, los = zip(*(spatial.out_size_and_pads(n, f, s, padding)
                      for n, f, s in zip(shape, filt, strides)))
    lo = [p[0] for p in los]
    out = np.zeros(a.shape[:lead] + tuple(outs))
    for q in itertools.product(*(range(n) for n in outs)):
        total = 0.0
        for d in itertools.product(*(range(f) for f in filt)):
            p = [qi * s + di - li for qi, s, di, li in zip(q, strides, d, lo)]
            if padding == "CIRCULAR":
                p = [pi % n for pi, n in zip(p, shape)]
            elif any(pi < 0 or pi >= n for pi, n in zip(p, shape)):
                continue
            total = total + a[(Ellipsis,) + tuple(p)]
        out[(Ellipsis,) + q] = total / np.prod(filt)
    return out


@pytest.mark.parametrize("shape,filt,strides,padding", CASES)
@pytest.mark.parametrize("lead", [1, 2])
def test_diagonal_conv_equals_the_formula(rng, shape, filt, strides, padding, lead):
    dtype = np.float64 if X64 else np.float32
    a = rng.standard_normal((3, 2)[:lead] + shape).astype(dtype)
    got = spatial.conv(jnp.asarray(a), lead, len(shape), False, filt, strides, padding)
    want = _formula(a.astype(np.float64), lead, filt, strides, padding)
    assert got.shape == want.shape and got.dtype == dtype
    np.testing.assert_allclose(np.asarray(got, np.float64), want,
                               rtol=1e-13 if X64 else 2e-6, atol=(1e-13 if X64 else 2e-6))


@pytest.mark.parametrize("channels", [1, 3, 8, 9, 20])  # both sides of the per-channel sums
@pytest.mark.parametrize("diagonal", [True, False])
@pytest.mark.parametrize("x2_none", [True, False])
def test_input_covariance_of_images_equals_the_channel_mean(rng, channels, diagonal, x2_none):
    r"""$K_{pq}(x, x') = \frac{1}{C} \sum_c x_{pc} x'_{qc}$ for every pair of positions (or
    only $p = q$), with the variances $K_{pq}(x, x)$, in float64 from the definition."""
    from ntkgp._src.kernels.kernel import input_kernel
    dtype = np.float64 if X64 else np.float32
    x1 = rng.standard_normal((4, 3, 2, channels)).astype(dtype)
    x2 = None if x2_none else rng.standard_normal((3, 3, 2, channels)).astype(dtype)
    k = input_kernel(jnp.asarray(x1), None if x2 is None else jnp.asarray(x2),
                     compute_ntk=True, diagonal_spatial=diagonal)
    a, b = x1.astype(np.float64), (x1 if x2 is None else x2).astype(np.float64)
    if diagonal:
        nngp, cov = np.einsum("ihwc,jhwc->ijhw", a, b), np.einsum("ihwc,ihwc->ihw", a, a)
    else:
        nngp, cov = np.einsum("ihwc,jklc->ijhwkl", a, b), np.einsum("ihwc,iklc->ihwkl", a, a)
    tol = dict(rtol=1e-13, atol=1e-13) if X64 else dict(rtol=2e-6, atol=2e-6)
    assert k.nngp.shape == nngp.shape and k.nngp.dtype == dtype
    np.testing.assert_allclose(np.asarray(k.nngp, np.float64), nngp / channels, **tol)
    np.testing.assert_allclose(np.asarray(k.cov1, np.float64), cov / channels, **tol)
    np.testing.assert_array_equal(np.asarray(k.ntk), 0.0)
