#!/usr/bin/env python
"""Closed-form activation kernels: each against ReLU's (ntkgp, same session), against
neural-tangents 0.6.5's kernel of the same network, and against this machine's limit.

Cases (each in its own subprocess, neural-tangents first; this script is also the
neural-tangents side, run in its reference venv with `--backend nt`; each ntkgp case also times
its network and the ReLU network alternately, for the "vs ReLU" ratio):
  act_<name>_N4000_f32   `kernel(x, x)` (NNGP + NTK) of Dense(512, 1.5, 0.05) + act, three
                         times, + Dense(1) on x of shape (4000, 784), float32 (inputs scaled
                         to unit mean square so that Exp and Gaussian stay finite); `relu` is
                         the baseline of the "vs ReLU" targets
  act_<name>_N4000_f64   the same in float64 (relu, erf, gelu: the arc-sine/arc-cosine kernels)
  act_relu_N4000_<dt>_reused_buffers   ReLU again with glibc's allocator keeping freed blocks
                         up to 1 GiB (`REUSE_ENV`, what `ntkgp.batching.reuse_large_buffers()`
                         sets) in both libraries' processes: each N x N array is then not
                         mapped and faulted in afresh on every call

The "limit" of a case (`_limits.limit`): the input Gram matrix (2 N^2 d flops) at this
machine's matmul rate in the case's dtype, plus one write of the NNGP and NTK matrices at its
memory bandwidth (both measured in the same process after the case's timing, best of ten).
The layers' elementwise work (per entry and layer: a few multiply-adds, a square root, for
some a polynomial arc-cosine or exponentials) comes on top of it; a kernel computed in blocks
of rows that stay in cache needs no other pass over memory.

Usage:
  python benchmarks/activations.py [--cases REGEX] [--repeats 3] [--no-nt]
The reference venv: `NTREF_LIGHT=1 bash ../shared/ntref/ntref_setup.sh /tmp/ntref`, then
`NTREF_PYTHON=/tmp/ntref/bin/python`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
from _common import REUSE_ENV, block, kernel_row, main  # noqa: E402
from _limits import limit  # noqa: E402

N, D, DEPTH = 4000, 784, 3

# name -> (layer name, keyword arguments): the same call in both libraries
ACTIVATIONS = {
    "relu": ("Relu", {}), "sign": ("Sign", {}), "cos": ("Cos", dict(a=1.2, b=0.8, c=0.3)),
    "rbf": ("Rbf", dict(gamma=0.6)), "exp": ("Exp", dict(a=0.9, b=0.5)),
    "gaussian": ("Gaussian", dict(a=1.1, b=-0.7)), "gabor": ("Gabor", {}),
    "sigmoid_like": ("Sigmoid_like", {}),
    "exp_normalized": ("ExpNormalized", dict(gamma=1.3, shift=-0.5)),
    "polynomial": ("Polynomial", dict(coef=[0.1, 1.0, -0.3, 0.2])),
    "monomial3": ("Monomial", dict(degree=3)), "hermite3": ("Hermite", dict(degree=3)),
    "rectified_monomial2": ("RectifiedMonomial", dict(degree=2)),
    "elementwise_closed_form": ("Elementwise", "erf"),
    "erf": ("Erf", dict(a=1.1, b=0.9, c=0.1)), "gelu": ("Gelu", {}),
    "sin": ("Sin", dict(a=1.2, b=0.8, c=0.3)), "abrelu": ("ABRelu", dict(a=-0.3, b=1.2)),
    "leaky_relu": ("LeakyRelu", dict(alpha=0.1)), "abs": ("Abs", {}),
}
FLOAT64 = ("relu", "erf", "gelu")


def all_cases():
    cases = [dict(id=f"act_{a}_N{N}_f32", act=a, dt="f32", nt_self=True) for a in ACTIVATIONS]
    cases += [dict(id=f"act_{a}_N{N}_f64", act=a, dt="f64", nt_self=True) for a in FLOAT64]
    return cases + [dict(id=f"act_relu_N{N}_{dt}_reused_buffers", act="relu", dt=dt,
                         nt_self=True, env=REUSE_ENV) for dt in ("f32", "f64")]


def _erf_dual(np_):
    def nngp_fn(c, v1, v2):
        return np_.arcsin(2 * c / np_.sqrt((1 + 2 * v1) * (1 + 2 * v2))) * 2 / 3.141592653589793
    return nngp_fn


def network(lib, act):
    """``lib`` is ntkgp's `nn` or neural-tangents' `stax`."""
    import jax
    import jax.numpy as jnp
    name, kw = ACTIVATIONS[act]
    if kw == "erf":
        # both libraries' Elementwise with a closed form and the derivative by autodiff
        layer = lambda: lib.Elementwise(jax.scipy.special.erf, _erf_dual(jnp))  # noqa: E731
    else:
        layer = lambda: getattr(lib, name)(**kw)  # noqa: E731
    layers = []
    for _ in range(DEPTH):
        layers += [lib.Dense(512, W_std=1.5, b_std=0.05), layer()]
    return lib.serial(*layers, lib.Dense(1, W_std=1.5, b_std=0.05))


def machine_limit(dtype):
    """`_limits.limit` of one kernel(x, x) in ``dtype``: the input Gram and one write of the
    NNGP and NTK."""
    import numpy as np
    return limit(dtype, matmul_flops=2 * N * N * D,
                 write_bytes=2 * N * N * np.dtype(dtype).itemsize)


def paired_with_relu(act, x, repeats):
    """(this network's, the ReLU network's) median seconds of ``kernel(x, x)``, both compiled
    and timed alternately in this process, ``max(repeats, 5)`` times each: the ratio of the two
    does not move with the machine's speed between cases, as the ratio of two cases' times
    does (the ReLU network's own case ran 0.26-0.31 s across four runs of one hour)."""
    import time

    import jax
    import numpy as np

    from ntkgp import nn
    runs = []
    for a in (act, "relu"):
        net = network(nn, a)
        runs.append(jax.jit(lambda u, v, net=net: net.kernel(u, v)).lower(x, x).compile())
        block(runs[-1](x, x))
    ts = [[], []]
    for _ in range(max(repeats, 5)):
        for i, run in enumerate(runs):
            t0 = time.perf_counter()
            block(run(x, x))
            ts[i].append(time.perf_counter() - t0)
    return float(np.median(ts[0])), float(np.median(ts[1]))


def run_case(case, repeats):
    import warnings

    import jax
    import jax.numpy as jnp
    import numpy as np
    warnings.filterwarnings("ignore")  # neural-tangents' Elementwise warns about autodiff
    dtype = "float64" if case["dt"] == "f64" else "float32"
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((N, D)) / 1.5 ** 2, dtype)
    row = kernel_row(case["id"], lambda lib: network(lib, case["act"]), x, repeats)
    if _common.BACKEND != "nt" and case["act"] != "relu":
        row["paired_s"], row["paired_relu_s"] = paired_with_relu(case["act"], x, repeats)
    if _common.BACKEND != "nt":
        row.update(machine_limit(dtype))
        row["note"] = (f"limit {row['limit_s']:.3g} s ({row['limit_counts']}): "
                       f"{row['median_s'] / row['limit_s']:.1f}x the limit")
    return row


if __name__ == "__main__":
    main("activations", all_cases, run_case, __file__, __doc__)
