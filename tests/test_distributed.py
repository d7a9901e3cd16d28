"""ntkgp.distributed on a 2-worker Dask LocalCluster: kernels equal to the single-process ones,
resumable stores, a killed worker, and CG products as Dask tasks.

Scheduling, stores and workers, in the float64 pass only: the tiles' and the feature sums'
arithmetic is the single-process code that test_batching, test_tile_store and
features/test_lazy_rows check in both precisions, and a cluster costs each pass ~30 s."""

import os
import signal
import threading
import time

import numpy as np
import pytest

pytest.importorskip("distributed", reason="needs the `scale` extra: pip install 'ntkgp[scale]'")
pytest.importorskip("zarr", reason="needs the `scale` extra: pip install 'ntkgp[scale]'")

import jax  # noqa: E402
from distributed import Client, LocalCluster, get_task_stream  # noqa: E402

from ntkgp import distributed, linalg, nn  # noqa: E402
from tests.conftest import DTYPE, ONLY_X64_PASS, rel_err  # noqa: E402

pytestmark = ONLY_X64_PASS

NET = nn.serial(nn.Dense(1), nn.Relu(), nn.Dense(1), nn.Relu(), nn.Dense(1))
TOL = 1e-12


@pytest.fixture(scope="module")
def client():
    # the workers compile as this process does (the suite's optimization level: a different
    # LLVM level rounds differently), on one thread each
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
    env = {"JAX_ENABLE_X64": "1", "JAX_PLATFORMS": "cpu",
           "XLA_FLAGS": flags.strip(), "NTKGP_PROGRESS": "0",
           "JAX_DISABLE_MOST_OPTIMIZATIONS": "1" if jax.config.read(
               "jax_disable_most_optimizations") else "0"}
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None, env=env) as cluster, Client(cluster) as c:
        c.wait_for_workers(2)
        yield c


def _x(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3)).astype(DTYPE)


def test_kernel_on_two_workers_equals_the_single_process_kernel(client, tmp_path):
    x, x2 = _x(70), _x(30, seed=1)
    k = distributed.kernel_to_zarr(NET.kernel, x, path=tmp_path / "sym", get="ntk",
                                   tile_size=16, client=client)
    assert k.shape == (70, 70) and k.dtype == DTYPE
    assert rel_err(k[:], NET.kernel(x, None, get="ntk")) < TOL
    k2 = distributed.kernel_to_zarr(NET.kernel, x, x2, path=tmp_path / "cross", get="nngp",
                                    tile_size=16, client=client)
    assert rel_err(k2[:], NET.kernel(x, x2, get="nngp")) < TOL
    # x against an equal copy is x against itself, as for the kernel untiled: the same tiles
    same = distributed.kernel_to_zarr(NET.kernel, x, x.copy(), path=tmp_path / "same",
                                      get="ntk", tile_size=16, client=client)
    np.testing.assert_array_equal(same[:], k[:])
    assert not os.path.exists(tmp_path / "same" / "done" / "32_16")
    # a second call finds every tile done and computes nothing
    before = os.path.getmtime(tmp_path / "sym" / "done" / "16_32")
    again = distributed.kernel_to_zarr(NET.kernel, x, path=tmp_path / "sym", get="ntk",
                                       tile_size=16, client=client)
    assert os.path.getmtime(tmp_path / "sym" / "done" / "16_32") == before
    np.testing.assert_array_equal(again[:], k[:])


def test_store_resumes_and_never_reads_an_unfinished_tile(client, tmp_path):
    x = _x(48)
    path = tmp_path / "k"
    distributed.kernel_to_zarr(NET.kernel, x, path=path, get="ntk", tile_size=16, client=client)
    # a worker died while writing tile (16, 32): garbage in its chunk, no done marker
    import zarr
    arr = zarr.open_array(str(path / "kernel"), mode="r+")
    arr[16:32, 32:48] = -1.0
    os.unlink(path / "done" / "16_32")
    with pytest.raises(RuntimeError, match="incomplete: 1 of 6 tiles"):
        distributed.open_kernel(path)
    k = distributed.kernel_to_zarr(NET.kernel, x, path=path, get="ntk", tile_size=16,
                                   client=client)
    assert rel_err(k[:], NET.kernel(x, None, get="ntk")) < TOL
    with pytest.raises(ValueError, match="holds tiles of a different computation"):
        distributed.kernel_to_zarr(NET.kernel, x, path=path, get="nngp", tile_size=16,
                                   client=client)
    with pytest.raises(FileNotFoundError, match="not an ntkgp kernel store"):
        distributed.open_kernel(tmp_path / "nothing")


def test_cg_with_products_as_dask_tasks_equals_the_dense_solve(client, tmp_path):
    x = _x(60)
    distributed.kernel_to_zarr(NET.kernel, x, path=tmp_path / "k", get="ntk", tile_size=16,
                               client=client)
    op = distributed.DaskKernelOperator(tmp_path / "k", client)
    k = np.asarray(NET.kernel(x, None, get="ntk"), np.float64)
    b = np.random.default_rng(2).standard_normal((60, 2))
    # relative to the largest entry: tiles and the whole kernel round differently
    assert rel_err(op.matmat(b), k @ b) < 1e-12
    res = linalg.cg_solve(op, b, 1e-2, preconditioner="nystrom", rank=20, tol=1e-10)
    assert res.converged
    assert rel_err(res.x, np.linalg.solve(k + 1e-2 * np.eye(60), b)) < 1e-8


