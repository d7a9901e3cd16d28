#!/usr/bin/env python
"""Make float64 reference kernels of networks with neural-tangents 0.6.5's pooling variants
(default strides, normalize_edges, CIRCULAR, SumPool), Dropout, FanInProd, FanInConcat along
spatial axes, 3-D convolutions and pooling, transposed and locally connected convolutions,
Index, ImageResize and DotGeneral for ntkgp's tests.

Run in the reference venv (../shared/ntref/ntref_setup.sh):
  /tmp/ntref/bin/python nt_layers.py [--out-dir DIR]
Writes DIR/nt_layers.npz and DIR/nt_layers.json.

ConvLocal and ImageResize on images follow an even number of Conv layers: after an odd number,
neural-tangents 0.6.5 applies their filter or target shape to the wrong spatial axes (it stores
the kernel's spatial axes reversed after each Conv and these two layers do not undo it; ntkgp's
finite networks converge to ntkgp's kernel there, tests/nn/test_layer_monte_carlo.py).

Inputs are made with NumPy only (and stored in the npz):
  rng = np.random.default_rng(seed)
  x1 = rng.standard_normal((5, *in_shape)); x2 = rng.standard_normal((3, *in_shape))
Architectures are spec lists as in nt_reference.py ("parallel" takes a list of branches).
Keys: "<case>__{nngp,ntk}_{12,11,22}" as in nt_reference.py, and "<case>__{nngp,ntk}_1c":
kernel_fn(x1, x1.copy()), x1 against an equal array (neural-tangents takes it as x1 against
itself).
"""
import argparse
import json
import os

import jax

jax.config.update("jax_enable_x64", True)
import neural_tangents as nt  # noqa: E402
import numpy as np  # noqa: E402
from neural_tangents import stax  # noqa: E402


def L(name, **kw):
  return [name, kw]


SEQ, IMG, VOL = (7, 3), (5, 5, 2), (4, 3, 3, 2)
HEAD1 = [L("Conv", out_chan=4, filter_shape=[3], padding="SAME", W_std=1.3, b_std=0.1),
         L("Relu")]
HEAD2 = [L("Conv", out_chan=3, filter_shape=[3, 3], padding="SAME", W_std=1.3, b_std=0.1),
         L("Erf")]
TAIL = [L("Dense", out_dim=4, W_std=1.2, b_std=0.1), L("Relu"), L("GlobalAvgPool"),
        L("Dense", out_dim=1, W_std=1.1, b_std=0.1)]
