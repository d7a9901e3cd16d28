"""Rows read a span at a time (`features.LazyRows`): a posterior on random or Nyström features
fitted from a memmap, a zarr store or a Dask array equals the one fitted from the rows in
memory to the last bit, no read asks for more than a span, and bad rows are named."""

import os

import numpy as np
import pytest

from ntkgp import features, linalg, nn, predict
from ntkgp._src.features import rows as rows_module
from tests.conftest import DTYPE

da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")

RNG = np.random.default_rng(3)
N, D = 2600, 5
X = RNG.normal(size=(N, D)).astype(DTYPE)
Y = np.sin(X[:, :2]) + 0.1 * RNG.normal(size=(N, 2))
XT = RNG.normal(size=(70, D)).astype(DTYPE)
NET = nn.serial(nn.Dense(32, 1.5, 0.1), nn.Relu(), nn.Dense(1, 1.2, 0.05))
SOLVERS = {"features": linalg.FeatureSolver(48, seed=1),
           "nystrom": linalg.FeatureSolver(96, seed=1, kind="nystrom")}


class Recorder:
    """An array that records the row ranges read from it (any object with shape, dtype and
    row slicing is a row source)."""

    def __init__(self, x, chunks=None):
        self.x, self.shape, self.dtype, self.reads = x, x.shape, x.dtype, []
        if chunks:
            self.chunks = (chunks, x.shape[1])

    def __getitem__(self, index):
        self.reads.append(index)
        return self.x[index]


@pytest.fixture(autouse=True)
def small_spans(monkeypatch):
    monkeypatch.setattr(rows_module, "SPAN_BYTES", 1000 * D * X.itemsize)  # 1000 rows


def _sources(tmp_path):
    mm = np.lib.format.open_memmap(os.path.join(tmp_path, "x.npy"), mode="w+", dtype=X.dtype,
                                   shape=X.shape)
    mm[:] = X
    mm.flush()
    z = zarr.open_array(os.path.join(tmp_path, "x.zarr"), mode="w", shape=X.shape,
                        chunks=(700, D), dtype=X.dtype)
    z[:] = X
    return {"memmap": np.load(os.path.join(tmp_path, "x.npy"), mmap_mode="r"),
            "zarr": z, "dask": da.from_array(X, chunks=(1300, D)),
            "recorder": features.LazyRows(Recorder(X))}


@pytest.mark.parametrize("solver", sorted(SOLVERS))
@pytest.mark.parametrize("mode", ["ntk", "nngp"])
def test_lazy_rows_give_the_in_memory_posterior(tmp_path, solver, mode):
    ref = predict.Posterior(NET, X, Y, mode=mode, solver=SOLVERS[solver], diag_reg=1e-2)
    m0, v0 = ref.predict(XT, return_var=True)
    c0 = ref.predict(XT[:9], return_cov=True).covariance
    for name, src in _sources(tmp_path).items():
        post = predict.Posterior(NET, src, Y, mode=mode, solver=SOLVERS[solver],
                                 diag_reg=1e-2)
        assert isinstance(post.x_train, features.LazyRows)
        m, v = post.predict(da.from_array(XT, chunks=25), return_var=True)
        np.testing.assert_array_equal(np.asarray(m), np.asarray(m0), err_msg=name)
        np.testing.assert_array_equal(np.asarray(v), np.asarray(v0), err_msg=name)
        c = post.predict(XT[:9], return_cov=True).covariance
        np.testing.assert_array_equal(np.asarray(c), np.asarray(c0), err_msg=name)
        assert post.log_marginal_likelihood() == ref.log_marginal_likelihood()


def test_reads_are_spans_never_the_whole_array():
    rec = Recorder(X)
    post = predict.Posterior(NET, features.LazyRows(rec), Y, solver=SOLVERS["features"],
                             diag_reg=1e-2)
    spans = [r for r in rec.reads if isinstance(r, slice)]
    assert spans and all(r.stop - r.start <= 2048 for r in spans)  # one block or a span
    covered = sorted((r.start, r.stop) for r in spans)
    assert covered[0][0] == 0 and covered[-1][1] == N
    assert post.predict(XT).shape == (70, 2)


def test_spans_follow_storage_chunks():
    rows = features.LazyRows(da.from_array(X, chunks=(300, D)))
    spans = list(rows.spans(64))
    bounds = set(range(0, N + 1, 300)) | {N}
    assert all(a in bounds and b in bounds for a, b in spans)
    assert spans[0][0] == 0 and spans[-1][1] == N
    assert all(b - a >= 1000 for a, b in spans[:-1])  # merged up to SPAN_BYTES
    assert all(s[1] == t[0] for s, t in zip(spans, spans[1:]))
    zspans = list(features.LazyRows(Recorder(X, chunks=450)).spans(64))
    assert all(a % 450 == 0 for a, _ in zspans)


@pytest.mark.parametrize("size", [1, 333, 1000, 2048, 5000])
def test_blocks_cover_the_rows_in_order(size):
    got = list(features.LazyRows(da.from_array(X, chunks=(700, D))).blocks(size))
    assert [a for a, _, _ in got] == list(range(0, N, size))
    assert all(b - a == min(size, N - a) for a, b, _ in got)
    np.testing.assert_array_equal(np.concatenate([np.asarray(v) for _, _, v in got]), X)


def test_take_in_any_order_with_repeats():
    idx = [2500, 3, 3, 1200, 0]
    for src in (da.from_array(X, chunks=(700, D)), Recorder(X)):
        np.testing.assert_array_equal(np.asarray(features.LazyRows(src).take(idx)), X[idx])


def test_solvers_that_need_every_row_load_lazy_rows(tmp_path):
    """Cholesky (and CG, eigh) take lazy rows as before: loaded whole, the same posterior."""
    ref = predict.Posterior(NET, X[:300], Y[:300], solver="cholesky", diag_reg=1e-2)
    post = predict.Posterior(NET, da.from_array(X[:300], chunks=(100, D)), Y[:300],
                             solver="cholesky", diag_reg=1e-2)
    assert not isinstance(post.x_train, features.LazyRows)
    np.testing.assert_array_equal(np.asarray(post.predict(XT)), np.asarray(ref.predict(XT)))


def test_non_finite_rows_are_named(tmp_path):
    bad = X.copy()
    bad[2550, 2] = np.nan  # spans: chunks of 500 merged to at least a block of 2048 rows
    with pytest.raises(ValueError, match=r"x_train\[2500:2600\]` contains 1 NaN"):
        predict.Posterior(NET, da.from_array(bad, chunks=(500, D)), Y,
                          solver=SOLVERS["features"], diag_reg=1e-2)


def test_bad_sources_are_refused():
    lazy = da.from_array(X, chunks=(500, D))
    with pytest.raises(ValueError, match=r"shape \(N, d\)"):
        features.LazyRows(da.from_array(X[:, 0]))
    unknown = lazy[lazy[:, 0] > 0]
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        predict.Posterior(NET, unknown, Y[:10], solver=SOLVERS["features"], diag_reg=1e-2)
    with pytest.raises(TypeError, match="complex"):
        features.LazyRows(da.from_array(X.astype(np.complex64)))
    post = predict.Posterior(NET, lazy, Y, solver=SOLVERS["features"], diag_reg=1e-2)
    with pytest.raises(ValueError, match=r"compared with, \(5,\); got \(70, 3\)"):
        post.predict(da.from_array(XT[:, :3]))
    with pytest.raises(TypeError, match="row ranges"):
        features.LazyRows(lazy)[[1, 2]]