def _slow_kernel(net):
    """``net.kernel`` that sleeps 0.15 s per tile on the worker (so a run can be interrupted)."""
    def kernel(a, b, get):
        k = net.kernel(a, b, get=get)
        return jax.pure_callback(lambda v: (time.sleep(0.15), v)[1],
                                 jax.ShapeDtypeStruct(k.shape, k.dtype), k)
    return kernel


def test_features_of_a_dask_array_are_summed_on_the_workers(client):
    """With a client active, a feature solver's pass over a Dask array runs as one task per
    chunk on the workers; the fit equals the one from memory up to the order of the sums."""
    import dask.array as da

    from ntkgp import predict
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1500, 4)).astype(DTYPE)
    y = np.sin(x[:, :1]) + 0.1 * rng.standard_normal((1500, 1))
    xt = rng.standard_normal((40, 4)).astype(DTYPE)
    lazy = da.from_array(x, chunks=(400, 2))  # the columns are joined for the tasks
    tol = 1e-9
    for solver in (linalg.FeatureSolver(64, seed=2),
                   linalg.FeatureSolver(120, seed=2, kind="nystrom")):
        ref = predict.Posterior(NET, x, y, solver=solver, diag_reg=0.1)
        with get_task_stream(client) as stream:
            post = predict.Posterior(NET, lazy, y, solver=solver, diag_reg=0.1)
        chunk_tasks = [t for t in stream.data if "_chunk_sums" in str(t["key"])]
        assert len(chunk_tasks) == 4 and {t["worker"] for t in chunk_tasks}  # one per chunk
        assert rel_err(post.factor.gram, ref.factor.gram) < tol
        m, v = post.predict(xt, return_var=True)
        m0, v0 = ref.predict(xt, return_var=True)
        assert rel_err(m, m0) < tol and rel_err(v, v0) < tol
    bad = x.copy()
    bad[1234, 1] = np.inf
    with pytest.raises(ValueError, match=r"x_train\[1200:1500\]` contains 1 NaN"):
        predict.Posterior(NET, da.from_array(bad, chunks=(300, 4)), y,
                          solver=linalg.FeatureSolver(64), diag_reg=0.1)


def test_a_killed_worker_still_gives_the_correct_matrix(client, tmp_path):
    x = _x(96)  # 21 upper tiles of 16, ~3 s of sleeping spread over two workers
    path = tmp_path / "k"
    pids = list(client.run(os.getpid).values())
    out = {}

    def run():
        out["k"] = distributed.kernel_to_zarr(_slow_kernel(NET), x, path=path, get="ntk",
                                              tile_size=16, client=client)

    th = threading.Thread(target=run)
    th.start()
    deadline = time.time() + 60
    while time.time() < deadline and len(os.listdir(path / "done")
                                         if (path / "done").exists() else []) < 3:
        time.sleep(0.02)
    done_at_kill = len(os.listdir(path / "done"))
    os.kill(pids[0], signal.SIGKILL)  # mid-run: the nanny restarts it, Dask reschedules
    th.join(timeout=120)
    assert not th.is_alive()
    assert 3 <= done_at_kill < 21, done_at_kill
    assert rel_err(out["k"][:], NET.kernel(x, None, get="ntk")) < 1e-6
    # markers only: a worker killed while writing one leaves its temporary ".tmp-*.part" file
    # (SIGKILL runs no cleanup), which is never read as a marker
    assert len([f for f in os.listdir(path / "done") if not f.startswith(".tmp-")]) == 21


def test_a_script_without_the_main_guard_is_told_before_any_worker_starts(tmp_path):
    """Dask's worker processes import the script again: code outside `if __name__ ==
    "__main__":` would start a cluster in each. The library says so instead."""
    import subprocess
    import sys
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from ntkgp._src.scale.dask_kernel import _unguarded_script_line as where\n"
        "def run():\n"
        "    return where()\n"
        "print('top', where()[1], run()[1])\n"
        "if __name__ == '__main__':\n"
        "    print('guarded', where(), run())\n"
        "else:\n"
        "    print('else', where()[1])\n")
    out = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["top 4 4", "guarded None None"]
    script = tmp_path / "unguarded.py"
    script.write_text(
        "import numpy as np\n"
        "from ntkgp import distributed, nn\n"
        "net = nn.serial(nn.Dense(1), nn.Relu(), nn.Dense(1))\n"
        "x = np.ones((4, 2), np.float32)\n"
        "distributed.kernel_to_zarr(net.kernel, x, path='k', get='nngp', tile_size=2)\n")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 1
    assert (f"from the top-level code of the script {script.resolve()} (line 5)"
            in out.stderr), out.stderr
    assert 'if __name__ == "__main__":' in out.stderr
    assert out.stderr.count("Traceback") == 1  # this message alone: no worker was started
    assert time.perf_counter() - t0 < 120  # nothing started and hung
