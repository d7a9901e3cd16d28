#!/usr/bin/env python
"""Make float64 reference kernels of networks with neural-tangents 0.6.5's closed-form
activations for ntkgp's tests.

Run in the reference venv (../shared/ntref/ntref_setup.sh):
  /tmp/ntref/bin/python nt_activations.py [--out-dir DIR]
Writes DIR/nt_activations.npz and DIR/nt_activations.json.

Inputs are made with NumPy only (and stored in the npz):
  rng = np.random.default_rng(seed)
  x1 = rng.standard_normal((5, *in_shape)); x2 = rng.standard_normal((3, *in_shape))
and, for cases with "unit_rows", each row (each position, with spatial axes) is rescaled to
mean square 1 over its features. Architectures are spec lists as in nt_reference.py;
Elementwise's functions are named: "erf" is jax.scipy.special.erf, "erf_dual" its closed form
(cov12, var1, var2) -> (2/pi) arcsin(2 cov12 / sqrt((1 + 2 var1)(1 + 2 var2))), "erf_d_dual"
its derivative in cov12. Keys: "<case>__{nngp,ntk}_{12,11,22}" as in nt_reference.py
("11"/"22" are absent for cases marked "only_12": neural-tangents returns NaN for an input
with itself there).
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

warnings.filterwarnings("ignore")  # Hermite warns that it assumes unit-variance inputs


def erf_dual(c, v1, v2):
  return jnp.arcsin(2 * c / jnp.sqrt((1 + 2 * v1) * (1 + 2 * v2))) * 2 / np.pi


def erf_d_dual(c, v1, v2):
  return 4 / np.pi / jnp.sqrt((1 + 2 * v1) * (1 + 2 * v2) - 4 * c * c)


FUNCTIONS = {"erf": jax.scipy.special.erf, "erf_dual": erf_dual, "erf_d_dual": erf_d_dual}


def L(name, **kw):
  return [name, kw]


def fc(act, act2=None, w=1.3, w2=1.1, b=0.1):
  return [L("Dense", out_dim=8, W_std=w, b_std=b), act, L("Dense", out_dim=8, W_std=w2,
                                                          b_std=b),
          act2 or act, L("Dense", out_dim=1, W_std=0.9, b_std=b)]


def conv(act):
  return [L("Conv", out_chan=4, filter_shape=[3], padding="SAME", W_std=1.2, b_std=0.1), act,
          L("Conv", out_chan=4, filter_shape=[2], padding="VALID", W_std=1.0, b_std=0.1), act,
          L("GlobalAvgPool"), L("Dense", out_dim=1)]


ACTS = {
    "sign": L("Sign"), "cos": L("Cos", a=1.2, b=0.8, c=0.3), "rbf": L("Rbf", gamma=0.6),
    "exp": L("Exp", a=0.9, b=0.5), "gaussian": L("Gaussian", a=1.1, b=-0.7),
    "gabor": L("Gabor"), "sigmoid_like": L("Sigmoid_like"),
    "expnorm": L("ExpNormalized", gamma=1.3, shift=-0.5),
    "expnorm_clip": L("ExpNormalized", gamma=0.8, shift=-1.0, do_clip=True),
    "polynomial": L("Polynomial", coef=[0.1, 1.0, -0.3, 0.2]),
    "monomial2": L("Monomial", degree=2), "monomial3": L("Monomial", degree=3),
    "monomial0": L("Monomial", degree=0),
    "user_erf": L("Elementwise", fn="erf", nngp_fn="erf_dual"),
    "user_erf_d": L("Elementwise", fn="erf", nngp_fn="erf_dual", d_nngp_fn="erf_d_dual"),
}
FC_IN, CONV_IN = (4,), (6, 3)
CASES = {}
for key, act in ACTS.items():
  CASES[f"fc_{key}"] = dict(in_shape=FC_IN, layers=fc(act))
  if key not in ("monomial0",):
    CASES[f"conv_{key}"] = dict(in_shape=CONV_IN, layers=conv(act))
for n in (1, 2, 3, 4):
  CASES[f"fc_hermite{n}"] = dict(in_shape=(6,), unit_rows=True,
                                 layers=fc(L("Hermite", degree=n), L("Hermite", degree=2),
                                           w=1.0, w2=1.0, b=None))
for n in (0, 1, 2, 3):
  CASES[f"fc_rectified_monomial{n}"] = dict(
      in_shape=FC_IN, only_12=True,
      layers=[L("Dense", out_dim=8, W_std=1.3, b_std=0.1), L("RectifiedMonomial", degree=n),
              L("Dense", out_dim=1, W_std=0.9, b_std=0.1)])


def build(specs):
  layers = []
  for name, arg in specs:
    kw = {k: tuple(v) if isinstance(v, list) and k != "coef" else v for k, v in arg.items()}
    for k in ("fn", "nngp_fn", "d_nngp_fn"):
      if k in kw:
        kw[k] = FUNCTIONS[kw[k]]
    layers.append(getattr(stax, name)(**kw))
  return stax.serial(*layers)


def unit_rows(x):
  return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True))


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
  a = p.parse_args()
  arrays, meta = {}, {"cases": {}, "generator": {"neural_tangents": nt.__version__,
                                                 "jax": jax.__version__,
                                                 "numpy": np.__version__}}
  for seed, (name, case) in enumerate(CASES.items()):
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal((5, *case["in_shape"]))
    x2 = rng.standard_normal((3, *case["in_shape"]))
    if case.get("unit_rows"):
      x1, x2 = unit_rows(x1), unit_rows(x2)
    arrays[f"{name}__x1"], arrays[f"{name}__x2"] = x1, x2
    kernel_fn = build(case["layers"])[2]
    pairs = {"12": (x1, x2)} if case.get("only_12") else {
        "12": (x1, x2), "11": (x1, None), "22": (x2, None)}
    for tag, (u, v) in pairs.items():
      k = kernel_fn(u, v, ("nngp", "ntk"))
      arrays[f"{name}__nngp_{tag}"] = np.asarray(k.nngp)
      arrays[f"{name}__ntk_{tag}"] = np.asarray(k.ntk)
      assert np.all(np.isfinite(arrays[f"{name}__nngp_{tag}"])), (name, tag)
    meta["cases"][name] = {"seed": seed, **{k: (list(v) if k == "in_shape" else v)
                                            for k, v in case.items()}}
    print(name, "done")
  np.savez_compressed(os.path.join(a.out_dir, "nt_activations.npz"), **arrays)
  with open(os.path.join(a.out_dir, "nt_activations.json"), "w") as f:
    json.dump(meta, f, indent=1)


if __name__ == "__main__":
  main()
