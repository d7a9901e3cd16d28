r"""Dense predictions from test kernels (Cholesky at :math:`t=\infty`, eigendecomposition at
any time), and from test inputs: the test kernels and the moments as one compiled program
when the kernel function is an ``ntkgp.nn`` network's.

One program instead of three (test-train kernels, test kernel, moments) saves the host round
trips between them (each kernel call waits for its finiteness flag) and their dispatch: at 500
training and 500 test points these were a third of an ensemble prediction. A kernel function
of the user's own may not be traceable, so it keeps the eager path.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ntkgp._src import checks
from ntkgp._src.predict import common
from ntkgp._src.predict.common import DRIVER, PRIOR, kernel_part
from ntkgp._src.solve import linalg


class Plan(NamedTuple):
    """What a dense prediction computes (static: hashable, one compiled program each)."""

    cholesky_at_inf: bool  # the Cholesky factor at t=inf, else the eigendecomposition
    times: int  # T, the number of times asked for
    scalar: bool  # one time: no time axis in the result
    was_1d: bool  # 1-D targets: no output axis in the result
    want: Optional[str]  # None (mean), 'var' or 'cov'
    rate: object  # the static rate of `at_times`: None, a step, or (step, momentum)


def plan(factor, at_inf: bool, times: int, scalar: bool, was_1d: bool, want, rate) -> Plan:
    """The `Plan` of a prediction with ``factor`` (a `linalg.Cholesky` or `linalg.Eigh`)."""
    return Plan(bool(at_inf and isinstance(factor, linalg.Cholesky)), int(times), bool(scalar),
                bool(was_1d), want, rate)


def moments(p: Plan, factor, y, prior, ts, m, d_td, p_td, p_tt):
    """``(mean, second)`` in final shapes from the test kernels (see `common.at_infinity`,
    `common.at_times`)."""
    if p.cholesky_at_inf:
        return common.at_infinity(factor, y, d_td, p_td, p_tt, prior, p.times, p.scalar,
                                  p.was_1d, p.want)
    w = factor.evals if prior is None else prior
    return common.at_times(factor.evals, factor.evecs, w, y, d_td, p_td, p_tt, ts, m, p.rate,
                           p.scalar, p.was_1d, p.want)


def input_kernels(kfn, mode: str, x_test, x_train, second: bool):
    """``(d_td, p_td, p_tt)``: the test-train kernels of the mode's driving and prior kernels,
    and (``second``) the prior kernel of the test points with themselves (else ``None``)."""
    kinds = tuple(sorted({DRIVER[mode], PRIOR[mode]}))
    k = kfn(x_test, x_train, kinds)
    d_td = kernel_part(k, DRIVER[mode], "the test-train kernel")
    p_td = kernel_part(k, PRIOR[mode], "the test-train kernel")
    p_tt = None
    if second:
        p_tt = kernel_part(kfn(x_test, None, PRIOR[mode]), PRIOR[mode], "the test kernel")
    return d_td, p_td, p_tt


def traceable(kfn) -> bool:
    """Whether ``kfn`` is an ``ntkgp.nn`` network's kernel (traceable inside ``jit``)."""
    return getattr(kfn, "_ntkgp_name", None) is not None


@functools.partial(jax.jit, static_argnames=("kfn", "mode", "p"))
def _from_inputs(kfn, mode, p, factor, y, prior, ts, m, x_test, x_train):
    d_td, p_td, p_tt = input_kernels(kfn, mode, x_test, x_train, p.want is not None)
    total = sum(jnp.sum(a) for a in (d_td, p_td, p_tt) if a is not None)
    return moments(p, factor, y, prior, ts, m, d_td, p_td, p_tt), jnp.isfinite(total)


def from_inputs(kfn, mode: str, p: Plan, factor, y, prior, ts, m, x_test, x_train):
    """`moments` of test inputs, their kernels computed by ``kfn`` (in the same program when
    `traceable`). Non-finite kernels raise the kernel function's own error."""
    if traceable(kfn):
        out, finite = _from_inputs(kfn, mode, p, factor, y, prior, ts, m, x_test, x_train)
        if not checks.is_concrete(finite) or bool(finite):
            return out
        # a non-finite kernel (or an overflowed sum): the eager kernels say which, or are fine
    kernels = input_kernels(kfn, mode, x_test, x_train, p.want is not None)
    return moments(p, factor, y, prior, ts, m, *kernels)
