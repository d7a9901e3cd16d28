"""Pooling variants (neural-tangents' default strides, normalize_edges, CIRCULAR, SumPool),
Dropout, FanInProd, FanInConcat along spatial axes, 3-D convolutions and pooling, transposed
and locally connected convolutions, Index, ImageResize and DotGeneral: kernels
against neural-tangents 0.6.5 reference values (tests/data/nt_layers.py), and their finite
layers."""

import jax
import numpy as np
import pytest

from ntkgp import nn
from tests.conftest import DTYPE, REFERENCE_TAGS, X64, rel_err
from tests.helpers import build, load_reference

REF, META = load_reference("nt_layers")
CASES = sorted(META["cases"])
# float64: 1e-6 is the bar. Observed <= 3.4e-9, on diagonal entries only: neural-tangents'
# correlation of an input with itself is 1 only to rounding, which arccos' slope amplifies to
# ~sqrt(eps) (ntkgp sets it to 1 exactly). float32: rounding of the recursion.
TOL = 1e-8 if X64 else 2e-4


def test_reference_covers_the_layers():
    names = {s[0] for c in META["cases"].values() for s in c["layers"]}
    assert {"AvgPool", "SumPool", "Dropout", "FanInProd"} <= names
    pools = [s[1] for c in META["cases"].values() for s in c["layers"] if s[0] == "AvgPool"]
    assert any("strides" not in p for p in pools)  # neural-tangents' default strides
    assert any(p.get("normalize_edges") for p in pools)
    assert any(p.get("padding") == "CIRCULAR" for p in pools)
    convs = [s[1] for c in META["cases"].values() for s in c["layers"] if s[0] == "Conv"]
    assert any(len(c["filter_shape"]) == 3 for c in convs)  # volumes (N, D, H, W, C)
    concat = [s[1] for c in META["cases"].values() for s in c["layers"] if s[0] == "FanInConcat"]
    assert {c["axis"] for c in concat} >= {1, 2, -2}  # spatial axes, also negative
    assert {"ConvTranspose", "ConvLocal", "Index", "ImageResize", "DotGeneral"} <= names
    for layer in ("ConvTranspose", "ConvLocal"):
        pads = {s[1]["padding"] for c in META["cases"].values() for s in c["layers"]
                if s[0] == layer}
        assert pads == {"SAME", "VALID", "CIRCULAR"}, (layer, pads)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("tag", REFERENCE_TAGS)
def test_kernel_matches_neural_tangents(case, tag):
    net = build(META["cases"][case]["layers"])
    x1, x2 = REF[f"{case}__x1"].astype(DTYPE), REF[f"{case}__x2"].astype(DTYPE)
    a, b = {"12": (x1, x2), "11": (x1, None), "22": (x2, None)}[tag]
    k = net.kernel(a, b)
    for g in ("nngp", "ntk"):
        ref = REF[f"{case}__{g}_{tag}"]
        assert k.nngp.shape == ref.shape
        err = rel_err(getattr(k, g), ref)
        assert err <= TOL, (g, err)


# the reference holds x1 against an equal copy ("1c") for every case; neural-tangents'
# values equal its x1-against-itself ones in all, so the cases where self-pairs change the
# kernel (Dropout) are the ones to check
SELF_PAIR_CASES = [c for c in CASES if any(s[0] == "Dropout" for s in META["cases"][c]["layers"])]


@pytest.mark.parametrize("case", SELF_PAIR_CASES)
def test_x1_against_an_equal_copy_matches_neural_tangents(case):
    """neural-tangents takes an x2 equal to x1 as x1 against itself."""
    assert {"dropout_fc", "dropout_conv"} <= set(SELF_PAIR_CASES)
    net = build(META["cases"][case]["layers"])
    x1 = REF[f"{case}__x1"].astype(DTYPE)
    k = net.kernel(x1, x1.copy())
    for g in ("nngp", "ntk"):
        err = rel_err(getattr(k, g), REF[f"{case}__{g}_1c"])
        assert err <= TOL, (g, err)


def test_dropout_changes_only_self_pairs():
    """Train-mode dropout scales an example paired with itself by 1/rate and leaves every
    other pair (and the kernel of x1 against a different x2) unchanged."""
    x = np.random.default_rng(2).standard_normal((4, 3)).astype(DTYPE)
    head = nn.serial(nn.Dense(5, 1.3, 0.1), nn.Relu())
    with_dropout = nn.serial(head, nn.Dropout(0.8))
    k0, k1 = head.kernel(x), with_dropout.kernel(x)
    off = ~np.eye(4, dtype=bool)
    for g in ("nngp", "ntk"):
        a, b = np.asarray(getattr(k0, g)), np.asarray(getattr(k1, g))
        np.testing.assert_array_equal(b[off], a[off])
        np.testing.assert_allclose(np.diag(b), np.diag(a) / 0.8, rtol=1e-6)
    np.testing.assert_array_equal(with_dropout.kernel(x, x[:2] + 1).nngp,
                                  head.kernel(x, x[:2] + 1).nngp)


