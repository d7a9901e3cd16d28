"""Blocked kernels with the per-example variances recorded once for all blocks
(`ntkgp._src.kernels.stored`) equal the same kernels computed in one piece, for layers that
read the variances in every way (nonlinearities, normalization over positions, attention,
self-pairs, masks, graphs, branches), in both layouts of positions and both block shapes."""

import jax
import numpy as np
import pytest

from ntkgp import nn
from ntkgp._src.kernels import stored
from ntkgp._src.nn import blocking
from tests.conftest import DTYPE, X64, rel_err

CONV = dict(W_std=1.4, b_std=0.1)


def _residual():
    branch = nn.serial(nn.Conv(4, (3,), padding="SAME", **CONV), nn.Relu())
    return nn.serial(nn.Conv(4, (3,), padding="SAME", **CONV), nn.FanOut(2),
                     nn.parallel(branch, nn.Identity()), nn.FanInSum(), nn.Gelu(),
                     nn.GlobalAvgPool(), nn.Dense(1))


NETS = {  # name: (network, input shape per example)
    "conv_gap": (lambda: nn.serial(nn.Conv(4, (3, 3), padding="SAME", **CONV), nn.Relu(),
                                   nn.Conv(4, (3, 3), padding="SAME", **CONV), nn.Relu(),
                                   nn.GlobalAvgPool(), nn.Dense(1)), (5, 4, 2)),
    "pool_erf": (lambda: nn.serial(nn.Conv(4, (2, 2), padding="VALID", **CONV), nn.Erf(),
                                   nn.AvgPool((2, 2), (1, 1), "SAME"),
                                   nn.Conv(4, (3, 3), padding="SAME", **CONV), nn.Relu(),
                                   nn.GlobalAvgPool(), nn.Dense(1)), (5, 5, 2)),
    "flatten": (lambda: nn.serial(nn.Conv(4, (3, 3), padding="SAME", **CONV), nn.Relu(),
                                  nn.Conv(4, (3, 3), (2, 2), "SAME", **CONV), nn.Abs(),
                                  nn.Flatten(), nn.Dense(1)), (6, 5, 2)),
    "layernorm_dropout": (lambda: nn.serial(nn.Conv(4, (3,), padding="CIRCULAR", **CONV),
                                            nn.LayerNorm(axis=(1, 2)), nn.Sin(),
                                            nn.Dropout(0.7), nn.Conv(4, (3,), **CONV),
                                            nn.Relu(), nn.GlobalAvgPool(), nn.Dense(1)),
                          (7, 2)),
    "attention": (lambda: nn.serial(nn.Dense(4, **CONV), nn.GlobalSelfAttention(4, 4, 4, 1),
                                    nn.Relu(), nn.GlobalAvgPool(), nn.Dense(1)), (4, 3)),
    "residual": (_residual, (6, 2)),
}


def _spy(monkeypatch):
    """The ``taped`` argument of every call of the blocked kernels."""
    calls = []

    def spied(fn):
        return lambda *a, **kw: (calls.append(bool(kw.get("taped"))), fn(*a, **kw))[1]
    for name in ("_grid_blocks", "_symmetric_blocks"):
        monkeypatch.setattr(blocking, name, spied(getattr(blocking, name)))
    return calls


def _blocked(monkeypatch, make, x1, x2, tape: bool, diagonal=False, **kw):
    per_pair = blocking.per_pair(x1, diagonal)
    monkeypatch.setattr(blocking, "CHUNK_ELEMENTS", 4 * per_pair)  # 2 x 2 blocks of pairs
    monkeypatch.setattr(blocking, "MAX_CHUNK_ELEMENTS", 4 * per_pair)
    monkeypatch.setattr(blocking, "TAPE_MIN_SAVED", 0 if tape else 1 << 62)
    return make().kernel(x1, x2, **kw)  # a new network: a new jit that sees the settings


@pytest.mark.parametrize("x2_none", [True, False])
@pytest.mark.parametrize("name", sorted(NETS))
def test_recorded_equals_whole(monkeypatch, rng, name, x2_none):
    make, shape = NETS[name]
    x1 = rng.standard_normal((9,) + shape).astype(DTYPE)
    x2 = None if x2_none else rng.standard_normal((7,) + shape).astype(DTYPE)
    whole = make().kernel(x1, x2)
    calls = _spy(monkeypatch)
    taped = _blocked(monkeypatch, make, x1, x2, True, diagonal=name == "flatten")
    assert calls == [True]  # recorded, and no block read other variances than recorded
    tol = 1e-12 if X64 else 1e-5
    for g in ("nngp", "ntk", "cov1", "cov2"):
        want, got = getattr(whole, g), getattr(taped, g)
        assert (got is None) == (want is None), g
        if want is not None:
            assert rel_err(got, want) <= tol, (g, rel_err(got, want))
    if x2_none:
        np.testing.assert_array_equal(taped.ntk, np.swapaxes(np.asarray(taped.ntk), 0, 1)
                                      if taped.ntk.ndim == 2 else taped.ntk.swapaxes(0, 1))


