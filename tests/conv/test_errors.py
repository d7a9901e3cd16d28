"""Bad inputs to convolutional networks get errors that say what was expected."""

import jax
import numpy as np
import pytest

from ntkgp import nn
from tests.conftest import DTYPE


def cnn(*tail):
    return nn.serial(nn.Conv(4, (3, 3), padding="SAME"), nn.Relu(), *tail,
                     nn.GlobalAvgPool(), nn.Dense(1))


def test_images_of_the_wrong_rank():
    x = np.ones((3, 8, 8), DTYPE)  # channel axis missing
    with pytest.raises(ValueError, match=r"\(N, H, W, C\) images.*Add a channel axis"):
        cnn().init(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(ValueError, match=r"takes \(N, H, W, C\) images; its input here is "
                                         r"inputs with 1 spatial axis"):
        cnn().kernel(x, None)
    with pytest.raises(ValueError, match=r"its input here is \(N, d\) features"):
        cnn().kernel(np.ones((3, 8), DTYPE), None)
    with pytest.raises(ValueError, match="no Flatten before it"):
        nn.serial(nn.Flatten(), nn.Conv(2, (3, 3))).kernel(np.ones((2, 4, 4, 1), DTYPE))


def test_wrong_channel_count():
    net = cnn()
    _, params = net.init(jax.random.PRNGKey(0), (2, 8, 8, 3))
    with pytest.raises(ValueError, match=r"initialized for 3 input channels but got inputs of "
                                         r"shape \(2, 8, 8, 1\)"):
        net.apply(params, np.ones((2, 8, 8, 1), DTYPE))
    with pytest.raises(ValueError, match="same spatial shape S and channels C"):
        net.kernel(np.ones((2, 8, 8, 3), DTYPE), np.ones((2, 8, 8, 1), DTYPE))


def test_filter_larger_than_input_with_valid():
    net = nn.serial(nn.Conv(4, (5, 5), padding="VALID"), nn.Relu(), nn.Flatten(), nn.Dense(1))
    x = np.ones((2, 4, 4, 1), DTYPE)
    for call in (lambda: net.kernel(x), lambda: net.init(jax.random.PRNGKey(0), x.shape)):
        with pytest.raises(ValueError, match=r"filter \(5, 5\) is larger than the input's "
                                             r"spatial shape \(4, 4\) with padding='VALID'"):
            call()
    # SAME pads instead: fine.
    ok = nn.serial(nn.Conv(4, (5, 5), padding="SAME"), nn.Relu(), nn.Flatten(), nn.Dense(1))
    assert ok.kernel(x).nngp.shape == (2, 2)


def test_pooling_window_that_does_not_fit():
    net = cnn(nn.AvgPool((3, 3), (3, 3)), nn.Conv(2, (2, 2), padding="VALID"))
    x = np.ones((2, 4, 4, 1), DTYPE)  # 4x4 -> pool 3x3 stride 3 -> 1x1 -> 2x2 VALID filter
    with pytest.raises(ValueError, match=r"filter \(2, 2\) is larger"):
        net.kernel(x)
    with pytest.raises(ValueError, match=r"window \(5, 5\) is larger than the input's spatial "
                                         r"shape \(4, 4\)"):
        cnn(nn.AvgPool((5, 5))).kernel(x)


@pytest.mark.parametrize("make, match", [
    (lambda: nn.Conv(4, (3, 3), padding="REFLECT"), "`padding` must be one of"),
    (lambda: nn.Conv(4, (3,) * 9), "1-D to 8-D filters"),
    (lambda: nn.Conv(4, (3, 0)), "positive integers"),
    (lambda: nn.Conv(4, 3), "`filter_shape` must be a tuple"),
    (lambda: nn.Conv(4, (3, 3), strides=(1,)), "`strides` must be a tuple of 2"),
    (lambda: nn.AvgPool((2, 2), padding="REFLECT"), "`padding` must be one of"),
    (lambda: nn.SumPool((2,) * 9), "1-D to 8-D windows"),
])
def test_bad_layer_arguments(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_global_pool_needs_spatial_inputs():
    with pytest.raises(ValueError, match=r"needs inputs with spatial axes"):
        nn.serial(nn.Dense(3), nn.GlobalAvgPool()).kernel(np.ones((2, 3), DTYPE))


def test_dense_only_net_refuses_images():
    """A net without spatial layers takes (N, d): images get the old, clear error rather than
    a per-position kernel nobody asked for."""
    with pytest.raises(ValueError, match=r"must have shape \(N, d\).*Flatten each example"):
        nn.serial(nn.Dense(3), nn.Relu(), nn.Dense(1)).kernel(np.ones((2, 4, 4, 1), DTYPE))


def test_three_d_filters_on_two_d_images():
    x = np.ones((2, 6, 6, 1), DTYPE)  # (N, H, W, C)
    net = nn.serial(nn.Conv(4, (3, 3, 3)), nn.Relu(), nn.Flatten(), nn.Dense(1))
    with pytest.raises(ValueError, match=r"takes \(N, D, H, W, C\) volumes; its input here is "
                                         r"inputs with 2 spatial axes"):
        net.kernel(x)
    with pytest.raises(ValueError, match=r"takes \(N, D, H, W, C\) volumes \(5 axes, channels "
                                         r"last\); got inputs of shape \(2, 6, 6, 1\)"):
        net.init(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(ValueError, match=r"supports 1-D to 8-D windows"):
        nn.AvgPool((2,) * 9)
