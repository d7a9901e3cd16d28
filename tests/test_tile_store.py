"""Disk-backed tiled kernels: equal to untiled, resumable after a kill, never mixed up."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ntkgp import batching, nn
from tests.conftest import DTYPE, ONLY_X64_PASS, X64

CNN = nn.serial(nn.Conv(4, (3, 3), padding="SAME", W_std=1.5, b_std=0.1), nn.Relu(),
                nn.AvgPool((2, 2), (2, 2)), nn.Conv(4, (2, 2), padding="VALID"), nn.Relu(),
                nn.GlobalAvgPool(), nn.Dense(1))
FLAT = nn.serial(nn.Conv(4, (3,), padding="CIRCULAR"), nn.Erf(), nn.Flatten(), nn.Dense(1))
TOL = dict(rtol=1e-6, atol=1e-12) if X64 else dict(rtol=1e-5, atol=1e-6)


def _close(got, want):
    for g in ("nngp", "ntk", "cov1"):
        np.testing.assert_allclose(getattr(got, g), getattr(want, g), **TOL)


SLOW = pytest.mark.slow


@pytest.mark.parametrize("tile,x2_none", [
    (1, True), (9, True), (4, False),
    *[pytest.param(t, n, marks=SLOW) for t, n in [(2, True), (3, True), (4, True), (7, True),
                                                   (1, False), (2, False), (3, False),
                                                   (7, False), (9, False)]]])
def test_conv_tiled_equals_untiled(tile, x2_none, rng, tmp_path):
    x1 = rng.standard_normal((9, 6, 6, 2)).astype(DTYPE)
    x2 = None if x2_none else rng.standard_normal((5, 6, 6, 2)).astype(DTYPE)
    want = CNN.kernel(x1, x2)
    _close(batching.batch(CNN.kernel, tile)(x1, x2), want)
    # with a store: the same, and a second call reads every tile back
    store = str(tmp_path / "k")
    _close(batching.batch(CNN.kernel, tile, store=store)(x1, x2), want)
    _close(batching.batch(CNN.kernel, tile, store=store)(x1, x2), want)


@pytest.mark.parametrize("tile", [1, pytest.param(3, marks=SLOW), 4])
def test_same_position_and_spatial_outputs_tiled(tile, rng):
    x = rng.standard_normal((7, 5, 2)).astype(DTYPE)
    _close(batching.batch(FLAT.kernel, tile)(x, None), FLAT.kernel(x, None))
    body = nn.serial(nn.Conv(3, (2,), padding="SAME"), nn.Relu(), nn.Conv(1, (2,)))
    got, want = batching.batch(body.kernel, tile)(x, None), body.kernel(x, None)
    assert got.nngp.shape == (7, 7, 4, 4)
    _close(got, want)


KILLER = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {root!r})
    import ntkgp._src.scale.batching as B
    from ntkgp import batching
    from tests.test_tile_store import kernel, inputs
    orig = B.TileStore.save
    def save(self, i, j, tile):  # SIGKILL (no clean-up at all) once 4 tiles are on disk
        orig(self, i, j, tile)
        if len([f for f in os.listdir(self.path) if f.startswith("tile_")]) == 4:
            os.kill(os.getpid(), signal.SIGKILL)
    B.TileStore.save = save
    batching.batch(kernel, 3, store={store!r})(inputs(), None)
""")


def kernel(x1, x2, get=None):
    return CNN.kernel(x1, x2, get)


kernel._ntkgp_name = "killed-cnn"


def inputs():
    return np.random.default_rng(0).standard_normal((11, 6, 6, 1)).astype(DTYPE)


@ONLY_X64_PASS
def test_killed_computation_resumes_without_recomputing(tmp_path):
    """11 inputs in tiles of 3: 4 row blocks, 10 tiles on and above the diagonal. A process
    killed after 4 tiles leaves them on disk; the resumed call computes only the other 6."""
    store = str(tmp_path / "store")
    code = KILLER.format(root=os.getcwd(), store=store)
    env = dict(os.environ, JAX_ENABLE_X64="1" if X64 else "0", NTKGP_PROGRESS="0")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    done = sorted(f for f in os.listdir(store) if f.startswith("tile_"))
    assert len(done) == 4
    before = {f: os.path.getmtime(os.path.join(store, f)) for f in done}

    computed = []
    import ntkgp._src.scale.batching as B
    orig = B.TileStore.save

    def save(self, i, j, tile):
        computed.append((i, j))
        orig(self, i, j, tile)

    B.TileStore.save = save
    try:
        got = batching.batch(kernel, 3, store=store)(inputs(), None)
    finally:
        B.TileStore.save = orig
    assert len(computed) == 6  # only the 10 - 4 unfinished tiles
    assert not {f"tile_{i}_{j}.npz" for i, j in computed} & set(done)
    assert {f: os.path.getmtime(os.path.join(store, f)) for f in done} == before
    assert not [f for f in os.listdir(store) if f.endswith(".part")]
    _close(got, CNN.kernel(inputs(), None))


@ONLY_X64_PASS  # the store's fingerprint: the same in both passes
def test_store_refuses_a_different_computation(rng, tmp_path):
    x = rng.standard_normal((5, 6, 6, 1)).astype(DTYPE)
    store = str(tmp_path / "s")
    batching.batch(CNN.kernel, 2, store=store)(x, None)
    for call in (lambda: batching.batch(CNN.kernel, 2, store=store)(x + 1, None),
                 lambda: batching.batch(CNN.kernel, 3, store=store)(x, None),
                 lambda: batching.batch(FLAT.kernel, 2, store=store)(x[:, 0], None)):
        with pytest.raises(ValueError, match="holds tiles of a different computation"):
            call()


@ONLY_X64_PASS  # which tiles are kept: files, the same in both passes
def test_interrupt_keeps_finished_tiles(rng, tmp_path):
    x = rng.standard_normal((6, 4, 4, 1)).astype(DTYPE)
    store = str(tmp_path / "s")
    n = []

    def kernel(x1, x2, get=None):
        return CNN.kernel(x1, x2, get)

    def flaky(x1, x2=None, get=None):
        return kernel(x1, x2, get)

    import ntkgp._src.scale.batching as B
    orig = B.TileStore.save

    def save(self, i, j, tile):
        orig(self, i, j, tile)
        n.append(1)
        if len(n) == 2:
            raise KeyboardInterrupt

    B.TileStore.save = save
    try:
        with pytest.raises(KeyboardInterrupt):
            batching.batch(flaky, 2, store=store)(x, None)
    finally:
        B.TileStore.save = orig
    assert len([f for f in os.listdir(store) if f.startswith("tile_")]) == 2
    _close(batching.batch(flaky, 2, store=store)(x, None), CNN.kernel(x, None))


@ONLY_X64_PASS
def test_tiles_spread_over_several_devices():
    """Two (virtual) CPU devices: tiles go to each in turn; the result is the same."""
    code = textwrap.dedent("""
        import sys
        import jax, numpy as np
        sys.path.insert(0, {root!r})
        from ntkgp import batching
        from tests.test_tile_store import CNN
        assert len(jax.local_devices()) == 2, jax.local_devices()
        x = np.random.default_rng(0).standard_normal((7, 6, 6, 1)).astype(np.float32)
        got = batching.batch(CNN.kernel, 2)(x, None)
        want = CNN.kernel(x, None)
        np.testing.assert_allclose(got.ntk, want.ntk, rtol=1e-5, atol=1e-6)
        print("ok")
    """).format(root=os.getcwd())
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_ENABLE_X64="0", NTKGP_PROGRESS="0", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-2000:]
