"""Operations on `Kernel` objects (slicing, transposition, sums of independent branches,
scaling) and the `kernel` options neural-tangents users rely on (``get='cov1'``,
``diagonal_spatial``, ``diagonal_batch``): each against the kernel computed directly from the
correspondingly transformed inputs or network."""

import numpy as np
import pytest

from ntkgp import nn
from tests.conftest import DTYPE, X64, rel_err

TOL = 1e-12 if X64 else 2e-5
RNG = np.random.default_rng(0)
X1 = RNG.standard_normal((6, 5, 3)).astype(DTYPE)
X2 = RNG.standard_normal((4, 5, 3)).astype(DTYPE)
IMG = RNG.standard_normal((3, 4, 3, 2)).astype(DTYPE)
CONV = nn.serial(nn.Conv(4, (3,), padding="SAME", W_std=1.3, b_std=0.1), nn.Relu(),
                 nn.Conv(4, (2,), padding="SAME"))  # outputs keep the positions
POOLED = nn.serial(CONV, nn.Relu(), nn.AvgPool((2,)))


def close(a, b):
    assert a.shape == b.shape and rel_err(a, b) <= TOL, (a.shape, b.shape)


def same_kernel(k, ref):
    for g in ("nngp", "ntk", "cov1"):
        close(getattr(k, g), getattr(ref, g))
    close(k.cov2_or_cov1, ref.cov2_or_cov1)
    assert k.x1_is_x2 == ref.x1_is_x2


@pytest.mark.parametrize("rows,cols", [(slice(1, 4), slice(None)), ([0, 5, 2], [3, 1]),
                                       (slice(None), np.array([2]))])
def test_slice_is_the_kernel_of_the_selected_examples(rows, cols):
    k = CONV.kernel(X1, X2)
    same_kernel(k.slice(rows, cols), CONV.kernel(X1[rows], X2[cols]))


def test_indexing_a_self_kernel_keeps_it_symmetric():
    k = CONV.kernel(X1)
    same_kernel(k[1:4], CONV.kernel(X1[1:4]))
    same_kernel(k[[0, 3]], CONV.kernel(X1[[0, 3]]))
    same_kernel(k.slice(slice(0, 2), slice(2, 5)), CONV.kernel(X1[:2], X1[2:5]))
    assert k.slice() is k


def test_indexing_positions_is_the_kernel_of_cropped_outputs():
    """``k[examples, positions]`` crops the positions of both inputs' outputs."""
    k = CONV.kernel(X1, X2)
    cropped = k[:, 1:4]
    close(cropped.nngp, np.asarray(k.nngp)[:, :, 1:4, 1:4])
    close(cropped.cov1, np.asarray(k.cov1)[:, 1:4, 1:4])
    diag = CONV.kernel(X1, X2, diagonal_spatial=True)[:, 1:4]
    close(diag.ntk, np.asarray(k.ntk)[:, :, np.arange(1, 4), np.arange(1, 4)])


def test_T_is_the_kernel_of_the_inputs_swapped():
    same_kernel(CONV.kernel(X1, X2).T, CONV.kernel(X2, X1))
    k = CONV.kernel(X1)
    assert k.T is k


def test_transpose_permutes_the_spatial_axes_as_transposed_images():
    net = nn.serial(nn.Conv(3, (2, 2), padding="SAME", W_std=1.2), nn.Relu(),
                    nn.Conv(3, (1, 1)))
    k = net.kernel(IMG, IMG[:2] + 0.5)
    ref = net.kernel(IMG.transpose(0, 2, 1, 3), IMG[:2].transpose(0, 2, 1, 3) + 0.5)
    same_kernel(k.transpose((1, 0)), ref)
    assert k.transpose() is k  # neural-tangents: axes=None keeps them


