"""Finite CNNs converge to the analytic CNTK as the number of channels grows."""

import numpy as np
import pytest

from ntkgp import nn
from tests.conftest import DTYPE, ONLY_X64_PASS
from tests.helpers import check_convergence_rate, rms_kernel_errors

ARCHS = ("gap", "flatten", "circular_erf_avgpool", "residual_layernorm")


def make_net(name, width, out=None):
    """Two conv layers and a readout of ``out`` outputs (default ``width``)."""
    c = dict(W_std=1.5, b_std=0.1)
    out = width if out is None else out
    if name == "gap":
        return nn.serial(nn.Conv(width, (3, 3), padding="SAME", **c), nn.Relu(),
                         nn.Conv(width, (3, 3), strides=(2, 2), padding="SAME", **c), nn.Relu(),
                         nn.GlobalAvgPool(), nn.Dense(out, **c))
    if name == "flatten":
        return nn.serial(nn.Conv(width, (3, 3), padding="VALID", **c), nn.Relu(),
                         nn.Conv(width, (2, 2), padding="SAME", **c), nn.Relu(),
                         nn.Flatten(), nn.Dense(out, **c))
    if name == "circular_erf_avgpool":
        return nn.serial(nn.Conv(width, (3, 3), padding="CIRCULAR", **c), nn.Erf(),
                         nn.AvgPool((2, 2), (2, 2), padding="SAME"),
                         nn.Conv(width, (2, 2), padding="VALID", **c), nn.Erf(),
                         nn.Flatten(), nn.Dense(out, **c))
    if name == "residual_layernorm":
        block = nn.serial(nn.FanOut(2), nn.parallel(
            nn.serial(nn.Relu(), nn.Conv(width, (3, 3), padding="SAME", **c)), nn.Identity()),
            nn.FanInSum())
        return nn.serial(nn.Conv(width, (3, 3), padding="SAME", **c), block, nn.LayerNorm(),
                         nn.Relu(), nn.GlobalAvgPool(), nn.Dense(out, **c))
    raise KeyError(name)


def rms_errors(name, width, x, n_samples):
    """Per-network relative errors of the NNGP and the NTK (see tests/helpers.py and
    tests/kernels/test_monte_carlo.py for why per-network errors)."""
    return rms_kernel_errors(lambda w, out: make_net(name, w, out),
                             make_net(name, 1).kernel(x, None), x, width, n_samples)


def _check_rate(name, widths, n_samples):
    x = np.random.default_rng(5).standard_normal((6, 6, 6, 2)).astype(DTYPE)
    return check_convergence_rate(lambda w, xx, n: rms_errors(name, w, xx, n), x, widths,
                                  n_samples, name)


@ONLY_X64_PASS
@pytest.mark.usefixtures("optimized_programs")  # bound by running many networks
@pytest.mark.parametrize("name", ["gap", pytest.param("flatten", marks=pytest.mark.slow)])
def test_cnn_convergence_rate_reduced(name):
    """The CI version: 64 -> 256 channels (in the float64 pass: a statistical check; the
    float32 kernels are checked against neural-tangents in both passes)."""
    _check_rate(name, (64, 256), n_samples=32)


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHS)
def test_cnn_convergence_rate(name):
    _check_rate(name, (64, 256, 1024), n_samples=48)
