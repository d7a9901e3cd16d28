#!/usr/bin/env python
"""Make float64 reference kernels of graph networks (neural-tangents 0.6.5's Aggregate, dense
and sparse patterns, one or two node axes) for ntkgp's tests.

Run in the reference venv (../shared/ntref/ntref_setup.sh):
  /tmp/ntref/bin/python nt_graphs.py [--out-dir DIR]
Writes DIR/nt_graphs.npz and DIR/nt_graphs.json.

Inputs are made with NumPy only and stored in the npz with their patterns:
  rng = np.random.default_rng(seed)
  x1 = rng.standard_normal((5, *in_shape)); x2 = rng.standard_normal((3, *in_shape))
  dense patterns: rng.uniform(0, 1, (n, *nodes, *nodes)) * (rng.uniform(...) < 0.5)
  sparse patterns: rng.integers(0, V, (n, E, K, 2)), a few heads set to -1 (padding)
Architectures are spec lists as in nt_reference.py; "Aggregate" takes NT's arguments.
Keys: "<case>__{nngp,ntk}_{12,11,22}", "<case>__{x1,x2,p1,p2}". The kernel of x with itself
is neural-tangents' kernel_fn(x, None, pattern=(p, p)).
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


def GCN(width, act, agg=None):
  a = {} if agg is None else agg
  return [L("Aggregate", **a), L("Dense", out_dim=width, W_std=1.4, b_std=0.1), L(act)]


READ = [L("GlobalAvgPool"), L("Dense", out_dim=1, W_std=1.1, b_std=0.1)]
# (input shape, node axes aggregated (as shapes), implementation, edges, layers)
CASES = {
    "gcn_dense": ((6, 3), "DENSE", 0, GCN(8, "Relu") + GCN(8, "Erf") + READ),
    "gcn_dense_sum_readout": ((6, 3), "DENSE", 0, GCN(8, "Relu") + [
        L("GlobalSumPool"), L("Dense", out_dim=1)]),
    "gcn_node_level": ((6, 3), "DENSE", 0, GCN(8, "Relu") + [
        L("Aggregate"), L("Dense", out_dim=1, W_std=1.2, b_std=0.2)]),
    "gcn_sparse": ((7, 2), "SPARSE", 12, GCN(8, "Relu", {"implementation": "SPARSE"})
                   + GCN(8, "Relu", {"implementation": "SPARSE"}) + READ),
    "grid_dense_both_axes": ((4, 3, 2), "DENSE", 0, GCN(8, "Relu") + READ),
    "grid_dense_first_axis": ((4, 3, 2), "DENSE", 0, GCN(8, "Relu", {"aggregate_axis": 1})
                              + [L("Flatten"), L("Dense", out_dim=1)]),
    "grid_sparse_second_axis": ((4, 3, 2), "SPARSE", 5, GCN(
        8, "Relu", {"aggregate_axis": [2], "implementation": "SPARSE"}) + READ),
    "conv_then_aggregate": ((6, 3), "DENSE", 0, [
        L("Conv", out_chan=4, filter_shape=[3], padding="SAME", W_std=1.3, b_std=0.1),
        L("Relu")] + GCN(8, "Relu") + READ),
}


def build(specs):
  layers = []
  for name, arg in specs:
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in arg.items()}
    layers.append(getattr(stax, name)(**kw))
  return stax.serial(*layers)


def node_shape(shape, specs):
  """The aggregated node axes' sizes (all Aggregate layers of a case share them)."""
  agg = [a for n, a in specs if n == "Aggregate"][0].get("aggregate_axis")
  spatial = shape[:-1]
  if agg is None:
    return tuple(spatial)
  agg = [agg] if isinstance(agg, int) else agg
  return tuple(spatial[a - 1] for a in agg)


def patterns(rng, n, nodes, impl, edges):
  if impl == "DENSE":
    w = rng.uniform(0.0, 1.0, (n, *nodes, *nodes))
    return w * (rng.uniform(size=w.shape) < 0.5)
  v = int(np.prod(nodes))
  flat = rng.integers(0, v, (n, edges, 2))
  flat[:, :2] = flat[:, 2:4]  # repeated edges count twice
  flat[:, -1, 1] = -1  # padding: dropped
  idx = np.stack([np.stack(np.unravel_index(np.maximum(flat[..., j], 0), nodes), -1)
                  for j in range(2)], -1)  # (n, E, K, 2)
  idx[:, -1, :, 1] = -1
  return idx.astype(np.int32)


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
  a = p.parse_args()
  arrays, meta = {}, {"cases": {}, "generator": {"neural_tangents": nt.__version__,
                                                 "jax": jax.__version__,
                                                 "numpy": np.__version__}}
  for seed, (name, (shape, impl, edges, specs)) in enumerate(CASES.items()):
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal((5, *shape))
    x2 = rng.standard_normal((3, *shape))
    nodes = node_shape(shape, specs)
    p1, p2 = patterns(rng, 5, nodes, impl, edges), patterns(rng, 3, nodes, impl, edges)
    for key, v in {"x1": x1, "x2": x2, "p1": p1, "p2": p2}.items():
      arrays[f"{name}__{key}"] = v
    kernel_fn = build(specs)[2]
    for tag, (u, v, pu, pv) in {"12": (x1, x2, p1, p2), "11": (x1, None, p1, p1),
                                "22": (x2, None, p2, p2)}.items():
      k = kernel_fn(u, v, ("nngp", "ntk"), pattern=(pu, pv))
      arrays[f"{name}__nngp_{tag}"] = np.asarray(k.nngp)
      arrays[f"{name}__ntk_{tag}"] = np.asarray(k.ntk)
      assert np.all(np.isfinite(arrays[f"{name}__nngp_{tag}"])), (name, tag)
    meta["cases"][name] = {"seed": seed, "in_shape": list(shape), "implementation": impl,
                           "layers": specs}
    print(name, "done", arrays[f"{name}__nngp_12"].shape)
  np.savez_compressed(os.path.join(a.out_dir, "nt_graphs.npz"), **arrays)
  with open(os.path.join(a.out_dir, "nt_graphs.json"), "w") as f:
    json.dump(meta, f, indent=1)


if __name__ == "__main__":
  main()