def test_sum_of_kernels_is_the_kernel_of_summed_independent_branches():
    a = nn.serial(nn.Dense(3, 1.3, 0.1), nn.Relu(), nn.Dense(2))
    b = nn.serial(nn.Dense(3, 0.8, 0.3), nn.Erf(), nn.Dense(2, 1.1, 0.2))
    joint = nn.serial(nn.FanOut(2), nn.parallel(a, b), nn.FanInSum())
    x1, x2 = X1[:, :, 0], X2[:, :, 0]
    same_kernel(a.kernel(x1, x2) + b.kernel(x1, x2), joint.kernel(x1, x2))
    same_kernel(sum([a.kernel(x1), b.kernel(x1)]), joint.kernel(x1))


def test_scaling_follows_neural_tangents():
    """``k * a`` is the kernel of ``a f`` (all fields times a^2); ``k + b`` adds the variance
    ``b^2`` of an independent constant to the NNGP and the variances, not to the NTK."""
    k = CONV.kernel(X1, X2)
    scaled = k * 3.0
    for g in ("nngp", "ntk", "cov1", "cov2"):
        close(getattr(scaled, g), 9.0 * np.asarray(getattr(k, g)))
    close((k / 2.0).nngp, np.asarray(k.nngp) / 4.0)
    shifted = k + 0.5
    close(shifted.nngp, np.asarray(k.nngp) + 0.25)
    close(shifted.ntk, np.asarray(k.ntk))
    close(shifted.cov2, np.asarray(k.cov2) + 0.25)


def test_get_variances():
    k = CONV.kernel(X1, X2)
    close(CONV.kernel(X1, X2, "cov1"), np.asarray(k.cov1))  # one program for cov1 and cov2
    close(CONV.kernel(X1, X2, "cov2"), np.asarray(k.cov2))
    close(CONV.kernel(X1, None, "cov2"), np.asarray(CONV.kernel(X1).cov1))
    part = CONV.kernel(X1, X2, ("cov1", "ntk"))  # the program of get=None
    assert part.nngp is None
    close(part.ntk, np.asarray(k.ntk))


@pytest.mark.parametrize("net,x2", [(CONV, X2), (POOLED, None)], ids=["conv", "pooled"])
def test_diagonal_spatial_is_the_diagonal_of_the_full_kernel(net, x2):
    full = net.kernel(X1, x2)
    diag = net.kernel(X1, x2, diagonal_spatial=True)
    s = full.nngp.shape[-1]
    assert diag.diagonal_spatial and diag.nngp.shape == full.nngp.shape[:2] + (s,)
    idx = np.arange(s)
    for g in ("nngp", "ntk"):
        close(getattr(diag, g), np.asarray(getattr(full, g))[:, :, idx, idx])
    close(diag.cov1, np.asarray(full.cov1)[:, idx, idx])
    if x2 is None:  # a network ending in a readout has no positions left: nothing changes
        readout = nn.serial(net, nn.Flatten(), nn.Dense(1))
        close(readout.kernel(X1, x2, "ntk", diagonal_spatial=True, diagonal_batch=False),
              readout.kernel(X1, x2, "ntk"))


def test_bad_operations_get_clear_errors():
    k = CONV.kernel(X1, X2)
    with pytest.raises(TypeError, match=r"slice or an array \(k\[2:3\]\), not an integer"):
        k[2]
    with pytest.raises(ValueError, match="permutation of the 1 spatial axes"):
        k.transpose((1, 0))
    with pytest.raises(ValueError, match="same inputs and layout"):
        k + CONV.kernel(X1)
    with pytest.raises(IndexError, match="has 2 axes to index; got 3 entries"):
        k[:, 1:2, 0:1]
    with pytest.raises(IndexError, match="slices and integers for its positions"):
        k[:, None]
    with pytest.raises(ValueError, match="`get` must be one of 'nngp', 'ntk', 'cov1', 'cov2'"):
        CONV.kernel(X1, None, "var")
    with pytest.raises(TypeError, match="`diagonal_spatial` and `diagonal_batch`"):
        CONV.kernel(X1, None, diagonal_spatial="yes")
