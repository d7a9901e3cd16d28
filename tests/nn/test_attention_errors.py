"""Clear errors for bad attention, masking and LayerNorm arguments; masks behave the same
whatever marks them."""

import jax
import numpy as np
import pytest

from ntkgp import nn
from tests.conftest import DTYPE, rel_err


def _x(n=3, length=4, c=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, length, c)).astype(DTYPE)


def _net(**kw):
    return nn.serial(nn.Dense(8), nn.GlobalSelfAttention(8, 8, 8, 2, **kw), nn.GlobalAvgPool())


def test_a_mask_hiding_every_position_is_refused():
    x = _x()
    x[1] = -1.0
    net = _net()
    with pytest.raises(ValueError, match=r"`x1` example 1 .*every entry equal to "
                                         r"mask_constant=-1.0"):
        net.kernel(x, None, mask_constant=-1.0)
    with pytest.raises(ValueError, match=r"`x2` example 1"):
        net.kernel(_x(seed=1), x, mask_constant=-1.0)
    _, params = net.init(jax.random.PRNGKey(0), x.shape)
    with pytest.raises(ValueError, match=r"`x` example 1"):
        net.apply(params, x, mask_constant=-1.0)


@pytest.mark.parametrize("arg", ["n_chan_out", "n_chan_key", "n_chan_val", "n_heads"])
def test_sizes_below_one(arg):
    kw = dict(n_chan_out=4, n_chan_key=4, n_chan_val=4, n_heads=2)
    kw[arg] = 0
    with pytest.raises(ValueError, match=rf"`{arg}` must be an integer >= 1"):
        nn.GlobalSelfAttention(**kw)


def test_unknown_mechanism_and_embedding_type():
    with pytest.raises(ValueError, match=r"attention_mechanism.*'SOFTMAX', 'IDENTITY', 'ABS', "
                                         r"'RELU'.*'GELU'"):
        nn.GlobalSelfAttention(4, 4, 4, 1, attention_mechanism="GELU")
    with pytest.raises(ValueError, match=r"pos_emb_type"):
        nn.GlobalSelfAttention(4, 4, 4, 1, pos_emb_type="ROTARY")


def test_summed_embeddings_must_match_the_input_channels():
    net = _net(pos_emb_type="SUM", n_chan_pos_emb=5)
    with pytest.raises(ValueError, match=r"n_chan_pos_emb \(5\) must equal the input channels "
                                         r"\(8\).*CONCAT"):
        net.kernel(_x())
    with pytest.raises(ValueError, match=r"n_chan_pos_emb \(5\) must equal"):
        net.init(jax.random.PRNGKey(0), (3, 4, 3))
    # CONCAT takes any count
    assert np.isfinite(_net(pos_emb_type="CONCAT", n_chan_pos_emb=5).kernel(_x(), None,
                                                                            "ntk")).all()


def test_no_closed_form_without_linear_scaling():
    with pytest.raises(NotImplementedError, match=r"no closed form.*'SOFTMAX'"):
        _net(linear_scaling=False).kernel(_x())
    net = _net(linear_scaling=False, attention_mechanism="IDENTITY")
    assert np.isfinite(net.kernel(_x(), None, "ntk")).all()
    _, params = net.init(jax.random.PRNGKey(0), (3, 4, 3))
    assert "W_query" in params[1] and net.apply(params, _x()).shape == (3, 8)


def test_attention_needs_positions():
    with pytest.raises(ValueError, match=r"needs inputs with positions"):
        nn.serial(nn.Flatten(), nn.Dense(4), nn.GlobalSelfAttention(4, 4, 4, 1)).kernel(_x())
    with pytest.raises(ValueError, match=r"takes \(N, \*S, C\) inputs with positions"):
        nn.GlobalSelfAttention(4, 4, 4, 1).init(jax.random.PRNGKey(0), (3, 4))


def test_decay_function_must_give_covariances():
    net = _net(pos_emb_type="SUM", pos_emb_decay_fn=lambda d: np.where(d > 0, np.inf, 1.0))
    with pytest.raises(ValueError, match=r"pos_emb_decay_fn.*NaN or inf"):
        net.kernel(_x())


@pytest.mark.parametrize("axis, match", [((1,), r"must include the channel axis"),
                                         ((0, -1), r"includes the batch axis"),
                                         ((3, -1), r"does not fit inputs with 3 axes")])
def test_layernorm_axes(axis, match):
    with pytest.raises(ValueError, match=match):
        nn.serial(nn.Dense(4), nn.LayerNorm(axis=axis), nn.GlobalAvgPool()).kernel(_x())


def test_mask_constant_must_be_a_number():
    with pytest.raises(TypeError, match=r"`mask_constant` must be a real number"):
        _net().kernel(_x(), None, mask_constant="pad")


def test_nan_and_number_masks_agree():
    """Marking padding with NaN or with a number masks the same positions."""
    x = _x(4, 5)
    a, b = x.copy(), x.copy()
    a[0, 3:], b[0, 3:] = np.nan, -9.0
    a[2, 1:], b[2, 1:] = np.nan, -9.0
    net = nn.serial(nn.Dense(8, b_std=0.1), nn.GlobalSelfAttention(8, 8, 8, 2, b_std=0.1),
                    nn.LayerNorm(axis=(1, 2)), nn.GlobalAvgPool())
    ka = net.kernel(a, None, mask_constant=float("nan"))
    kb = net.kernel(b, None, mask_constant=-9.0)
    for g in ("nngp", "ntk"):
        assert rel_err(getattr(ka, g), getattr(kb, g)) < 1e-6
    # a sequence padded to a longer length has the kernel of the shorter one (pooling and
    # attention over present positions only)
    short = nn.serial(nn.Dense(8, b_std=0.1), nn.GlobalSelfAttention(8, 8, 8, 2, b_std=0.1),
                      nn.GlobalAvgPool())
    k_pad = short.kernel(b[:1], None, "nngp", mask_constant=-9.0)
    k_cut = short.kernel(x[:1, :3], None, "nngp")
    assert rel_err(k_pad, k_cut) < 1e-5


def test_global_sum_pool_is_the_average_times_positions_squared():
    x = _x(3, 6)
    base = [nn.Dense(8, b_std=0.1), nn.Relu()]
    s = nn.serial(*base, nn.GlobalSumPool()).kernel(x, None, "nngp")
    a = nn.serial(*base, nn.GlobalAvgPool()).kernel(x, None, "nngp")
    assert rel_err(s, 36 * a) < 1e-6


def test_attention_has_no_structured_empirical_ntk():
    from ntkgp import empirical
    with pytest.raises(ValueError, match=r"implementation='structured'"):
        empirical.empirical_ntk_fn(nn.transformer(1, 8, 2), implementation="structured")