# each case's seed is its position here: add new cases at the end
CASES = {
    "avgpool_default_strides": (SEQ, HEAD1 + [L("AvgPool", window_shape=[3])] + TAIL),
    "avgpool_same_default_strides": (IMG, HEAD2 + [L("AvgPool", window_shape=[2, 3],
                                                     padding="SAME")] + TAIL),
    "avgpool_same_normalize_edges": (IMG, HEAD2 + [
        L("AvgPool", window_shape=[3, 2], strides=[2, 1], padding="SAME",
          normalize_edges=True)] + TAIL),
    "avgpool_same_edges_1d": (SEQ, HEAD1 + [
        L("AvgPool", window_shape=[4], strides=[2], padding="SAME", normalize_edges=True)]
        + TAIL),
    "avgpool_circular": (IMG, HEAD2 + [L("AvgPool", window_shape=[3, 3], strides=[2, 2],
                                         padding="CIRCULAR")] + TAIL),
    "avgpool_circular_1d": (SEQ, HEAD1 + [L("AvgPool", window_shape=[2], padding="CIRCULAR")]
                            + TAIL),
    "sumpool_valid": (IMG, HEAD2 + [L("SumPool", window_shape=[2, 2])] + TAIL),
    "sumpool_same_strided": (SEQ, HEAD1 + [L("SumPool", window_shape=[3], strides=[2],
                                             padding="SAME")] + TAIL),
    "sumpool_circular": (SEQ, HEAD1 + [L("SumPool", window_shape=[2], padding="CIRCULAR")]
                         + TAIL),
    "dropout_fc": ((4,), [L("Dense", out_dim=8, W_std=1.3, b_std=0.1), L("Relu"),
                          L("Dropout", rate=0.8), L("Dense", out_dim=8, W_std=1.1, b_std=0.1),
                          L("Erf"), L("Dropout", rate=0.6),
                          L("Dense", out_dim=1, W_std=0.9, b_std=0.1)]),
    "dropout_test_mode": ((4,), [L("Dense", out_dim=8, W_std=1.3, b_std=0.1), L("Relu"),
                                 L("Dropout", rate=0.5, mode="test"),
                                 L("Dense", out_dim=1)]),
    "dropout_conv": (SEQ, HEAD1 + [L("Dropout", rate=0.7),
                                   L("Conv", out_chan=4, filter_shape=[2], padding="VALID"),
                                   L("Dropout", rate=0.9)] + TAIL),
    "dropout_conv_flatten": (SEQ, HEAD1 + [L("Dropout", rate=0.7), L("Flatten"),
                                           L("Dense", out_dim=1)]),
    "faninprod_fc": ((4,), [L("Dense", out_dim=8, W_std=1.2, b_std=0.1), L("Relu"),
                            L("FanOut", num=2),
                            ["parallel", [[L("Dense", out_dim=8, W_std=1.3, b_std=0.2)],
                                          [L("Dense", out_dim=8), L("Erf"),
                                           L("Dense", out_dim=8, W_std=0.8, b_std=0.3)]]],
                            L("FanInProd"), L("Dense", out_dim=8, W_std=1.1, b_std=0.1), L("Relu"),
                            L("Dense", out_dim=1)]),
    "faninprod_three_conv": (SEQ, HEAD1 + [
        L("FanOut", num=3),
        ["parallel", [[L("Conv", out_chan=4, filter_shape=[2], padding="SAME")],
                      [L("Conv", out_chan=4, filter_shape=[3], padding="SAME", b_std=0.2)],
                      [L("Identity")]]],
        L("FanInProd")] + TAIL),
    "conv3d_avgpool": (VOL, [L("Conv", out_chan=4, filter_shape=[3, 2, 2], padding="SAME",
                                W_std=1.3, b_std=0.1), L("Relu"),
                              L("AvgPool", window_shape=[2, 2, 2], strides=[1, 2, 1],
                                padding="SAME")] + TAIL),
    "conv3d_circular_flatten": (VOL, [
        L("Conv", out_chan=4, filter_shape=[2, 3, 2], strides=[1, 1, 2], padding="CIRCULAR",
          W_std=1.2, b_std=0.2), L("Erf"), L("Flatten"), L("Dense", out_dim=1)]),
    "conv3d_sumpool_valid": (VOL, [L("Conv", out_chan=4, filter_shape=[2, 2, 2],
                                      padding="VALID", W_std=1.4), L("Relu"),
                                    L("SumPool", window_shape=[2, 1, 2])] + TAIL),
    "concat_spatial_pooled": (IMG, HEAD2 + [
        L("FanOut", num=2),
        ["parallel", [[L("Conv", out_chan=3, filter_shape=[2, 2], padding="SAME", b_std=0.1)],
                      [L("Conv", out_chan=3, filter_shape=[3, 3], padding="SAME", W_std=1.2)]]],
        L("FanInConcat", axis=2)] + TAIL),
    "concat_spatial_flatten_1d": (SEQ, HEAD1 + [
        L("FanOut", num=3),
        ["parallel", [[L("Conv", out_chan=4, filter_shape=[2], padding="VALID")],
                      [L("Conv", out_chan=4, filter_shape=[3], padding="SAME", b_std=0.2)],
                      [L("Dense", out_dim=4, W_std=1.3)]]],
        L("FanInConcat", axis=-2), L("Relu"), L("Flatten"), L("Dense", out_dim=1)]),
    "concat_spatial_first_axis": (IMG, HEAD2 + [
        L("FanOut", num=2),
        ["parallel", [[L("Conv", out_chan=3, filter_shape=[2, 1], padding="VALID")],
                      [L("Conv", out_chan=3, filter_shape=[2, 2], padding="SAME")]]],
        L("FanInConcat", axis=1), L("Erf"), L("AvgPool", window_shape=[2, 2])] + TAIL),
    "conv_transpose_same_pooled": (SEQ, HEAD1 + [
        L("ConvTranspose", out_chan=4, filter_shape=[3], strides=[2], padding="SAME", W_std=1.2,
          b_std=0.1)] + TAIL),
    "conv_transpose_valid_2d": (IMG, HEAD2 + [
        L("ConvTranspose", out_chan=3, filter_shape=[2, 3], strides=[2, 1], padding="VALID",
          W_std=1.3)] + TAIL),
    "conv_transpose_circular": (SEQ, HEAD1 + [
        L("ConvTranspose", out_chan=4, filter_shape=[4], strides=[2], padding="CIRCULAR",
          b_std=0.2)] + TAIL),
    "conv_transpose_flatten_standard": (IMG, HEAD2 + [
        L("ConvTranspose", out_chan=3, filter_shape=[3, 2], strides=[1, 2], padding="SAME",
          b_std=0.1, parameterization="standard"), L("Relu"), L("Flatten"),
        L("Dense", out_dim=1)]),
    "conv_local_pooled": (SEQ, HEAD1 + [
        L("ConvLocal", out_chan=4, filter_shape=[3], padding="SAME", W_std=1.3, b_std=0.1)]
        + TAIL),
    "conv_local_2d_strided": (IMG, HEAD2 + HEAD2 + [
        L("ConvLocal", out_chan=3, filter_shape=[2, 2], strides=[2, 1], padding="VALID",
          b_std=0.2)] + TAIL),
    "conv_local_circular_flatten": (SEQ, HEAD1 + [
        L("ConvLocal", out_chan=4, filter_shape=[2], padding="CIRCULAR", b_std=0.1), L("Erf"),
        L("Flatten"), L("Dense", out_dim=1)]),
    "index_crop_flip": (IMG, HEAD2 + [
        L("Index", idx=[":", {"slice": [1, 4, None]}, {"slice": [None, None, -1]}])] + TAIL),
    "index_row_to_signal": (IMG, HEAD2 + [L("Index", idx=["...", 2, ":"]),
                                          L("Conv", out_chan=3, filter_shape=[2])] + TAIL),
    "index_flatten": (SEQ, HEAD1 + [L("Index", idx=[":", {"slice": [None, None, 2]}]),
                                    L("Flatten"), L("Dense", out_dim=1)]),
    "image_resize_linear_up": (IMG, HEAD2 + HEAD2 + [
        L("ImageResize", shape=[-1, 8, 3, -1], method="linear")] + TAIL),
    "image_resize_nearest_down": (IMG, HEAD2 + HEAD2 + [
        L("ImageResize", shape=[-1, 3, 4, -1], method="nearest")] + TAIL),
    "image_resize_linear_antialias_down": (SEQ, HEAD1 + [
        L("ImageResize", shape=[-1, 3, -1], method="linear")] + TAIL),
    "dot_general_scale": (SEQ, HEAD1 + [L("DotGeneral", rhs=2.0), L("Flatten"),
                                        L("Dense", out_dim=1)]),
    "dot_general_contract": (IMG, HEAD2 + [
        L("DotGeneral", rhs=[1.0, -1.0, 0.5, 2.0, 0.3], dimension_numbers=[[[1], [0]], [[], []]])]
        + TAIL),
    "dot_general_lhs_vector": (IMG, HEAD2 + [
        L("DotGeneral", lhs=[0.0, 1.0, 0.5, -0.4, 0.2], dimension_numbers=[[[0], [1]], [[], []]])]
        + TAIL),
}


