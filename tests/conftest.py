import os

# The suite is bound by XLA compilation (hundreds of small programs, each run a few times):
# JAX's jax_disable_most_optimizations (LLVM's optimization level 0, its expensive passes off)
# compiles them about 30% faster, and the programs compute the same operations (the HLO and
# its fusions are XLA's as in users' runs; matrix products and factorizations call the same
# libraries). Set in the environment before JAX is imported, so that the processes the tests
# start (Dask workers, the command line) compile alike. Tests bound by running compiled code
# (Monte-Carlo averages of many finite networks) ask for XLA's full optimization with the
# `optimized_programs` fixture. A level the caller chose (XLA_FLAGS or the variable) is kept.
# Doctests, README's blocks, the executed docs and the benchmarks run with XLA's defaults.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")

X64 = bool(jax.config.read("jax_enable_x64"))
DTYPE = np.float64 if X64 else np.float32

# Workflow tests whose subject does not depend on the dtype (files, processes, devices,
# training loops) run in one of CI's two passes only, split between them to balance time.
# Reference kernels come for x1 against x2 ("12") and each against itself ("11", "22"). The
# float32 pass (README's test command) checks the rounding on "12", whose computation includes
# each input's own variances; the float64 pass (CI) checks every stored kernel.
REFERENCE_TAGS = ["12", "11", "22"] if X64 else ["12"]
ONLY_X64_PASS = pytest.mark.skipif(not X64, reason="dtype-independent workflow test: runs "
                                   "once, in the float64 pass")
ONLY_X32_PASS = pytest.mark.skipif(X64, reason="dtype-independent workflow test: runs once, "
                                   "in the float32 pass")

# Relative tolerances by dtype (compared against the largest entry of the reference).
TOL = {np.float32: 5e-4, np.float64: 1e-8}
RTOL = TOL[DTYPE]

needs_x64 = pytest.mark.skipif(not X64, reason="needs float64 (run with JAX_ENABLE_X64=1)")

os.environ.setdefault("NTKGP_PROGRESS", "0")

try:
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True, deadline=None, max_examples=20)
    settings.register_profile("dev", deadline=None, max_examples=20)
    settings.load_profile("ci" if os.environ.get("CI") else "dev")
except ImportError:  # pragma: no cover
    pass


def rel_err(a, b):
    """max |a - b| / max |b|."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def frob_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture
def optimized_programs():
    """XLA's full optimization for the programs a test compiles: for tests whose time goes to
    running compiled code (many finite networks) rather than compiling it. Programs compiled
    before in the same process keep the level they were compiled with."""
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", False)
    yield
    jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture(scope="session", autouse=True)
def shared_compilation_cache(tmp_path_factory):
    """One persistent XLA compilation cache for the test run, shared by the pytest-xdist
    workers (and the processes tests start): they compile many of the same programs. It
    lives in pytest's temporary folder of this run (old runs' folders are removed by pytest).
    A cache the caller chose (JAX_COMPILATION_CACHE_DIR) is kept."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        yield
        return
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # .../pytest-N/popen-gwK: the run's folder, shared by workers
    path = str(base / "xla-cache")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = path
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def key():
    return jax.random.PRNGKey(0)
