"""Identities every analytic kernel must satisfy: symmetry, PSD, jit = eager, gradients,
chunked = direct, and the combinators' algebra."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ntkgp import nn
from ntkgp._src.nn import blocking
from tests.conftest import DTYPE, ONLY_X32_PASS, X64, needs_x64, rel_err

ACTS = {
    "relu": nn.Relu, "leaky": lambda: nn.LeakyRelu(0.1), "abs": nn.Abs, "erf": nn.Erf,
    "gelu": nn.Gelu, "sin": nn.Sin, "abrelu": lambda: nn.ABRelu(-0.3, 1.2),
    "tanh_quadrature": lambda: nn.Elementwise(jnp.tanh, degree=24),
}


def deep(act, depth=3, w=1.4, b=0.1, **kw):
    layers = []
    for _ in range(depth):
        layers += [nn.Dense(16, W_std=w, b_std=b, **kw), act()]
    return nn.serial(*layers, nn.Dense(1, W_std=w, b_std=b, **kw))


@pytest.mark.parametrize("name", sorted(ACTS))
def test_symmetric_and_psd(name, rng):
    x = rng.standard_normal((12, 4)).astype(DTYPE)
    k = deep(ACTS[name]).kernel(x, None)
    for g in ("nngp", "ntk"):
        m = np.asarray(getattr(k, g), np.float64)
        np.testing.assert_allclose(m, m.T, rtol=1e-6 if X64 else 1e-5, atol=0)
        eig = np.linalg.eigvalsh(m)
        assert eig.min() >= -1e-6 * eig.max(), (g, eig.min(), eig.max())
    np.testing.assert_allclose(np.diag(k.nngp), k.cov1, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(ACTS))
def test_x2_none_equals_x2_x1(name, rng):
    x = rng.standard_normal((6, 4)).astype(DTYPE)
    net = deep(ACTS[name])
    a, b = net.kernel(x, None), net.kernel(x, x)
    # Off the diagonal the two are the same computation; on it, x2=None forces correlation 1,
    # which only matters at the rounding level (sqrt(eps) for arc-cosine kernels).
    tol = 1e-6 if X64 else 2e-3
    assert rel_err(b.ntk, a.ntk) < tol and rel_err(b.nngp, a.nngp) < tol


def test_concrete_array_closed_over_inside_jit(rng):
    x1 = rng.standard_normal((5, 3)).astype(DTYPE)
    x2 = jnp.asarray(rng.standard_normal((4, 3)).astype(DTYPE))  # concrete, captured by the jit
    net = deep(nn.Relu)
    got = jax.jit(lambda a: net.kernel(a, x2))(x1)
    np.testing.assert_allclose(got.ntk, net.kernel(x1, x2).ntk, rtol=1e-6)
    bad = x2.at[0, 0].set(jnp.nan)  # a concrete constant: still checked inside the jit
    with pytest.raises(ValueError, match="contains 1 NaN"):
        jax.jit(lambda a: net.kernel(a, bad))(x1)


def test_jit_equals_eager(rng):
    x1 = rng.standard_normal((5, 3)).astype(DTYPE)
    x2 = rng.standard_normal((4, 3)).astype(DTYPE)
    net = deep(nn.Relu)
    eager = net.kernel(x1, x2)
    jitted = jax.jit(lambda a, b: net.kernel(a, b))(x1, x2)
    np.testing.assert_allclose(jitted.ntk, eager.ntk, rtol=1e-6)
    with jax.disable_jit():
        nojit = net.kernel(x1, x2)
    np.testing.assert_allclose(nojit.ntk, eager.ntk, rtol=1e-5)


@needs_x64
@pytest.mark.parametrize("name", ["relu", "abrelu", "erf", "gelu", "sin"])
@pytest.mark.parametrize("same", [False, True])
def test_gradients_in_hyperparameters_match_finite_differences(name, same, rng):
    x1 = rng.standard_normal((5, 3))
    x2 = None if same else rng.standard_normal((4, 3))

    def loss(w, b):
        net = nn.serial(nn.Dense(8, W_std=w, b_std=b), ACTS[name](),
                        nn.Dense(8, W_std=w, b_std=b), ACTS[name](), nn.Dense(1, W_std=w, b_std=b))
        k = net.kernel(x1, x2)
        return jnp.sum(k.ntk * k.ntk) + jnp.sum(k.nngp)

    w0, b0 = 1.3, 0.2
    gw, gb = jax.grad(loss, argnums=(0, 1))(w0, b0)
    assert np.isfinite(gw) and np.isfinite(gb)
    h = 1e-6
    fw = (loss(w0 + h, b0) - loss(w0 - h, b0)) / (2 * h)
    fb = (loss(w0, b0 + h) - loss(w0, b0 - h)) / (2 * h)
    assert abs(gw - fw) < 1e-5 * max(1, abs(fw))
    assert abs(gb - fb) < 1e-5 * max(1, abs(fb))


def test_gradient_finite_at_duplicate_points_and_zero_bias(rng):
    x = rng.standard_normal((3, 3)).astype(DTYPE)
    x = np.concatenate([x, x[:1], np.zeros((1, 3), DTYPE)])  # a duplicate and a zero input

    def loss(w, b):
        net = nn.serial(nn.Dense(4, W_std=w, b_std=b), nn.Relu(), nn.Dense(1, W_std=w, b_std=b))
        return jnp.sum(net.kernel(x, x, "ntk"))

    g = jax.grad(loss, argnums=(0, 1))(1.5, 0.0)
    assert all(np.isfinite(v) for v in g)


@pytest.mark.parametrize("x2_none", [True, False])
def test_gradient_correct_at_duplicate_rows(rng, x2_none):
    """Duplicate rows have correlation 1 for every W_std: their tangent is 0, and the computed
    one is rounding noise that an uncapped arccos slope turned into ~1e140."""
    x = rng.standard_normal((5, 1)).astype(DTYPE)
    x = np.concatenate([x, x, -x[:2]])  # duplicates, and 1-D inputs: every |rho| is near 1

    def loss(w, b):
        net = nn.serial(nn.Dense(1, W_std=w, b_std=b), nn.Relu(), nn.Dense(1, W_std=w, b_std=b),
                        nn.Relu(), nn.Dense(1, W_std=w, b_std=b))
        return jnp.sum(net.kernel(x, None if x2_none else x, "ntk"))

    w0, b0 = 3.0, 0.05
    g = np.array(jax.grad(loss, argnums=(0, 1))(w0, b0), np.float64)
    h = 1e-4 if X64 else 1e-2
    fd = np.array([(loss(w0 + h, b0) - loss(w0 - h, b0)) / (2 * h),
                   (loss(w0, b0 + h) - loss(w0, b0 - h)) / (2 * h)], np.float64)
    np.testing.assert_allclose(g, fd, rtol=1e-4 if X64 else 2e-2, atol=1e-3 * abs(fd).max())


@pytest.mark.parametrize("x2_none", [True, False])
@pytest.mark.parametrize("rows", [1, 3, 7])
def test_row_chunked_equals_direct(monkeypatch, rng, x2_none, rows):
    x1 = rng.standard_normal((23, 4)).astype(DTYPE)
    x2 = None if x2_none else rng.standard_normal((9, 4)).astype(DTYPE)
    direct = deep(nn.Relu).kernel(x1, x2)
    n2 = 23 if x2_none else 9
    monkeypatch.setattr(blocking, "CHUNK_ELEMENTS", rows * n2)
    chunked = deep(nn.Relu).kernel(x1, x2)  # a new net: a new jit that sees the patched size
    for g in ("nngp", "ntk", "cov1"):
        np.testing.assert_allclose(getattr(chunked, g), getattr(direct, g), rtol=1e-6)
    assert (chunked.cov2 is None) == x2_none
    if x2_none:  # upper-triangle blocks, mirrored: exactly symmetric, exact diagonal
        np.testing.assert_array_equal(chunked.ntk, np.asarray(chunked.ntk).T)
        np.testing.assert_array_equal(chunked.nngp, np.asarray(chunked.nngp).T)
        np.testing.assert_allclose(np.diag(chunked.nngp), chunked.cov1, rtol=1e-6)


SELF_PAIR_NETS = {  # layers that treat the pairs of an input with itself apart
    "relu": lambda: deep(nn.Relu),
    "erf_gelu": lambda: nn.serial(nn.Dense(16), nn.Erf(), nn.Dense(16), nn.Gelu(), nn.Dense(1)),
    "dropout_layernorm": lambda: nn.serial(nn.Dense(16), nn.Relu(), nn.Dropout(0.7),
                                           nn.Dense(16), nn.LayerNorm(), nn.Sin(), nn.Dense(1)),
    "conv": lambda: nn.serial(nn.Conv(8, (3,), padding="SAME"), nn.Relu(),
                              nn.Conv(8, (3,), padding="SAME"), nn.Erf(), nn.Flatten(),
                              nn.Dense(1)),
}


@pytest.mark.parametrize("name", sorted(SELF_PAIR_NETS))
def test_symmetric_blocks_keep_self_pairs_exact(monkeypatch, rng, name):
    """x2=None in blocks: one trace of the network serves the diagonal blocks (a block with
    itself) and the others, and still computes each input paired with itself as such (as two
    different inputs, ReLU's NTK would take arccos(1 - eps) there: errors ~1e-4 in float32),
    so the diagonal equals the kernel computed in one piece; the network is traced as often
    as for x2 given."""
    spatial = name == "conv"
    x = rng.standard_normal((23, 5, 2) if spatial else (23, 4)).astype(DTYPE)
    whole = SELF_PAIR_NETS[name]().kernel(x, None)
    monkeypatch.setattr(blocking, "CHUNK_ELEMENTS", 16 * (25 if spatial else 1))  # 4 x 4
    traces = []
    from ntkgp._src.nn import core
    monkeypatch.setattr(core, "input_kernel", lambda *a, _f=core.input_kernel, **kw: (
        traces.append(1), _f(*a, **kw))[1])
    blocked = SELF_PAIR_NETS[name]().kernel(x, None)
    n_symmetric = len(traces)
    SELF_PAIR_NETS[name]().kernel(x, x)
    assert n_symmetric == len(traces) - n_symmetric
    tol = 1e-12 if X64 else 1e-6
    for g in ("nngp", "ntk"):
        a, b = np.asarray(getattr(blocked, g)), np.asarray(getattr(whole, g))
        np.testing.assert_array_equal(a, a.T)
        assert rel_err(np.diagonal(a), np.diagonal(b)) <= tol, g
        assert rel_err(a, b) <= (1e-12 if X64 else 1e-5), g
    assert rel_err(blocked.cov1, whole.cov1) <= tol


@pytest.mark.parametrize("x2_none", [True, False])
def test_whole_up_to_computes_small_kernels_in_one_piece(monkeypatch, rng, x2_none):
    """Inside `whole_up_to(entries)` a kernel of at most that many entries skips the blocks
    (and gives the same kernel, exactly symmetric for x2=None); a larger one keeps them."""
    x1 = rng.standard_normal((23, 4)).astype(DTYPE)
    x2 = None if x2_none else rng.standard_normal((9, 4)).astype(DTYPE)
    n2 = 23 if x2_none else 9
    monkeypatch.setattr(blocking, "CHUNK_ELEMENTS", 3 * n2)  # blocks of 3 rows otherwise
    blocked = deep(nn.Relu).kernel(x1, x2)
    calls = []

    def counted(fn):
        return lambda *a, **kw: (calls.append(1), fn(*a, **kw))[1]
    for name in ("_symmetric_blocks", "_grid_blocks"):
        monkeypatch.setattr(blocking, name, counted(getattr(blocking, name)))
    with blocking.whole_up_to(23 * n2):
        whole = deep(nn.Relu).kernel(x1, x2)
    assert not calls
    for g in ("nngp", "ntk", "cov1"):
        np.testing.assert_allclose(getattr(whole, g), getattr(blocked, g), rtol=1e-6)
    if x2_none:
        np.testing.assert_array_equal(whole.ntk, np.asarray(whole.ntk).T)
    with blocking.whole_up_to(23 * n2 - 1):
        deep(nn.Relu).kernel(x1, x2)
    assert calls
    assert blocking._whole.entries == 0  # restored on leaving


@pytest.mark.parametrize("block", [2, 5])
def test_square_blocks_equal_direct(monkeypatch, rng, block):
    """x2 given, when fewer than MIN_ROWS rows of x1 fit against all of x2: square blocks of
    both inputs (the last block of each axis overlapping), for a spatial attention kernel."""
    x1 = rng.standard_normal((11, 4, 3)).astype(DTYPE)
    x2 = rng.standard_normal((7, 4, 3)).astype(DTYPE)

    def net():
        return nn.serial(nn.Dense(4), nn.GlobalSelfAttention(4, 4, 4, 1), nn.Relu(),
                         nn.GlobalAvgPool())

    direct = net().kernel(x1, x2)
    monkeypatch.setattr(blocking, "CHUNK_ELEMENTS", block * block * 16)
    monkeypatch.setattr(blocking, "MAX_CHUNK_ELEMENTS", 16)
    called = []
    monkeypatch.setattr(blocking, "_grid_blocks", lambda *a, _g=blocking._grid_blocks, **kw: (
        called.append(1), _g(*a, **kw))[1])
    blocked = net().kernel(x1, x2)
    for g in ("nngp", "ntk", "cov1", "cov2"):
        # float32: the attention's matrix products round differently in other block shapes
        assert rel_err(getattr(blocked, g), getattr(direct, g)) <= (1e-12 if X64 else 1e-5)
    assert called


def test_no_retrace_for_same_shapes(rng):
    traces = []

    def act(x):
        traces.append(x.shape)  # runs only while tracing
        return jnp.tanh(x)

    net = nn.serial(nn.Dense(4), nn.Elementwise(act, degree=4), nn.Dense(1))
    x = rng.standard_normal((5, 3)).astype(DTYPE)
    net.kernel(x)
    n = len(traces)
    assert n > 0
    net.kernel(rng.standard_normal((5, 3)).astype(DTYPE))
    net.kernel(x, None, None)
    assert len(traces) == n


def test_unpacks_as_triple(rng):
    init, apply, kernel = nn.serial(nn.Dense(5), nn.Relu(), nn.Dense(2))
    out_shape, params = init(jax.random.PRNGKey(0), (-1, 3))
    assert out_shape == (-1, 2)
    x = rng.standard_normal((4, 3)).astype(DTYPE)
    assert apply(params, x).shape == (4, 2)
    assert kernel(x).ntk.shape == (4, 4)


def test_standard_parameterization_init_scale():
    _, p = nn.Dense(3000, W_std=2.0, b_std=0.5, parameterization="standard").init(
        jax.random.PRNGKey(0), (-1, 400))
    assert abs(float(jnp.std(p["W"])) - 2.0 / 20) < 2e-3
    assert abs(float(jnp.std(p["b"])) - 0.5) < 0.03


def test_no_bias_has_no_bias_param():
    _, p = nn.Dense(3, b_std=None).init(jax.random.PRNGKey(0), (-1, 2))
    assert set(p) == {"W"}


def test_fan_in_concat_is_width_weighted(rng):
    x = rng.standard_normal((5, 3)).astype(DTYPE)
    a = nn.serial(nn.Dense(10, W_std=1.2), nn.Relu(), nn.Dense(30, W_std=0.7, b_std=0.3))
    b = nn.serial(nn.Dense(10, W_std=1.1), nn.Erf(), nn.Dense(10, W_std=1.4))
    net = nn.serial(nn.FanOut(2), nn.parallel(a, b), nn.FanInConcat(), nn.Relu(), nn.Dense(1))
    ka, kb = a.kernel(x), b.kernel(x)
    mixed = nn.serial(nn.Relu(), nn.Dense(1))
    k = net.kernel(x)
    # Build the expected kernel: concatenation = (30 ka + 10 kb) / 40, then Relu + Dense.
    from ntkgp._src.kernels.kernel import Kernel
    mix = Kernel(nngp=(30 * ka.nngp + 10 * kb.nngp) / 40, ntk=(30 * ka.ntk + 10 * kb.ntk) / 40,
                 cov1=(30 * ka.cov1 + 10 * kb.cov1) / 40, cov2=None, x1_is_x2=True,
                 is_gaussian=True, width=40)
    want = mixed.kernel_map(mix)
    np.testing.assert_allclose(k.ntk, want.ntk, rtol=1e-5)
    np.testing.assert_allclose(k.nngp, want.nngp, rtol=1e-5)


def test_residual_sum_adds_kernels(rng):
    x = rng.standard_normal((4, 3)).astype(DTYPE)
    body = nn.serial(nn.Relu(), nn.Dense(8, W_std=1.3))
    stem = nn.Dense(8, W_std=1.5, b_std=0.1)
    net = nn.serial(stem, nn.FanOut(2), nn.parallel(body, nn.Identity()), nn.FanInSum())
    k = net.kernel(x)
    k_body, k_stem = nn.serial(stem, body).kernel(x), stem.kernel(x)
    np.testing.assert_allclose(k.ntk, k_body.ntk + k_stem.ntk, rtol=1e-6)


def test_repeat_equals_serial(rng):
    x = rng.standard_normal((4, 3)).astype(DTYPE)
    block = nn.serial(nn.Dense(8, W_std=1.3, b_std=0.1), nn.Relu())
    a = nn.serial(nn.repeat(block, 3), nn.Dense(1)).kernel(x)
    b = nn.serial(block, block, block, nn.Dense(1)).kernel(x)
    np.testing.assert_allclose(a.ntk, b.ntk, rtol=1e-6)
    _, params = nn.repeat(block, 3).init(jax.random.PRNGKey(0), x.shape)
    assert len(params) == 3
    assert not np.allclose(params[0][0]["W"][:3, :3], params[1][0]["W"][:3, :3])


@settings(max_examples=8)
@given(st.integers(2, 9), st.integers(1, 5), st.integers(0, 1000))
def test_permutation_equivariance(n, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(DTYPE)
    perm = rng.permutation(n)
    net = deep(nn.Relu, depth=2)
    k, kp = net.kernel(x), net.kernel(x[perm])
    np.testing.assert_allclose(kp.ntk, np.asarray(k.ntk)[np.ix_(perm, perm)], rtol=1e-5,
                               atol=1e-6)


@ONLY_X32_PASS  # a repr
def test_repr_shows_shapes_not_values():
    k = nn.mlp(2, 1).kernel(np.ones((300, 4), np.float32), np.ones((2, 4), np.float32))
    text = repr(k)
    assert text.startswith("Kernel(nngp=f32[300,2], ntk=f32[300,2], cov1=f32[300], cov2=f32[2]")
    assert "mask1=None" in text and len(text) < 400