def test_recorded_with_masks_and_graphs(monkeypatch, rng):
    """Absent positions (``mask_constant``) and graphs (``pattern``) are per example: the
    recording pass slices them with its rows."""
    def make():
        return nn.serial(nn.Conv(4, (3,), padding="SAME", **CONV), nn.LayerNorm(axis=(1, 2)),
                         nn.Relu(), nn.Conv(4, (3,), **CONV), nn.Erf(),
                         nn.GlobalAvgPool(), nn.Dense(1))
    x1 = rng.standard_normal((9, 6, 2)).astype(DTYPE)
    x2 = rng.standard_normal((7, 6, 2)).astype(DTYPE)
    x1[2, 4:] = x2[5, :2] = np.nan
    whole = make().kernel(x1, x2, mask_constant=np.nan)
    taped = _blocked(monkeypatch, make, x1, x2, True, mask_constant=np.nan)
    for g in ("nngp", "ntk", "cov1", "cov2"):
        assert rel_err(getattr(taped, g), getattr(whole, g)) <= (1e-12 if X64 else 1e-5), g

    def graph_net():
        return nn.serial(nn.Aggregate(), nn.Dense(3, 1.3, 0.1), nn.Relu(), nn.Aggregate(),
                         nn.GlobalAvgPool(), nn.Dense(1))
    p1 = (rng.random((9, 6, 6)) < 0.4).astype(DTYPE)
    p2 = (rng.random((7, 6, 6)) < 0.4).astype(DTYPE)
    x1, x2 = rng.standard_normal((9, 6, 1)).astype(DTYPE), np.ones((7, 6, 1), DTYPE)
    whole = graph_net().kernel(x1, x2, pattern=(p1, p2))
    calls = _spy(monkeypatch)
    taped = _blocked(monkeypatch, graph_net, x1, x2, True, pattern=(p1, p2))
    assert calls == [True]
    for g in ("nngp", "ntk", "cov1", "cov2"):
        assert rel_err(getattr(taped, g), getattr(whole, g)) <= (1e-12 if X64 else 1e-5), g


def test_gradient_through_recorded_variances(monkeypatch, rng):
    x = rng.standard_normal((6, 4, 2)).astype(DTYPE)

    def loss(w, tape):
        def make():
            return nn.serial(nn.Conv(3, (3,), padding="SAME", W_std=w, b_std=0.1), nn.Relu(),
                             nn.Conv(3, (3,), padding="SAME", W_std=w), nn.Relu(),
                             nn.GlobalAvgPool(), nn.Dense(1, W_std=w))
        return _blocked(monkeypatch, make, x, None, tape).ntk.sum()

    g_taped = jax.grad(loss)(1.3, True)
    g_plain = jax.grad(loss)(1.3, False)
    assert np.isfinite(g_taped) and abs(g_taped - g_plain) <= (1e-10 if X64 else 1e-4) * abs(
        g_plain)


def test_a_block_that_reads_other_variances_falls_back(monkeypatch, rng):
    """A block whose reads do not match the recording (another count) is computed without
    it, to the same kernel."""
    make, shape = NETS["conv_gap"]
    x1 = rng.standard_normal((9,) + shape).astype(DTYPE)
    x2 = rng.standard_normal((7,) + shape).astype(DTYPE)
    whole = make().kernel(x1, x2)

    def unread(state):
        raise stored.TapeMismatch("simulated")
    monkeypatch.setattr(stored, "check_consumed", unread)
    calls = _spy(monkeypatch)
    k = _blocked(monkeypatch, make, x1, x2, True)
    assert calls == [True, False]
    assert rel_err(k.nngp, whole.nngp) <= (1e-12 if X64 else 1e-5)


def test_replay_checks_what_it_returns():
    v = np.ones((3, 4), DTYPE)
    with stored.recording() as values:
        assert stored.per_example(v, 1) is v
        stored.per_example(v * 2, 2)  # input 2's reads are not recorded
    assert len(values) == 1
    with stored.replaying([v * 3], [v * 4]) as state:
        np.testing.assert_array_equal(stored.per_example(v, 1), v * 3)
        with pytest.raises(stored.TapeMismatch):
            stored.per_example(v[:2], 2)  # another shape
        np.testing.assert_array_equal(stored.per_example(v, 2), v * 4)
        stored.check_consumed(state)
        with pytest.raises(stored.TapeMismatch):
            stored.per_example(v, 1)  # more reads than recorded
    with stored.replaying([v], []) as state:
        with pytest.raises(stored.TapeMismatch):
            stored.check_consumed(state)  # fewer
    assert stored.per_example(v, 1) is v  # outside both contexts


def test_tape_pays_only_where_blocks_recompute_much():
    pays = blocking._tape_pays
    assert not pays(10 ** 8, 1, 1, 1)  # no positions
    assert pays(64, 1, 1, 1 << 20)  # one pair of 32 x 32 images per block, 8 x 8 inputs
    assert not pays(200 * 200, 8, 8, 4096)  # 8 x 8 blocks of 8 x 8 images, N=200
    assert pays(2000 * 2000, 8, 8, 4096)