def index(spec):
  """An index from its JSON form: integers, "...", ":" and {"slice": [start, stop, step]}."""
  out = []
  for v in spec:
    if v == "...":
      out.append(Ellipsis)
    elif v == ":":
      out.append(slice(None))
    elif isinstance(v, dict):
      out.append(slice(*v["slice"]))
    else:
      out.append(v)
  return tuple(out)


def tuples(v):
  return tuple(tuples(a) for a in v) if isinstance(v, list) else v


def build(specs):
  layers = []
  for name, arg in specs:
    if name == "parallel":
      layers.append(stax.parallel(*[build(b) for b in arg]))
      continue
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in arg.items()}
    if name == "Index":
      kw["idx"] = index(arg["idx"])
    if name == "DotGeneral":
      kw = {k: np.array(v) if k in ("lhs", "rhs") else tuples(v) for k, v in arg.items()}
    layers.append(getattr(stax, name)(**kw))
  return stax.serial(*layers)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
  a = p.parse_args()
  arrays, meta = {}, {"cases": {}, "generator": {"neural_tangents": nt.__version__,
                                                 "jax": jax.__version__,
                                                 "numpy": np.__version__}}
  for seed, (name, (shape, specs)) in enumerate(CASES.items()):
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal((5, *shape))
    x2 = rng.standard_normal((3, *shape))
    arrays[f"{name}__x1"], arrays[f"{name}__x2"] = x1, x2
    kernel_fn = build(specs)[2]
    for tag, (u, v) in {"12": (x1, x2), "11": (x1, None), "22": (x2, None),
                        "1c": (x1, x1.copy())}.items():
      k = kernel_fn(u, v, ("nngp", "ntk"))
      arrays[f"{name}__nngp_{tag}"] = np.asarray(k.nngp)
      arrays[f"{name}__ntk_{tag}"] = np.asarray(k.ntk)
      assert np.all(np.isfinite(arrays[f"{name}__nngp_{tag}"])), (name, tag)
    meta["cases"][name] = {"seed": seed, "in_shape": list(shape), "layers": specs}
    print(name, "done")
  np.savez_compressed(os.path.join(a.out_dir, "nt_layers.npz"), **arrays)
  with open(os.path.join(a.out_dir, "nt_layers.json"), "w") as f:
    json.dump(meta, f, indent=1)


if __name__ == "__main__":
  main()
