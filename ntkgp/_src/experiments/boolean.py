r"""Problems for the SGD-vs-Bayes experiment: all points of :math:`\{0,1\}^n` with a target
function, or binarized images; a train/held-out split, the default network, and names for the
functions found."""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Sequence

import numpy as np

from ntkgp._src import checks
from ntkgp._src.nn.spec import cnn, mlp


def _majority(x):
    return x.sum(axis=1) * 2 > x.shape[1]


def _parity(x):
    return x.sum(axis=1) % 2 == 1


def _first_bit(x):
    return x[:, 0] == 1


def _and_or(x):
    return (x[:, 0] & x[:, 1]) | x[:, 2]


TARGETS = {"majority": _majority, "parity": _parity, "first_bit": _first_bit,
           "and_or": _and_or}


@dataclasses.dataclass(frozen=True)
class BooleanProblem:
    """All points of :math:`\\{0,1\\}^n` (or the images of `image_problem`), their labels and
    a train/held-out split.

    Attributes:
        x: inputs of shape ``(2**n_bits, n_bits)``, entries 0/1 (float); images
            ``(N, H*W)`` or ``(N, H, W, 1)`` for `image_problem`.
        y: labels of shape ``(N,)``, entries -1/+1.
        train: indices of the training points ``S``, shape ``(n_train,)``.
        test: indices of the held-out points, shape ``(2**n_bits - n_train,)``.
        target: the target's name.
    """

    x: np.ndarray
    y: np.ndarray
    train: np.ndarray
    test: np.ndarray
    target: str

    @property
    def n_bits(self) -> int:
        return self.x.shape[1]


def boolean_problem(n_bits: int = 7, target="majority", n_train: int = 64,
                    seed: int = 0) -> BooleanProblem:
    """Build a `BooleanProblem`.

    Args:
        n_bits: ``n``; the problem has ``2**n`` points (at most 16 bits).
        target: a name in ``TARGETS`` (``'majority'``, ``'parity'``, ``'first_bit'``,
            ``'and_or'``) or a function mapping a 0/1 array of shape ``(M, n)`` to ``M`` bools.
        n_train: size of the training set, ``1 <= n_train < 2**n``.
        seed: seed of the split.

    Returns:
        A `BooleanProblem`.

    Example:
        >>> from ntkgp.experiments import boolean_problem
        >>> p = boolean_problem(4, "parity", n_train=10)
        >>> p.x.shape, p.train.shape, p.test.shape
        ((16, 4), (10,), (6,))
    """
    n_bits = checks.check_positive_int(n_bits, "n_bits")
    if n_bits > 16:
        raise ValueError(f"`n_bits` must be at most 16 (2**n points are enumerated); got "
                         f"{n_bits}.")
    n = 2 ** n_bits
    n_train = checks.check_positive_int(n_train, "n_train")
    if n_train >= n:
        raise ValueError(f"`n_train` must leave held-out points: 1 <= n_train < 2**n_bits = "
                         f"{n}; got {n_train}.")
    bits = np.array(list(itertools.product([0, 1], repeat=n_bits)), dtype=np.int64)
    if callable(target):
        name = getattr(target, "__name__", "custom")
        labels = np.asarray(target(bits))
    else:
        checks.check_choice(target, "target", tuple(TARGETS))
        name, labels = target, TARGETS[target](bits)
    if labels.shape != (n,):
        raise ValueError(f"the target must return one label per point, shape ({n},); got "
                         f"shape {labels.shape}.")
    y = np.where(labels.astype(bool), 1.0, -1.0)
    perm = np.random.default_rng(seed).permutation(n)
    return BooleanProblem(bits.astype(np.float64), y, np.sort(perm[:n_train]),
                          np.sort(perm[n_train:]), name)


