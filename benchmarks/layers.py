#!/usr/bin/env python
"""Kernels of convolutional layers beyond `Conv` against neural-tangents 0.6.5's: 3-D
convolutions, transposed and locally connected convolutions, image resizing.

Cases (each in its own subprocess, neural-tangents first; this script is also the
neural-tangents side, run in its reference venv with `--backend nt`), all
`kernel(x, x)` (NNGP + NTK), float32, then GlobalAvgPool + Dense(1), so every pair of
positions is tracked:
  conv3d_gap_N50_f32           2 x [Conv(32, 3x3x3, SAME) + Relu] on 50 random volumes
                               (4, 4, 4, 2)
  conv_transpose_gap_N100_f32  Conv(32, 3x3, SAME) + Relu + ConvTranspose(32, 3x3, stride 2,
                               SAME) + Relu on 100 digits averaged to 4x4 (8x8 after)
  conv_local_gap_N100_f32      2 x [ConvLocal(32, 3x3, SAME) + Relu] on 100 digits 8x8
  image_resize_gap_N100_f32    Conv(32, 3x3, SAME) + Relu + Conv(32, 3x3, SAME) +
                               ImageResize(4x4, linear) + Relu + Conv + Relu on 100 digits 8x8
                               (an even number of Conv before the resize: see the mapping page)
  pool_variants_gap_N100_f32   Conv + Relu + AvgPool(3x3, stride 2, SAME, normalize_edges) +
                               Conv + Relu + SumPool(2x2, CIRCULAR) on 100 digits 8x8
  index_dot_general_gap_N100_f32  Conv + Relu + Index(crop 1:7, 1:7) + DotGeneral(rhs: a
                               weighted sum of the 6 columns) + Conv(32, 3, SAME) + Relu on 100
                               digits 8x8 (rows become a 1-D signal)
  dropout_faninprod_N2000_f32  Dense(512) + Relu + Dropout(0.8) + FanOut(2) + parallel(Dense,
                               Dense + Erf + Dense) + FanInProd + Dense + Relu (no pooling; N=2000,
                               d=64 digits)

Usage:
  python benchmarks/layers.py [--cases REGEX] [--repeats 3] [--no-nt]
The reference venv: `NTREF_LIGHT=1 bash ../shared/ntref/ntref_setup.sh /tmp/ntref`, then
`NTREF_PYTHON=/tmp/ntref/bin/python`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import kernel_row, main  # noqa: E402

W = 32


def all_cases():
    return [dict(id=i, nt_self=True) for i in
            ("conv3d_gap_N50_f32", "conv_transpose_gap_N100_f32", "conv_local_gap_N100_f32",
             "image_resize_gap_N100_f32", "pool_variants_gap_N100_f32",
             "index_dot_general_gap_N100_f32", "dropout_faninprod_N2000_f32")]


def network(lib, kind):
    """``lib`` is ntkgp's `nn` or neural-tangents' `stax` (same names and arguments)."""
    def conv(filt=(3, 3)):
        return [lib.Conv(W, filt, padding="SAME"), lib.Relu()]

    if kind == "conv3d":
        layers = conv((3, 3, 3)) + conv((3, 3, 3))
    elif kind == "conv_transpose":
        layers = conv() + [lib.ConvTranspose(W, (3, 3), (2, 2), "SAME"), lib.Relu()]
    elif kind == "conv_local":
        layers = [lib.ConvLocal(W, (3, 3), padding="SAME"), lib.Relu(),
                  lib.ConvLocal(W, (3, 3), padding="SAME"), lib.Relu()]
    elif kind == "image_resize":
        layers = conv() + [lib.Conv(W, (3, 3), padding="SAME"),
                           lib.ImageResize((-1, 4, 4, -1), "linear"), lib.Relu()] + conv()
    elif kind == "pool_variants":
        layers = conv() + [lib.AvgPool((3, 3), (2, 2), "SAME", normalize_edges=True)] + conv() \
            + [lib.SumPool((2, 2), padding="CIRCULAR")]
    elif kind == "index_dot_general":
        import numpy as np
        mix = np.random.default_rng(0).standard_normal(6) / 2
        layers = conv() + [lib.Index(lib.Slice[:, 1:7, 1:7]),
                           lib.DotGeneral(rhs=mix, dimension_numbers=(((2,), (0,)), ((), ()))),
                           lib.Conv(W, (3,), padding="SAME"), lib.Relu()]
    else:
        return lib.serial(lib.Dense(512), lib.Relu(), lib.Dropout(0.8), lib.FanOut(2),
                          lib.parallel(lib.Dense(512), lib.serial(lib.Dense(512), lib.Erf(),
                                                                  lib.Dense(512))),
                          lib.FanInProd(), lib.Dense(512), lib.Relu(), lib.Dense(1))
    return lib.serial(*layers, lib.GlobalAvgPool(), lib.Dense(1))


def inputs(kind):
    import numpy as np
    from sklearn.datasets import load_digits
    if kind == "conv3d":
        return np.random.default_rng(0).standard_normal((50, 4, 4, 4, 2)).astype(np.float32)
    if kind == "dropout_faninprod":
        x = load_digits().data
        return np.concatenate([x, x[:2000 - len(x)] + 1.0]).astype(np.float32) / 16
    x = load_digits().data[:100].reshape(-1, 8, 8, 1) / 16
    if kind == "conv_transpose":
        x = x.reshape(-1, 4, 2, 4, 2, 1).mean(axis=(2, 4))
    return x.astype(np.float32)


def run_case(case, repeats):
    import jax.numpy as jnp
    kind = case["id"].rsplit("_gap", 1)[0].rsplit("_N", 1)[0]
    return kernel_row(case["id"], lambda lib: network(lib, kind), jnp.asarray(inputs(kind)),
                      repeats)


if __name__ == "__main__":
    main("layers", all_cases, run_case, __file__, __doc__)
