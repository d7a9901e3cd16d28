"""The layers' convolution equals lax's in value and in every derivative (its filter gradient
is computed by a different convolution: one XLA runs fast inside training loops)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkgp._src.kernels import spatial
from ntkgp._src.nn.conv_op import conv
from ntkgp._src.nn.spatial_args import lax_dims

SLOW = pytest.mark.slow  # compiled derivative programs of several seconds each
CASES = [  # (spatial shape, filter, strides, padding, lhs_dilation)
    ((9,), (4,), (3,), "SAME", None),
    pytest.param((7, 6), (3, 2), (2, 1), "VALID", None, marks=SLOW),
    pytest.param((5, 5), (3, 3), (1, 1), ((1, 2), (0, 1)), (2, 2), marks=SLOW),
    pytest.param((4, 5, 3), (2, 3, 1), (1, 2, 1), "SAME", None, marks=SLOW),
]


def _lax(strides, padding, lhs_dilation):
    def f(x, w):
        return jax.lax.conv_general_dilated(x, w, strides, padding, lhs_dilation=lhs_dilation,
                                            dimension_numbers=lax_dims(x.ndim - 2),
                                            precision=jax.lax.Precision.HIGHEST)
    return f


def _close(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())


def _derivatives(f, x, w, ct, dw):
    """Value, VJP, JVP, per-example filter Jacobians (vmap over examples), batched filters,
    a Hessian-vector product and the gradient through the filter's tangent map (training a
    linearized network)."""
    ws = jnp.stack([w, -2 * w])
    return (
        f(x, w),
        jax.vjp(f, x, w)[1](ct),
        jax.jvp(f, (x, w), (0.3 * x, dw))[1],
        jax.vmap(lambda xi: jax.jacrev(lambda v: jnp.sum(f(xi[None], v) ** 2))(w))(x),
        jax.vmap(lambda v: jax.grad(lambda u: jnp.sum(jnp.sin(f(x, u))))(v))(ws),
        jax.jvp(jax.grad(lambda v: jnp.sum(jnp.sin(f(x, v)))), (w,), (w,))[1],
        jax.grad(lambda v: jnp.sum(jnp.cos(jax.jvp(lambda u: f(x, u), (w,), (v,))[1])))(w),
    )


@pytest.mark.parametrize("shape, filt, strides, padding, dil", CASES)
def test_value_and_derivatives_equal_lax(shape, filt, strides, padding, dil):
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    x = jax.random.normal(k[0], (3,) + shape + (4,))
    w = jax.random.normal(k[1], filt + (4, 5))
    ref = _lax(strides, padding, dil)
    ct = jax.random.normal(k[2], ref(x, w).shape)
    dw = jax.random.normal(k[3], w.shape)
    got = jax.jit(lambda *a: _derivatives(lambda x, w: conv(x, w, strides, padding, dil),
                                          *a))(x, w, ct, dw)
    want = jax.jit(lambda *a: _derivatives(ref, *a))(x, w, ct, dw)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        _close(a, b)


@pytest.mark.slow
def test_transposed_convolution_padding_equals_lax():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 9, 3))
    for f, s, pad in [(3, 2, "SAME"), (4, 3, "VALID"), (2, 3, "SAME")]:
        w = jax.random.normal(jax.random.PRNGKey(1), (f, f, 3, 2))
        want = jax.lax.conv_transpose(x, w, (s, s), pad, dimension_numbers=lax_dims(2),
                                      precision=jax.lax.Precision.HIGHEST)
        got = conv(x, w, (1, 1), [spatial.transpose_pads(f, s, pad)] * 2, lhs_dilation=(s, s))
        _close(got, want)


def test_filter_gradient_in_a_loop_is_a_plain_channels_last_convolution():
    """The filter gradient inside a loop body is lowered with lax's standard channels-last
    dimension numbers (XLA:CPU's fast path), not the batch/feature-swapped ones."""
    x = jnp.ones((2, 5, 5, 3))
    w = jnp.ones((3, 3, 3, 4))

    def loop(w):
        body = lambda i, v: v - 1e-3 * jax.grad(lambda u: jnp.sum(conv(x, u, (1, 1), "SAME")
                                                                    ** 2))(v)
        return jax.lax.fori_loop(0, 2, body, w)

    text = jax.jit(loop).lower(w).as_text()
    convs = [line for line in text.splitlines() if "convolution" in line]
    assert convs and all("[b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f]" in c for c in convs), convs