def image_problem(name: str = "digits", n_train: int = 500, n_test: int = 50,
                  pool: int = 1, seed: int = 0, flatten: bool = True) -> BooleanProblem:
    """Binarized images as a `BooleanProblem`: classes 0-4 against 5-9 (Mingard et al.
    2021's binarized MNIST), ``n_train + n_test`` images drawn at random.

    The held-out set must be small for functions to repeat among the runs: with ``n_test``
    points there are ``2**n_test`` functions, and only those found at least twice are
    compared.

    Args:
        name: an image set of `ntkgp.data.load_images` (``'digits'``, ``'fashion_mnist'``,
            ``'mnist5k'``).
        n_train: size of the training set ``S``.
        n_test: held-out images.
        pool: average-pool the images by this factor first.
        seed: seed of the draw.
        flatten: inputs as vectors ``(N, H*W)`` (fully connected networks) or images
            ``(N, H, W, 1)`` (convolutional ones).

    Returns:
        A `BooleanProblem` whose ``x`` holds the images (``train`` the first ``n_train``).

    Raises:
        ValueError: when the set has fewer than ``n_train + n_test`` images.
        ImportError / FileNotFoundError: the package holding the images is not installed.
    """
    from ntkgp._src.data import load_images

    n_train = checks.check_positive_int(n_train, "n_train")
    n_test = checks.check_positive_int(n_test, "n_test")
    x, labels = load_images(name, n=n_train + n_test, pool=pool, seed=seed)  # checks n
    pick = np.random.default_rng(seed).permutation(len(x))     # S and held-out at random
    x, labels = x[pick], labels[pick]
    if flatten:
        x = x.reshape(len(x), -1)
    y = np.where(labels >= 5, 1.0, -1.0)
    return BooleanProblem(x, y, np.arange(n_train), np.arange(n_train, n_train + n_test),
                          f"{name} 0-4 vs 5-9")


def default_net(width: int, depth: int = 2, W_std: float = math.sqrt(2.0), b_std: float = 0.1,
                arch: str = "fcn"):
    """The experiment's network: ``depth`` hidden ReLU layers of ``width`` units (``'fcn'``)
    or of ``width`` channels of 3x3 convolutions (``'cnn'``, `ntkgp.nn.cnn`: ``SAME``
    padding, then ``Flatten``, for images ``(N, H, W, C)``), and one output (NTK
    parameterization).

    Args:
        width: hidden units (channels) per layer.
        depth: number of hidden layers.
        W_std: weight standard deviation (``sqrt(2)``: the ReLU's variance-preserving value).
        b_std: bias standard deviation.
        arch: ``'fcn'`` or ``'cnn'``.

    Returns:
        An ``ntkgp.nn`` `Layer` with one output.
    """
    checks.check_choice(arch, "arch", ("fcn", "cnn"))
    if arch == "cnn":
        return cnn(depth, width, "relu", W_std=W_std, b_std=b_std)
    return mlp(depth, width, "relu", W_std=W_std, b_std=b_std)


def pack_functions(bits) -> list:
    """Hex strings naming Boolean functions: row ``r`` of ``bits`` (shape ``(R, T)``, truthy
    where the function is +1 on held-out point ``t``) packed big-endian, 8 points a byte.

    Args:
        bits: array ``(R, T)``.

    Returns:
        ``R`` hex strings of ``ceil(T / 8)`` bytes each.
    """
    bits = np.asarray(bits, bool)
    return [row.tobytes().hex() for row in np.packbits(bits, axis=1)]


def unpack_function(name: str, n_points: int) -> np.ndarray:
    """Signs (+1/-1) of shape ``(n_points,)`` of a function named by `pack_functions`.

    Args:
        name: a hex string from `pack_functions`.
        n_points: ``T``, the number of held-out points it was packed from.

    Returns:
        An int array of +1/-1.
    """
    b = np.unpackbits(np.frombuffer(bytes.fromhex(name), np.uint8))[:n_points]
    return np.where(b.astype(bool), 1.0, -1.0)


def function_frequencies(names: Sequence[str]):
    """``(functions, counts)``, the distinct names sorted by decreasing count (ties by name).

    Args:
        names: one function name per run (from `pack_functions`).

    Returns:
        ``(functions, counts)``: a list of names and an integer array of their counts.
    """
    uniq, counts = np.unique(np.asarray(list(names), dtype=object).astype(str),
                             return_counts=True)
    order = np.lexsort((uniq, -counts))
    return [str(u) for u in uniq[order]], counts[order].astype(int)
