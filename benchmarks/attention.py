#!/usr/bin/env python
"""Transformer kernel benchmarks: ntkgp against neural-tangents 0.6.5, and against the least
time this machine needs for the work.

Cases (each in its own subprocess, neural-tangents first; this script is also the
neural-tangents side, run in its reference venv with `--backend nt`):
  transformer2_N{100,400}_f32   `kernel(x, x)` (NNGP + NTK) of a 2-block post-LayerNorm
                                transformer (`nn.transformer(depth=2, width=32, n_heads=4)`:
                                softmax attention, summed positional embeddings, ReLU MLPs)
                                on x of shape (N, 16, 32)
  transformer2_masked_N400_f32  the same with half the sequences padded to lengths 4..15 and
                                `mask_constant` (ntkgp only)
  transformer2_L128_N16_f32     the same network on longer sequences, x of shape (16, 128, 32)
                                (16,384 kernel entries per pair of inputs)

The "limit" of a case: its matrix products (each attention layer mixes the NNGP, the NTK and
the self-covariances with the attention weights, two products of P x P matrices per pair of
inputs and array: 8 P^3 flops per pair) at this machine's float32 matmul rate (measured on a
2048 x 2048 product in the same process after the case's timing, `_limits.limit`), plus one
write of the two (N, N, P, P) outputs at its measured copy bandwidth.

Usage:
  python benchmarks/attention.py [--cases REGEX] [--repeats 3] [--no-nt]
The reference venv: `NTREF_LIGHT=1 bash ../shared/ntref/ntref_setup.sh /tmp/ntref`, then
`NTREF_PYTHON=/tmp/ntref/bin/python`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common  # noqa: E402
from _common import main, time_compiled, timing_row  # noqa: E402
from _limits import limit  # noqa: E402

L, C, DEPTH, HEADS = 16, 32, 2, 4


def all_cases():
    cases = [dict(id=f"transformer2_N{n}_f32", n=n, nt_self=True) for n in (100, 400)]
    cases.append(dict(id="transformer2_masked_N400_f32", n=400, masked=True, nt_id=None))
    cases.append(dict(id="transformer2_L128_N16_f32", n=16, length=128, nt_self=True))
    return cases


def nt_transformer():
    """The same architecture in neural-tangents' stax."""
    from neural_tangents import stax

    def residual(branch):
        return [stax.FanOut(2), stax.parallel(stax.Identity(), branch), stax.FanInSum(),
                stax.LayerNorm(axis=-1)]

    layers = [stax.Dense(C, 1.0, 0.0)]
    for _ in range(DEPTH):
        layers += residual(stax.GlobalSelfAttention(C, C, C, HEADS, b_std=0.0,
                                                    pos_emb_type="SUM"))
        layers += residual(stax.serial(stax.Dense(C, 1.0, 0.0), stax.Relu(),
                                       stax.Dense(C, 1.0, 0.0)))
    return stax.serial(*layers, stax.GlobalAvgPool(), stax.Dense(1, 1.0, 0.0))


def inputs(n, masked=False, length=L):
    import numpy as np
    x = np.random.default_rng(0).standard_normal((n, length, C)).astype(np.float32)
    if masked:
        lengths = np.random.default_rng(1).integers(4, length, size=n // 2)
        for i, m in enumerate(lengths):
            x[2 * i, m:] = -1e4
    return x


def machine_limit(n, p=L):
    """`_limits.limit` of one kernel(x, x) of sequences of length ``p``: the attention's matrix
    products and one write of the outputs."""
    flops = DEPTH * 8 * p ** 3 * n * n  # nngp and ntk: 2 arrays x 2 products x 2 P^3
    return limit("float32", matmul_flops=flops, write_bytes=2 * n * n * p * p * 4)


def run_case(case, repeats):
    import numpy as np
    x = inputs(case["n"], case.get("masked", False), case.get("length", L))
    if _common.BACKEND == "nt":
        import jax.numpy as jnp
        kernel_fn = nt_transformer()[2]
        xj = jnp.asarray(x)
        compile_s, ts, out = time_compiled(lambda a, b: kernel_fn(a, b, ("nngp", "ntk")),
                                           (xj, xj), repeats)
        return timing_row(case["id"], compile_s, ts, check=float(np.mean(out.ntk)))

    import jax.numpy as jnp

    from ntkgp import nn
    net = nn.transformer(depth=DEPTH, width=C, n_heads=HEADS, pos_emb_type="SUM")
    xj = jnp.asarray(x)
    mc = -1e4 if case.get("masked") else None
    compile_s, ts, out = time_compiled(lambda a, b: net.kernel(a, b, mask_constant=mc),
                                       (xj, xj), repeats)
    row = timing_row(case["id"], compile_s, ts, check=float(np.mean(out.ntk)))
    # after the row took the peak memory: rates allocate
    row.update(machine_limit(case["n"], case.get("length", L)))
    row["note"] = f"{row['median_s'] / row['limit_s']:.1f}x the limit ({row['limit_counts']})"
    return row


if __name__ == "__main__":
    main("attention", all_cases, run_case, __file__, __doc__)
