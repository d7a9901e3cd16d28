"""Analytic FC kernels against neural-tangents 0.6.5 reference values (tests/data)."""

import numpy as np
import pytest

from tests.conftest import DTYPE, X64, rel_err
from tests.helpers import build, load_reference

REF, META = load_reference()
FC_CASES = sorted(c for c in META["cases"] if c.startswith("fc_"))
# float64 must agree to 1e-6 (observed: <= 5e-9, from neural-tangents' own rounding at
# correlation ~1); float32 is limited by float32 arithmetic through several layers.
TOL = 1e-6 if X64 else 1e-4


def test_all_fc_reference_cases_are_covered():
    assert len(FC_CASES) == 11


@pytest.mark.parametrize("case", FC_CASES)
@pytest.mark.parametrize("tag", ["12", "11", "22"])
def test_fc_kernel_matches_neural_tangents(case, tag):
    net = build(META["cases"][case]["layers"])
    x1 = REF[f"{case}__x1"].astype(DTYPE)
    x2 = REF[f"{case}__x2"].astype(DTYPE)
    a, b = {"12": (x1, x2), "11": (x1, None), "22": (x2, None)}[tag]
    k = net.kernel(a, b)
    assert k.nngp.dtype == DTYPE
    for g in ("nngp", "ntk"):
        assert rel_err(getattr(k, g), REF[f"{case}__{g}_{tag}"]) <= TOL, g


@pytest.mark.parametrize("case", FC_CASES)
def test_single_get_matches_both(case):
    net = build(META["cases"][case]["layers"])
    x1 = REF[f"{case}__x1"].astype(DTYPE)
    both = net.kernel(x1, None)
    # Same numbers up to rounding (GELU's nngp comes out of a jvp when the NTK is requested).
    rtol = 1e-12 if X64 else 1e-6
    np.testing.assert_allclose(net.kernel(x1, None, "ntk"), both.ntk, rtol=rtol)
    np.testing.assert_allclose(net.kernel(x1, None, ("nngp",)).nngp, both.nngp, rtol=rtol)
    assert net.kernel(x1, None, ("nngp",)).ntk is None
