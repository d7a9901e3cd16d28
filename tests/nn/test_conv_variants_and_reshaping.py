"""Transposed and locally connected convolutions, Index, ImageResize and DotGeneral: finite
layers against direct computations, kernels against L K L^T with the explicit linear map, masks
and errors (neural-tangents references: test_layer_reference.py; Monte-Carlo:
test_layer_monte_carlo.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkgp import nn
from tests.conftest import DTYPE, ONLY_X64_PASS

RNG = np.random.default_rng(11)
X = RNG.standard_normal((3, 4, 5, 2)).astype(DTYPE)
HEAD = nn.serial(nn.Conv(3, (2, 2), padding="SAME", W_std=1.3, b_std=0.1), nn.Relu())


def _params(layer, shape):
    return layer.init(jax.random.PRNGKey(0), shape)[1]


@pytest.mark.parametrize("padding", ["SAME", "VALID", "CIRCULAR"])
def test_conv_transpose_finite_layer(padding):
    """SAME/VALID are lax.conv_transpose; CIRCULAR wraps the VALID output around onto n*s
    positions, centred."""
    x = RNG.standard_normal((2, 5, 3)).astype(DTYPE)
    layer = nn.ConvTranspose(4, (4,), (2,), padding, W_std=1.0, b_std=None)
    p = _params(layer, x.shape)
    y = np.asarray(layer.apply(p, x))
    scale = 1.0 / np.sqrt(3 * 4)
    pad = "VALID" if padding == "CIRCULAR" else padding
    direct = scale * np.asarray(jax.lax.conv_transpose(
        x, p["W"], (2,), pad, dimension_numbers=("NWC", "WIO", "NWC")))
    if padding == "CIRCULAR":
        n, length = 10, direct.shape[1]
        lo = (length - n) // 2
        wrapped = np.zeros((2, n, 4))
        for i in range(length):
            wrapped[:, (i - lo) % n] += direct[:, i]
        direct = wrapped
    assert y.shape == direct.shape == (2, {"VALID": 12}.get(padding, 10), 4)
    np.testing.assert_allclose(y, direct, rtol=1e-5, atol=1e-6)


def test_conv_local_finite_layer_has_weights_per_position():
    x = RNG.standard_normal((2, 6, 3)).astype(DTYPE)
    layer = nn.ConvLocal(2, (3,), (2,), "VALID", W_std=1.0, b_std=0.5)
    p = _params(layer, x.shape)
    assert p["W"].shape == (2, 9, 2) and p["b"].shape == (2, 2)
    y = np.asarray(layer.apply(p, x))
    w = np.asarray(p["W"])
    for pos in range(2):
        patch = x[:, 2 * pos:2 * pos + 3, :]  # (N, 3, C)
        # lax's patch layout: input channel slowest, filter offset fastest
        flat = np.transpose(patch, (0, 2, 1)).reshape(2, 9)
        want = flat @ w[pos] / np.sqrt(9) + 0.5 * np.asarray(p["b"])[pos]
        np.testing.assert_allclose(y[:, pos], want, rtol=1e-5, atol=1e-6)


def test_conv_local_equals_conv_with_flatten_and_differs_with_pooling():
    """Same-position pairs are those of a shared convolution; pooling sees the independence
    of different positions."""
    def net(conv, readout):
        return nn.serial(HEAD, conv(3, (2, 2), padding="SAME", b_std=0.1), nn.Relu(), readout)

    a = net(nn.ConvLocal, nn.Flatten()).kernel(X)
    b = net(nn.Conv, nn.Flatten()).kernel(X)
    np.testing.assert_allclose(a.ntk, b.ntk, rtol=1e-5)
    c = net(nn.ConvLocal, nn.GlobalAvgPool()).kernel(X)
    d = net(nn.Conv, nn.GlobalAvgPool()).kernel(X)
    assert np.max(np.abs(np.asarray(c.nngp) - np.asarray(d.nngp))) > 1e-2


def _matrix(fn, s, c=1):
    """The linear map ``fn`` of ``(1, *s, c)`` arrays as a matrix over positions."""
    p = int(np.prod(s))
    eye = np.eye(p, dtype=DTYPE).reshape((p,) + s + (1,))
    cols = np.stack([np.asarray(fn(jnp.asarray(e[None]))).reshape(-1) for e in eye], axis=1)
    return cols


@pytest.mark.parametrize("layer", [
    nn.Index(nn.Slice[:, 1:, ::-2]),
    nn.Index(nn.Slice[..., 3, :]),
    nn.ImageResize((-1, 7, 3, -1), "linear"),
    nn.ImageResize((-1, 2, 5, -1), "lanczos3"),
    nn.DotGeneral(rhs=np.array([[1.0, 0.5], [-1.0, 0.2], [0.0, 2.0], [0.3, 0.3], [1, 1]]),
                  dimension_numbers=(((2,), (0,)), ((), ()))),
], ids=["index", "index_int", "resize_up", "resize_lanczos", "dot_general"])
def test_linear_position_maps_give_L_K_LT(layer):
    """The kernel after a fixed linear map L of positions is L K L^T (both positions of each
    pair), for the NNGP, the NTK and the per-example covariances."""
    k0 = HEAD.kernel(X, X[:2])
    k1 = nn.serial(HEAD, layer).kernel(X, X[:2])
    m = _matrix(lambda z: layer.apply((), z), (4, 5))
    q = m.shape[0]
    for g in ("nngp", "ntk"):
        a = np.asarray(getattr(k0, g), np.float64).reshape(3, 2, 20, 20)
        want = np.einsum("ap,ijpq,bq->ijab", m, a, m)
        got = np.asarray(getattr(k1, g), np.float64).reshape(3, 2, q, q)
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)
    c = np.asarray(k0.cov1, np.float64).reshape(3, 20, 20)
    np.testing.assert_allclose(np.asarray(k1.cov1).reshape(3, q, q),
                               np.einsum("ap,ipq,bq->iab", m, c, m), rtol=2e-5, atol=1e-6)


def test_dot_general_keeps_examples_first_and_channels_last():
    """lax.dot_general puts the constant's free axis first; the layer moves the examples back
    to the front (and the channels last), keeping the others in lax's order."""
    mix = np.array([[1.0, -0.5, 0.3, 0.0, 1.0], [0.2, 0.8, -1.0, 0.5, 0.0]], DTYPE)
    layer = nn.DotGeneral(lhs=mix, dimension_numbers=(((1,), (2,)), ((), ())))
    y = np.asarray(layer.apply((), X))
    assert y.shape == (3, 2, 4, 2) and layer.init(None, (-1, 4, 5, 2))[0] == (-1, 2, 4, 2)
    np.testing.assert_allclose(y, np.einsum("aw,nhwc->nahc", mix, X), rtol=1e-5)
    k = nn.serial(HEAD, nn.DotGeneral(rhs=2.0)).kernel(X)
    np.testing.assert_allclose(k.nngp, 4 * np.asarray(HEAD.kernel(X).nngp), rtol=1e-6)


