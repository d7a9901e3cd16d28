"""Finite networks with Dropout, FanInProd and the pooling variants converge to their
analytic kernels as their widths grow."""

import jax
import numpy as np
import pytest

from ntkgp import nn
from tests.conftest import DTYPE, ONLY_X64_PASS
from tests.helpers import rms_kernel_errors


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
    raise KeyError(name)


def inputs(name):
    shape = (4, 7, 3) if name == "pool_variants" else (4, 3)
    return np.random.default_rng(6).standard_normal(shape).astype(DTYPE)


def _dropout_errors(x, analytic, width, n_samples):
    """Like `rms_kernel_errors`, with the kernels of the whole batch applied at once: the
    dropout masks are independent per entry of the batch (per example), which the analytic
    kernel assumes; ntkgp's empirical kernels apply the network one example at a time, so
    one key would give every example the same mask."""
    se = np.zeros(2)
    for s in range(n_samples):
        key = jax.random.fold_in(jax.random.PRNGKey(3), s)
        rng = jax.random.fold_in(key, 1)
        wide = make_net("dropout", width, width)
        _, p = wide.init(key, x.shape)
        f = np.asarray(wide.apply(p, x, rng=rng), np.float64)
        one = make_net("dropout", width, 1)
        _, p1 = one.init(key, x.shape)
        jac = jax.jacrev(lambda q: one.apply(q, x, rng=rng)[:, 0])(p1)
        j = np.concatenate([np.asarray(a, np.float64).reshape(x.shape[0], -1)
                            for a in jax.tree.leaves(jac)], axis=1)
        for i, (emp, ref) in enumerate(((f @ f.T / width, analytic.nngp),
                                        (j @ j.T, analytic.ntk))):
            ref = np.asarray(ref, np.float64)
            se[i] += np.sum((emp - ref) ** 2) / np.sum(ref ** 2)
    return np.sqrt(se / n_samples)


def _check(name, widths, n_samples, ratio):
    x = inputs(name)
    analytic = make_net(name, 1, 1).kernel(x)
    if name == "dropout":
        errs = [_dropout_errors(x, analytic, w, n_samples) for w in widths]
    else:
        errs = [rms_kernel_errors(lambda w, out: make_net(name, w, out), analytic, x, w,
                                  n_samples, seed=3) for w in widths]
    steps = np.log(widths[-1] / widths[0]) / np.log(4)
    assert np.all(errs[-1] <= ratio ** steps * errs[0]), (name, widths, errs)
    return errs


@ONLY_X64_PASS
@pytest.mark.parametrize("name", ["dropout", "faninprod", "pool_variants"])
def test_layer_convergence_rate_reduced(name):
    """The CI version: 32 -> 512 units, 8 networks each."""
    errs = _check(name, (32, 512), n_samples=8, ratio=0.65)
    assert np.all(errs[-1] < 0.3), errs


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dropout", "faninprod", "pool_variants"])
def test_layer_convergence_rate(name):
    # the convolutional net's Jacobians at 4096 channels would take minutes; 64 networks: a
    # product of Gaussians has heavy tails (32 left FanInProd's NTK at 0.37x for 16x width)
    widths = (64, 256, 1024) if name == "pool_variants" else (64, 256, 1024, 4096)
    _check(name, widths, n_samples=64, ratio=0.6)