def test_an_equal_x2_is_x1_against_itself():
    """x2 equal to x1 (the same array, an equal copy, within 1e-12, or the same traced array)
    gives x1's kernel with itself, to the bit, with cov2 = cov1; a different x2 does not."""
    x = np.random.default_rng(3).standard_normal((40, 3)).astype(DTYPE)
    net = nn.serial(nn.Dense(5, 1.3, 0.1), nn.Relu(), nn.Dropout(0.8), nn.Dense(1))
    own = net.kernel(x)
    for x2 in (x, x.copy(), jax.numpy.asarray(x), x + 1e-13 * (x > 0)):
        k = net.kernel(x, x2)
        assert k.x1_is_x2
        for g in ("nngp", "ntk"):
            np.testing.assert_array_equal(getattr(k, g), getattr(own, g))
        np.testing.assert_array_equal(k.cov2, own.cov1)
        np.testing.assert_array_equal(net.kernel(x, x2, "cov2"), own.cov1)
    traced = jax.jit(lambda u: net.kernel(u, u, "nngp"))(x)
    np.testing.assert_allclose(traced, own.nngp, rtol=1e-6)
    near = x.copy()
    near[5, 1] += 1e-3
    k = net.kernel(x, near)
    assert not k.x1_is_x2
    assert abs(k.nngp[5, 5] - own.nngp[5, 5]) > 0.1 * own.nngp[5, 5]  # no Dropout term there
    masked = net.kernel(x, x.copy(), mask_constant=0.0)
    np.testing.assert_allclose(masked.nngp, net.kernel(x, mask_constant=0.0).nngp, rtol=1e-6)


@pytest.mark.parametrize("padding", ["VALID", "SAME", "CIRCULAR"])
@pytest.mark.parametrize("kind", ["avg", "avg_edges", "sum"])
def test_finite_pooling_is_the_mean_or_sum_of_its_window(kind, padding):
    """The finite layer against a direct loop over windows (wrap-around for CIRCULAR)."""
    x = np.random.default_rng(0).standard_normal((2, 7, 3)).astype(DTYPE)
    w, s = 3, 2
    layer = {"avg": nn.AvgPool((w,), (s,), padding),
             "avg_edges": nn.AvgPool((w,), (s,), padding, normalize_edges=True),
             "sum": nn.SumPool((w,), (s,), padding)}[kind]
    y = np.asarray(layer.apply((), x))
    n = 7
    if padding == "VALID":
        starts, out = np.arange(0, n - w + 1, s), (n - w) // s + 1
    else:
        out = -(-n // s)
        low = max((out - 1) * s + w - n, 0) // 2
        starts = np.arange(out) * s - low
    want = []
    for st in starts[:out]:
        idx = np.arange(st, st + w)
        if padding == "CIRCULAR":
            vals, cnt = x[:, idx % n], w
        else:
            ok = (idx >= 0) & (idx < n)
            vals, cnt = x[:, idx[ok]], (ok.sum() if kind == "avg_edges" else w)
        total = vals.sum(axis=1)
        want.append(total if kind == "sum" else total / cnt)
    np.testing.assert_allclose(y, np.stack(want, axis=1), rtol=1e-6, atol=1e-6)


def test_dropout_finite_layer():
    x = np.ones((4, 1000), DTYPE)
    layer = nn.Dropout(0.75)
    y = np.asarray(layer.apply((), x, rng=jax.random.PRNGKey(0)))
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.75, rtol=1e-6)
    with pytest.raises(ValueError, match="needs a PRNG key"):
        layer.apply((), x)
    np.testing.assert_array_equal(nn.Dropout(0.5, "test").apply((), x), x)
    # serial gives each dropout layer its own key
    net = nn.serial(nn.Dropout(0.5), nn.Dropout(0.5))
    _, p = net.init(jax.random.PRNGKey(1), x.shape)
    y2 = np.asarray(net.apply(p, x, rng=jax.random.PRNGKey(0)))
    assert abs((y2 != 0).mean() - 0.25) < 0.02


@pytest.mark.parametrize("make,match", [
    (lambda: nn.Dropout(0.0), r"in \(0, 1\]"),
    (lambda: nn.Dropout(1.5), r"in \(0, 1\]"),
    (lambda: nn.Dropout(-0.1), "rate=1 - p"),
    (lambda: nn.Dropout(0.5, mode="eval"), "mode"),
    (lambda: nn.repeat(nn.Relu(), -1), "non-negative integer"),
    (lambda: nn.AvgPool((2, 2), padding="REFLECT"), "padding"),
])
def test_bad_arguments(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_repeat_zero_is_the_identity():
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(DTYPE)
    net = nn.serial(nn.Dense(4, 1.3, 0.1), nn.repeat(nn.serial(nn.Dense(4), nn.Relu()), 0),
                    nn.Dense(1))
    ref = nn.serial(nn.Dense(4, 1.3, 0.1), nn.Dense(1))
    np.testing.assert_allclose(net.kernel(x).ntk, ref.kernel(x).ntk, rtol=1e-6)
    _, p = net.init(jax.random.PRNGKey(0), x.shape)
    assert p[1] == ()


def test_faninprod_of_mismatched_branches_is_a_clear_error():
    net = nn.serial(nn.FanOut(2), nn.parallel(nn.Dense(3), nn.Dense(4)), nn.FanInProd())
    with pytest.raises(ValueError, match="one shape"):
        net.init(jax.random.PRNGKey(0), (2, 5))
