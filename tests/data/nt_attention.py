#!/usr/bin/env python
"""Make float64 reference kernels of attention, masking and multi-axis LayerNorm networks
from neural-tangents 0.6.5 for ntkgp's tests.

Run in the reference venv (../shared/ntref/ntref_setup.sh):
  /tmp/ntref/bin/python nt_attention.py [--out-dir DIR]
Writes DIR/nt_attention.npz and DIR/nt_attention.json.

Inputs are made with NumPy only (and stored in the npz):
  rng = np.random.default_rng(seed)
  x1 = rng.standard_normal((5, *in_shape)); x2 = rng.standard_normal((3, *in_shape))
then, for the masked variants, positions from `lengths1[i]` / `lengths2[i]` on along the
first spatial axis are set to MASK (all channels), and kernel_fn gets mask_constant=MASK.
Architectures are spec lists as in nt_reference.py; "pos_emb_decay_fn": "exp3" stands for
`lambda d: jnp.exp(-d / 3)`.
"""
import argparse
import json
import os
import warnings

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import neural_tangents as nt  # noqa: E402
import numpy as np  # noqa: E402
from neural_tangents import stax  # noqa: E402

warnings.filterwarnings("ignore")  # linear-scaling attention warns that queries are tied
MASK = -7.0
DECAYS = {"exp3": lambda d: jnp.exp(-d / 3.0)}


def L(name, **kw):
  return [name, kw]


def GSA(**kw):
  base = dict(n_chan_out=16, n_chan_key=16, n_chan_val=16, n_heads=2)
  base.update(kw)
  return ["GlobalSelfAttention", base]


HEAD = [L("Dense", out_dim=16, W_std=1.3, b_std=0.1)]
STDS = dict(W_key_std=1.2, W_query_std=0.9, W_value_std=1.1, W_out_std=0.8, b_std=0.2)


def block(branch):
  return [L("FanOut", num=2), ["parallel", [[L("Identity")], branch]], L("FanInSum"),
          L("LayerNorm", axis=-1)]


SEQ, IMG = (6, 4), (3, 3, 2)
CASES = {
    **{f"att_{m.lower()}": (SEQ, HEAD + [GSA(attention_mechanism=m, **STDS), L("Relu"),
                                        L("GlobalAvgPool"), L("Dense", out_dim=1)])
       for m in ("SOFTMAX", "IDENTITY", "ABS", "RELU")},
    "att_pe_sum_decay_val": (SEQ, HEAD + [
        GSA(pos_emb_type="SUM", pos_emb_decay_fn="exp3", pos_emb_p_norm=1.5,
            val_pos_emb=True, W_pos_emb_std=0.7, b_std=0.1),
        L("Flatten"), L("Dense", out_dim=1)]),
    "att_pe_concat": (SEQ, HEAD + [
        GSA(pos_emb_type="CONCAT", n_chan_pos_emb=5, W_pos_emb_std=0.7, b_std=0.1),
        L("Erf"), L("GlobalAvgPool")]),
    "att_sqrt_identity": (SEQ, HEAD + [
        GSA(linear_scaling=False, attention_mechanism="IDENTITY", pos_emb_type="SUM",
            b_std=0.1), L("GlobalAvgPool")]),
    "att_image_pe": (IMG, HEAD + [
        GSA(pos_emb_type="SUM", pos_emb_decay_fn="exp3", b_std=0.1), L("Relu"),
        L("GlobalAvgPool"), L("Dense", out_dim=1)]),
    "transformer_2block": (SEQ, HEAD
                           + block([GSA(b_std=0.1, pos_emb_type="SUM")])
                           + block([L("Dense", out_dim=16, b_std=0.1), L("Relu"),
                                    L("Dense", out_dim=16)])
                           + block([GSA(b_std=0.1)])
                           + [L("GlobalAvgPool"), L("Dense", out_dim=1)]),
    "layernorm_seq_axes": (SEQ, [L("Dense", out_dim=8, W_std=1.0, b_std=0.1),
                                 L("LayerNorm", axis=[1, 2]), L("Relu"),
                                 L("Dense", out_dim=8), L("LayerNorm", axis=[1, 2]),
                                 L("GlobalSumPool"), L("Dense", out_dim=1)]),
    "conv_mask": (SEQ, [L("Conv", out_chan=6, filter_shape=[3], padding="SAME", b_std=0.1),
                        L("Erf"), L("Conv", out_chan=6, filter_shape=[2], strides=[2],
                                    padding="VALID", b_std=0.1),
                        L("Relu"), L("GlobalSumPool"), L("Dense", out_dim=1)]),
    "pool_mask": (SEQ, [L("Dense", out_dim=6, b_std=0.1), L("Relu"),
                        L("AvgPool", window_shape=[2], strides=[2], padding="SAME"),
                        L("Dense", out_dim=6, b_std=0.2), L("Erf"),
                        L("AvgPool", window_shape=[3], strides=[1], padding="SAME"),
                        L("Dense", out_dim=6), L("GlobalAvgPool")]),
    "dense_per_position": (SEQ, [L("Dense", out_dim=8, b_std=0.1), L("Relu"),
                                 L("Dense", out_dim=8), L("Flatten"),
                                 L("Dense", out_dim=1)]),
}
LENGTHS1, LENGTHS2 = [6, 4, 2, 6, 1], [6, 3, 5]


def build(specs):
  layers = []
  for name, arg in specs:
    if name == "parallel":
      layers.append(stax.parallel(*[build(b) for b in arg]))
      continue
    kw = {k: tuple(v) if isinstance(v, list) else v for k, v in arg.items()}
    if "pos_emb_decay_fn" in kw:
      kw["pos_emb_decay_fn"] = DECAYS[kw["pos_emb_decay_fn"]]
    layers.append(getattr(stax, name)(**kw))
  return stax.serial(*layers)


def masked(x, lengths):
  x = x.copy()
  for i, n in enumerate(lengths):
    x[i, n:] = MASK
  return x


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
  a = p.parse_args()
  arrays, meta = {}, {"cases": {}, "mask_constant": MASK, "lengths1": LENGTHS1,
                      "lengths2": LENGTHS2,
                      "generator": {"neural_tangents": nt.__version__,
                                    "jax": jax.__version__, "numpy": np.__version__}}
  for seed, (name, (shape, specs)) in enumerate(CASES.items()):
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal((5, *shape))
    x2 = rng.standard_normal((3, *shape))
    kernel_fn = build(specs)[2]
    for variant, (a1, a2, mc) in {
        "": (x1, x2, None),
        "masked_": (masked(x1, LENGTHS1), masked(x2, LENGTHS2), MASK)}.items():
      arrays[f"{name}__{variant}x1"], arrays[f"{name}__{variant}x2"] = a1, a2
      for tag, (u, v) in {"12": (a1, a2), "11": (a1, None), "22": (a2, None)}.items():
        k = kernel_fn(u, v, ("nngp", "ntk"), mask_constant=mc)
        arrays[f"{name}__{variant}nngp_{tag}"] = np.asarray(k.nngp)
        arrays[f"{name}__{variant}ntk_{tag}"] = np.asarray(k.ntk)
    meta["cases"][name] = {"seed": seed, "in_shape": list(shape), "layers": specs}
    print(name, "done")
  np.savez_compressed(os.path.join(a.out_dir, "nt_attention.npz"), **arrays)
  with open(os.path.join(a.out_dir, "nt_attention.json"), "w") as f:
    json.dump(meta, f, indent=1)


if __name__ == "__main__":
  main()
