#!/usr/bin/env python
"""Make float64 reference outputs of neural-tangents 0.6.5's empirical kernels with
`trace_axes`, `diagonal_axes` and `vmap_axes`, and of its predictions with full output blocks
(`trace_axes=()`), for ntkgp's tests.

Run in the reference venv (../shared/ntref/ntref_setup.sh):
  /tmp/ntref/bin/python nt_empirical.py [--out-dir DIR]
Writes DIR/nt_empirical.npz and DIR/nt_empirical.json.

Inputs (seed 0): params = make_params(rng) (nt_empirical_fns.py, stored as "params__NAME"),
x1 (4, 5, 3), x2 (3, 5, 3) ~ N(0, 1) for the kernels of `conv_like` and `coupled`; for the
predictions, `mlp` on x_train (8, 4), x_test (4, 4), targets y (8, 3) ~ N(0, 1) and initial
outputs fx_train_0 (8, 3), fx_test_0 (4, 3) ~ 0.3 N(0, 1), its empirical kernels with full
output blocks. Kernel keys "<case>__{ntk,nngp}" (ntk for every vmap_axes of the case, which
must agree); prediction keys "pred__<name>".
"""
import argparse
import json
import os
import sys

import jax

jax.config.update("jax_enable_x64", True)
import neural_tangents as nt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nt_empirical_fns import conv_like, coupled, make_params, mlp  # noqa: E402

# name: (function, trace_axes, diagonal_axes, x2 given, vmap_axes to try)
KERNELS = {
    "traced": ("conv_like", [-1], [], True, [None, 0]),
    "full": ("conv_like", [], [], True, [None, 0]),
    "full_diag_last": ("conv_like", [], [-1], True, [None, 0]),
    "trace1_diag_last": ("conv_like", [1], [-1], True, [None, 0]),
    "diag_examples": ("conv_like", [-1], [0], False, [None, 0]),
    "diag_examples_full": ("conv_like", [], [0], False, [None, 0]),
    "trace_examples": ("conv_like", [0, -1], [], False, [None, 0]),
    "diag_examples_trace_rest": ("conv_like", [1, 2], [0], False, [None, 0]),
    "coupled_traced": ("coupled", [-1], [], True, [None]),
    "coupled_diag_examples": ("coupled", [], [0], False, [None]),
}
FNS = {"conv_like": conv_like, "coupled": coupled}


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
  a = p.parse_args()
  rng = np.random.default_rng(0)
  params = make_params(rng)
  x1, x2 = rng.standard_normal((4, 5, 3)), rng.standard_normal((3, 5, 3))
  arrays = {f"params__{k}": np.asarray(v) for k, v in params.items()}
  arrays.update(x1=x1, x2=x2)
  meta = {"kernels": {}, "generator": {"neural_tangents": nt.__version__,
                                       "jax": jax.__version__, "numpy": np.__version__}}
  for name, (fn, tr, dg, two, vmaps) in KERNELS.items():
    xb = x2 if two else None
    ntks = [np.asarray(nt.empirical_ntk_fn(FNS[fn], tuple(tr), tuple(dg), v)(x1, xb, params))
            for v in vmaps]
    for v, k in zip(vmaps, ntks):
      np.testing.assert_allclose(k, ntks[0], rtol=1e-10, atol=1e-12, err_msg=f"{name} {v}")
    arrays[f"{name}__ntk"] = ntks[0]
    arrays[f"{name}__nngp"] = np.asarray(
        nt.empirical_nngp_fn(FNS[fn], tuple(tr), tuple(dg))(x1, xb, params))
    meta["kernels"][name] = dict(fn=fn, trace_axes=tr, diagonal_axes=dg, x2=two,
                                 vmap_axes=vmaps, shape=list(ntks[0].shape))
    print(name, ntks[0].shape)

  xtr, xte = rng.standard_normal((8, 4)), rng.standard_normal((4, 4))
  y = rng.standard_normal((8, 3))
  f0, ft0 = 0.3 * rng.standard_normal((8, 3)), 0.3 * rng.standard_normal((4, 3))
  kfn = nt.empirical_kernel_fn(mlp, trace_axes=(), vmap_axes=0)
  k_tr = kfn(xtr, None, ("nngp", "ntk"), params)
  k_te = kfn(xte, xtr, ("nngp", "ntk"), params)
  k_tt = kfn(xte, None, ("nngp", "ntk"), params)
  arrays.update(pred__x_train=xtr, pred__x_test=xte, pred__y=y, pred__f0=f0, pred__ft0=ft0)
  for g in ("nngp", "ntk"):
    arrays[f"pred__k_train_{g}"] = np.asarray(getattr(k_tr, g))
    arrays[f"pred__k_test_{g}"] = np.asarray(getattr(k_te, g))
    arrays[f"pred__k_testtest_{g}"] = np.asarray(getattr(k_tt, g))
  ts = np.array([0.5, 5.0, 50.0])
  arrays["pred__t"] = ts
  gd = nt.predict.gradient_descent_mse(k_tr.ntk, y, learning_rate=1.0, diag_reg=1e-3,
                                       trace_axes=())
  train, test = gd(ts, f0, ft0, k_te.ntk)
  arrays.update(pred__gd_train=np.asarray(train), pred__gd_test=np.asarray(test))
  gp = nt.predict.gp_inference(k_tr, y, diag_reg=1e-3, trace_axes=())
  out = gp(("nngp", "ntk"), k_te, k_tt)
  for g in ("nngp", "ntk"):
    arrays[f"pred__gp_{g}_mean"] = np.asarray(getattr(out, g).mean)
    arrays[f"pred__gp_{g}_cov"] = np.asarray(getattr(out, g).covariance)
  ens = nt.predict.gradient_descent_mse_ensemble(kfn, xtr, y, diag_reg=1e-3, trace_axes=(),
                                                 params=params)
  for g in ("nngp", "ntk"):
    o = ens(ts, xte, g, compute_cov=True, params=params)
    arrays[f"pred__ens_{g}_mean"] = np.asarray(o.mean)
    arrays[f"pred__ens_{g}_cov"] = np.asarray(o.covariance)
    o = ens(None, xte, g, compute_cov=True, params=params)
    arrays[f"pred__ens_{g}_inf_mean"] = np.asarray(o.mean)
    arrays[f"pred__ens_{g}_inf_cov"] = np.asarray(o.covariance)
  for k, v in arrays.items():
    assert np.all(np.isfinite(v)), k
  meta["predictions"] = dict(diag_reg=1e-3, learning_rate=1.0, kernel="mlp, vmap_axes=0",
                             shapes={k: list(v.shape) for k, v in arrays.items()
                                     if k.startswith("pred__")})
  np.savez_compressed(os.path.join(a.out_dir, "nt_empirical.npz"), **arrays)
  with open(os.path.join(a.out_dir, "nt_empirical.json"), "w") as f:
    json.dump(meta, f, indent=1)
  print("predictions done")


if __name__ == "__main__":
  main()
