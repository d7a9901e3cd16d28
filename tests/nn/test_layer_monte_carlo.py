"""Finite networks with Dropout, FanInProd, the pooling variants (also straight into
nonlinearities), 3-D convolutions, concatenation along positions, transposed and locally
connected convolutions, resampling, indexing and products with constants, and graph
aggregation converge to their analytic kernels as their widths grow."""

import jax
import numpy as np
import pytest

from ntkgp import nn
from tests.conftest import DTYPE, ONLY_X64_PASS
from tests.helpers import batch_kernel_errors, rms_kernel_errors

NAMES = ["dropout", "faninprod", "pool_variants", "pool_nonlinear", "graph", "conv3d",
         "concat_spatial", "conv_transpose", "conv_local", "conv_local_2d", "resample",
         "dot_general"]


def make_net(name, width, out):
    if name == "dropout":
        return nn.serial(nn.Dense(width, 1.3, 0.1), nn.Relu(), nn.Dropout(0.7),
                         nn.Dense(width, 1.0, 0.1), nn.Erf(), nn.Dropout(0.5),
                         nn.Dense(out, 1.0, 0.1))
    if name == "faninprod":
        return nn.serial(nn.FanOut(2),
                         nn.parallel(nn.Dense(width, 1.3, 0.2),
                                     nn.serial(nn.Dense(width), nn.Erf(), nn.Dense(width))),
                         nn.FanInProd(), nn.Relu(), nn.Dense(out, 1.0, 0.1))
    if name == "pool_variants":
        return nn.serial(nn.Conv(width, (3,), padding="SAME", W_std=1.3, b_std=0.1), nn.Relu(),
                         nn.AvgPool((3,), (2,), "SAME", normalize_edges=True),
                         nn.Conv(width, (2,), padding="CIRCULAR"), nn.Erf(),
                         nn.SumPool((2,), padding="CIRCULAR"), nn.AvgPool((2,)),
                         nn.GlobalAvgPool(), nn.Dense(out))
    if name == "pool_nonlinear":  # unpadded windows straight into nonlinearities (their sums
        # stored), the last before Flatten (same-position pairs only, fused)
        return nn.serial(nn.Conv(width, (2, 2), padding="SAME", W_std=1.3, b_std=0.1),
                         nn.AvgPool((2, 2), (2, 1)), nn.Relu(),
                         nn.Conv(width, (2, 1), padding="SAME", b_std=0.1), nn.SumPool((1, 2)),
                         nn.Erf(), nn.Flatten(), nn.Dense(out))
    if name == "concat_spatial":
        return nn.serial(nn.Conv(width, (2,), padding="SAME", W_std=1.3), nn.Relu(), nn.FanOut(2),
                         nn.parallel(nn.Conv(width, (3,), padding="SAME", b_std=0.1),
                                     nn.Conv(width, (2,), padding="VALID", W_std=1.2)),
                         nn.FanInConcat(axis=1), nn.Relu(), nn.GlobalAvgPool(),
                         nn.Dense(out, 1.0, 0.1))
    if name == "conv3d":
        return nn.serial(nn.Conv(width, (2, 3, 2), padding="SAME", W_std=1.3, b_std=0.1),
                         nn.Relu(), nn.AvgPool((2, 2, 1), (2, 1, 1), "SAME"),
                         nn.GlobalAvgPool(), nn.Dense(out, 1.0, 0.1))
    if name == "conv_transpose":
        return nn.serial(nn.Conv(width, (2,), padding="SAME", W_std=1.3), nn.Relu(),
                         nn.ConvTranspose(width, (3,), (2,), "SAME", W_std=1.2, b_std=0.1),
                         nn.Erf(), nn.ConvTranspose(width, (4,), (2,), "CIRCULAR"),
                         nn.Relu(), nn.GlobalAvgPool(), nn.Dense(out, 1.0, 0.1))
    if name == "conv_local":
        return nn.serial(nn.ConvLocal(width, (2,), padding="SAME", W_std=1.3, b_std=0.1),
                         nn.Relu(), nn.ConvLocal(width, (3,), (2,), "CIRCULAR", b_std=0.2),
                         nn.Erf(), nn.GlobalAvgPool(), nn.Dense(out, 1.0, 0.1))
    if name == "conv_local_2d":  # after one Conv: axes neural-tangents mixes up
        return nn.serial(nn.Conv(width, (2, 2), padding="SAME", W_std=1.3), nn.Relu(),
                         nn.ConvLocal(width, (1, 2), (2, 1), "VALID", b_std=0.2), nn.Erf(),
                         nn.GlobalAvgPool(), nn.Dense(out, 1.0, 0.1))
    if name == "resample":
        return nn.serial(nn.Conv(width, (2, 2), padding="SAME", W_std=1.3), nn.Relu(),
                         nn.ImageResize((-1, 5, 2, -1), "linear"), nn.Conv(width, (1, 1)),
                         nn.Erf(),
                         nn.Index(nn.Slice[:, 1:, ::-1]), nn.Conv(width, (2, 1)), nn.Relu(),
                         nn.ImageResize((-1, 2, -1, -1), "cubic"), nn.Index(nn.Slice[..., 0, :]),
                         nn.GlobalAvgPool(), nn.Dense(out, 1.0, 0.1))
    if name == "dot_general":  # the constant's free axis comes first in lax's output
        mix = np.array([[1.0, -0.5, 0.3], [0.2, 0.8, -1.0]])
        return nn.serial(nn.Conv(width, (2, 2), padding="SAME", W_std=1.3), nn.Relu(),
                         nn.DotGeneral(lhs=mix, dimension_numbers=(((1,), (2,)), ((), ()))),
                         nn.Conv(width, (1, 2)), nn.Erf(), nn.DotGeneral(rhs=1.5),
                         nn.GlobalAvgPool(),
                         nn.Dense(out, 1.0, 0.1))
    if name == "graph":
        return nn.serial(nn.Aggregate(to_dense=dense_graphs), nn.Dense(width, 1.4, 0.1),
                         nn.Relu(),
                         nn.Aggregate(implementation="SPARSE"), nn.Dense(width), nn.Erf(),
                         nn.GlobalAvgPool(), nn.Dense(out, 1.0, 0.1))
    raise KeyError(name)