@ONLY_X64_PASS  # exact zeros at absent positions: the same in both passes
def test_masked_positions_stay_absent():
    """With masked inputs the finite layers zero their outputs at absent positions and the
    kernel's entries there are zero."""
    x = X.copy()
    x[0, :, 3:] = -1.0  # example 0: the last two columns absent
    for layer in (nn.ConvTranspose(2, (2, 2), (1, 1), "SAME"), nn.ConvLocal(2, (1, 1)),
                  nn.Index(nn.Slice[:, :, 1:]), nn.ImageResize((-1, 4, 10, -1), "nearest"),
                  nn.DotGeneral(rhs=1.5)):
        net = nn.serial(nn.Conv(3, (1, 1)), layer)
        y = np.asarray(net.apply(_params(net, x.shape), x, mask_constant=-1.0))
        k = net.kernel(x, mask_constant=-1.0)
        absent = np.all(y[0] == 0, axis=-1)  # (*S)
        assert absent.any() and not absent.all(), layer.name
        var = np.asarray(k.variances())[0]
        np.testing.assert_array_equal(var[absent], 0.0)
        assert np.all(var[~absent] > 0), layer.name


@pytest.mark.parametrize("make, match", [
    (lambda: nn.ConvTranspose(2, (2, 2)).apply(
        _params(nn.ConvTranspose(2, (2, 2)), (1, 4, 4, 3)), np.ones((1, 4, 4, 1), DTYPE)),
     "initialized for 3 input channels"),
    (lambda: nn.ConvLocal(2, (2, 2)).apply(
        _params(nn.ConvLocal(2, (2, 2)), (1, 4, 4, 3)), np.ones((1, 5, 4, 3), DTYPE)),
     "weights .* these inputs need"),
    (lambda: nn.ConvLocal(2, (5,)).kernel(np.ones((2, 3, 1), DTYPE)), "larger than the input"),
    (lambda: nn.serial(HEAD, nn.Index(nn.Slice[::2])).kernel(X), "keep every example"),
    (lambda: nn.serial(HEAD, nn.Index(nn.Slice[..., :1])).kernel(X), "keep every example"),
    (lambda: nn.Index(nn.Slice[:, None]), "slices and integers"),
    (lambda: nn.Index(nn.Slice[:, 0], batch_axis=1), "batch-first, channels-last"),
    (lambda: nn.ImageResize((-1, 8, 8, -1), "spline"), "`method` must be one of"),
    (lambda: nn.ImageResize((-1, 0, 8, -1), "linear"), "positive or -1"),
    (lambda: nn.serial(HEAD, nn.ImageResize((-1, 8, 8), "linear")).kernel(X),
     "one entry per axis"),
    (lambda: nn.serial(HEAD, nn.ImageResize((6, 8, 8, -1), "linear")).kernel(X),
     "-1 for the examples"),
    (lambda: nn.DotGeneral(lhs=np.ones(2), rhs=np.ones(2)), "not both"),
    (lambda: nn.DotGeneral(rhs=np.ones(3), dimension_numbers=(((0,), (0,)), ((), ())))
     .apply((), np.ones((3, 2))), "examples \\(axis 0\\) and channels"),
    (lambda: nn.DotGeneral(rhs=np.ones(2), dimension_numbers=(((3,), (0,)), ((), ())))
     .apply((), X), "neither contracted"),
])
def test_bad_arguments_get_clear_errors(make, match):
    with pytest.raises((ValueError, TypeError, IndexError), match=match):
        make()
