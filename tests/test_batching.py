"""Tiled kernels equal untiled ones for any tile size and any N."""

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ntkgp import batching, empirical, nn
from tests.conftest import DTYPE, X64

NET = nn.serial(nn.Dense(16, W_std=1.5, b_std=0.1), nn.Relu(), nn.Dense(16, W_std=1.5),
                nn.Erf(), nn.Dense(3, W_std=1.2, b_std=0.2))


@settings(max_examples=12 if X64 else 4)  # the tiling logic is dtype-independent
@given(st.integers(1, 13), st.integers(1, 17), st.integers(1, 9), st.booleans())
def test_analytic_tiled_equals_untiled(n1, tile, n2, x2_none):
    rng = np.random.default_rng(n1 * 100 + n2)
    x1 = rng.standard_normal((n1, 4)).astype(DTYPE)
    x2 = None if x2_none else rng.standard_normal((n2, 4)).astype(DTYPE)
    want = NET.kernel(x1, x2)
    got = batching.batch(NET.kernel, tile)(x1, x2)
    for g in ("nngp", "ntk", "cov1"):
        # a tile is a different XLA program: entries agree to rounding of the matrix's scale
        # (a float32 entry near 0 next to entries of 2 differs by ~1e-7 absolute)
        w = np.asarray(getattr(want, g))
        atol = 8 * np.finfo(w.dtype).eps * np.abs(w).max()
        np.testing.assert_allclose(getattr(got, g), w, rtol=1e-6, atol=atol)
    if x2_none:
        assert got.cov2 is None and got.x1_is_x2
        np.testing.assert_array_equal(got.ntk, got.ntk.T)  # mirrored exactly
    else:
        np.testing.assert_allclose(got.cov2, want.cov2, rtol=1e-6)


@pytest.mark.parametrize("tile", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("get", ["ntk", ("nngp",)])
def test_get_passes_through(tile, get, rng):
    x = rng.standard_normal((8, 4)).astype(DTYPE)
    want = NET.kernel(x, None, get)
    got = batching.batch(NET.kernel, tile)(x, None, get=get)
    if isinstance(get, str):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    else:
        assert got.ntk is None
        np.testing.assert_allclose(got.nngp, want.nngp, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("tile", [None, 3])
def test_get_may_be_positional(tile, rng):
    """neural-tangents' `kernel_fn(x1, x2, 'ntk')`: a positional `get` is static too."""
    x = rng.standard_normal((8, 4)).astype(DTYPE)
    for x2, get in ((None, "ntk"), (x[:3] + 1, ("nngp", "ntk"))):
        want = NET.kernel(x, x2, get)
        got = batching.batch(NET.kernel, tile)(x, x2, get)
        for a, b in ((got, want),) if isinstance(get, str) else ((got.nngp, want.nngp),
                                                                  (got.ntk, want.ntk)):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("tile", [3, 7])
def test_an_equal_x2_is_x1_against_itself(tile, rng):
    """Tiles of x against an equal copy are those of x against itself (Dropout's self-pairs
    included), as for the kernel function untiled."""
    net = nn.serial(nn.Dense(8, 1.3, 0.1), nn.Relu(), nn.Dropout(0.8), nn.Dense(1))
    x = rng.standard_normal((10, 4)).astype(DTYPE)
    want = net.kernel(x)
    got = batching.batch(net.kernel, tile)(x, x.copy())
    assert got.x1_is_x2
    for g in ("nngp", "ntk"):
        np.testing.assert_allclose(getattr(got, g), getattr(want, g), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.cov2, want.cov1, rtol=1e-6)


@pytest.mark.parametrize("trace_axes", [(-1,), ()])
@pytest.mark.parametrize("tile", [1, 3, 4, 7])
@pytest.mark.parametrize("x2_none", [True, False])
def test_empirical_tiled_equals_untiled(trace_axes, tile, x2_none, rng):
    x1 = rng.standard_normal((7, 4)).astype(DTYPE)
    x2 = None if x2_none else rng.standard_normal((5, 4)).astype(DTYPE)
    _, p = NET.init(jax.random.PRNGKey(0), x1.shape)
    fn = empirical.empirical_ntk_fn(NET, trace_axes)
    np.testing.assert_allclose(batching.batch(fn, tile)(x1, x2, p), fn(x1, x2, p), rtol=1e-5,
                               atol=1e-6)


def test_compiles_once_for_all_tiles(rng):
    calls = []

    def kernel_fn(a, b):
        calls.append(a.shape)  # runs only while tracing
        return a @ b.T

    x = rng.standard_normal((10, 3)).astype(DTYPE)
    out = batching.batch(kernel_fn, 4)(x, x)
    np.testing.assert_allclose(out, x @ x.T, rtol=1e-6)
    assert calls == [(4, 3)]


def test_auto_tile_size(rng):
    x = rng.standard_normal((50, 4)).astype(DTYPE)
    t = batching.auto_tile_size(NET.kernel, x)
    assert 1 <= t <= 50
    got = batching.batch(NET.kernel)(x, None)
    np.testing.assert_allclose(got.ntk, NET.kernel(x).ntk, rtol=1e-6, atol=1e-7)


def test_auto_tile_size_is_probed_once_per_signature(rng):
    traces = []

    def kernel_fn(a, b):
        traces.append(a.shape)  # runs only while tracing (the probe and the tile function)
        return a @ b.T

    x = rng.standard_normal((30, 3)).astype(DTYPE)
    batched = batching.batch(kernel_fn)
    np.testing.assert_allclose(batched(x, x), x @ x.T, rtol=1e-5)
    n = len(traces)
    batched(x + 1, x)
    assert len(traces) == n


def test_tile_memory_budget_is_the_accelerators_own():
    """On a GPU the tile size is set by the device's allocator pool, not by host memory."""
    from ntkgp._src.util import device_free_memory_bytes, free_memory_bytes

    class FakeGPU:
        platform = "gpu"

        def memory_stats(self):
            return {"bytes_limit": 60 << 30, "bytes_in_use": 10 << 30}

    class Silent(FakeGPU):
        def memory_stats(self):
            return None

    assert device_free_memory_bytes(FakeGPU()) == 50 << 30
    host = free_memory_bytes()
    assert abs(device_free_memory_bytes(Silent()) - host) < (1 << 30)
    assert abs(device_free_memory_bytes() - host) < (1 << 30)  # this CPU


def test_large_buffers_are_kept_for_reuse_only_when_asked(monkeypatch):
    import ctypes.util
    import sys

    from ntkgp._src.cli import main as cli_main
    for bad, exc in ((1.5, TypeError), (True, TypeError), (0, ValueError), (2 ** 31, ValueError)):
        with pytest.raises(exc, match="`max_bytes` must be"):
            batching.reuse_large_buffers(bad)
    if sys.platform.startswith("linux") and "libc" in (ctypes.util.find_library("c") or ""):
        assert batching.reuse_large_buffers(16 << 20) is True  # within every glibc's range
    # the command line asks for its own process, before any work
    calls = []
    monkeypatch.setattr(cli_main, "reuse_large_buffers", lambda: calls.append("reuse"))
    monkeypatch.setattr(cli_main, "main", lambda: calls.append("main") or 0)
    with pytest.raises(SystemExit) as info:
        cli_main.run()
    assert info.value.code == 0 and calls == ["reuse", "main"]