def inputs(name):
    shape = {"pool_variants": (4, 7, 3), "pool_nonlinear": (4, 4, 3, 2), "graph": (4, 6, 3),
             "conv3d": (4, 3, 3, 2, 2),
             "concat_spatial": (4, 5, 2), "conv_transpose": (4, 3, 2),
             "conv_local": (4, 5, 2), "conv_local_2d": (4, 4, 3, 2),
             "resample": (4, 3, 4, 2), "dot_general": (4, 2, 3, 2)}.get(name, (4, 3))
    return np.random.default_rng(6).standard_normal(shape).astype(DTYPE)


def dense_graphs(edges):
    """``to_dense`` of the first aggregation: adjacency counts from the edge lists."""
    heads = jax.numpy.where(edges[..., 1] < 0, 6, edges[..., 1])
    return jax.vmap(lambda t, h: jax.numpy.zeros((7, 7)).at[t, h].add(1.0))(
        edges[..., 0], heads)[:, :6, :6]


def graphs():
    """Edge lists (with a repeated edge and a padding edge): the second aggregation takes
    them as they are, the first decodes them with ``to_dense`` (every Aggregate layer gets the
    same ``pattern`` argument)."""
    rng = np.random.default_rng(7)
    edges = rng.integers(0, 6, (4, 10, 2)).astype(np.int32)
    edges[:, 1] = edges[:, 0]
    edges[:, -1, 1] = -1
    return edges


def kwargs_for(name):
    if name == "dropout":  # masks independent per example: the whole batch applied at once
        return lambda key: {"rng": jax.random.fold_in(key, 1)}
    if name == "graph":
        return lambda key: {"pattern": graphs()}
    return None


def _check(name, widths, n_samples, ratio):
    x = inputs(name)
    kw = kwargs_for(name)
    analytic = make_net(name, 1, 1).kernel(x, pattern=None if name != "graph" else graphs())
    if kw is not None:
        errs = [batch_kernel_errors(lambda w, out: make_net(name, w, out), analytic, x, w,
                                    n_samples, kw) for w in widths]
    else:
        errs = [rms_kernel_errors(lambda w, out: make_net(name, w, out), analytic, x, w,
                                  n_samples, seed=3) for w in widths]
    steps = np.log(widths[-1] / widths[0]) / np.log(4)
    assert np.all(errs[-1] <= ratio ** steps * errs[0]), (name, widths, errs)
    return errs


@ONLY_X64_PASS
@pytest.mark.usefixtures("optimized_programs")  # bound by running many networks
@pytest.mark.parametrize("name", NAMES)
def test_layer_convergence_rate_reduced(name):
    """The CI version: 32 -> 512 units, 8 networks each."""
    errs = _check(name, (32, 512), n_samples=8, ratio=0.65)
    assert np.all(errs[-1] < 0.3), errs


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_layer_convergence_rate(name):
    # the convolutional net's Jacobians at 4096 channels would take minutes; 64 networks: a
    # product of Gaussians has heavy tails (32 left FanInProd's NTK at 0.37x for 16x width)
    convolutional = ("pool_variants", "pool_nonlinear", "conv3d", "concat_spatial")
    widths = (64, 256, 1024) if name in convolutional else (64, 256, 1024, 4096)
    _check(name, widths, n_samples=64, ratio=0.6)
