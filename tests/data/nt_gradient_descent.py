#!/usr/bin/env python
"""Make float64 reference outputs of neural-tangents 0.6.5's `predict.gradient_descent` (the
function-space ODE for any loss) for ntkgp's tests.

Run in the reference venv (../shared/ntref/ntref_setup.sh):
  /tmp/ntref/bin/python nt_gradient_descent.py [--out-dir DIR]
Writes DIR/nt_gradient_descent.npz and DIR/nt_gradient_descent.json.

Per case (seed = its position): NumPy inputs x (12, 4), x_test (4, 4), one-hot targets y
(12, 3) and initial outputs fx_train_0 (12, 3), fx_test_0 (4, 3) ~ 0.3 N(0, 1); the NTK of
Dense(1, 1.5, 0.05) + Relu + Dense(1, 1.5, 0.05) from neural-tangents, or (trace_axes=())
that NTK times a fixed 3 x 3 positive definite matrix over outputs, laid out (N, N, K, K).
Keys: "<case>__{k,kt,y,f0,ft0,t,train,test}".
"""
import argparse
import json
import os

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import neural_tangents as nt  # noqa: E402
import numpy as np  # noqa: E402
from neural_tangents import stax  # noqa: E402

LOSSES = {
    "xent": lambda f, y: -jnp.mean(jax.nn.log_softmax(f) * y),
    "mse": lambda f, y: 0.5 * jnp.mean((f - y) ** 2),
}
# each case's seed is its position here: add new cases at the end
CASES = {
    "xent_gd": dict(loss="xent", learning_rate=1.0, momentum=None, trace_axes=[-1],
                    t=[0.0, 0.5, 2.0, 10.0, 40.0]),
    "xent_lr_momentum": dict(loss="xent", learning_rate=0.5, momentum=0.9, trace_axes=[-1],
                             t=[0.3, 3.0, 12.0]),
    "xent_output_blocks": dict(loss="xent", learning_rate=2.0, momentum=None, trace_axes=[],
                               t=[1.0, 5.0]),
    "mse_gd": dict(loss="mse", learning_rate=1.0, momentum=None, trace_axes=[-1],
                   t=[1.0, 10.0]),
}
MIX = np.array([[1.0, 0.3, -0.2], [0.3, 0.8, 0.1], [-0.2, 0.1, 1.2]])


def main():
  p = argparse.ArgumentParser()
  p.add_argument("--out-dir", default=os.path.dirname(os.path.abspath(__file__)))
  a = p.parse_args()
  kernel_fn = stax.serial(stax.Dense(1, 1.5, 0.05), stax.Relu(), stax.Dense(1, 1.5, 0.05))[2]
  arrays, meta = {}, {"cases": {}, "generator": {"neural_tangents": nt.__version__,
                                                 "jax": jax.__version__,
                                                 "numpy": np.__version__}}
  for seed, (name, c) in enumerate(CASES.items()):
    rng = np.random.default_rng(seed)
    x, xt = rng.standard_normal((12, 4)), rng.standard_normal((4, 4))
    y = np.eye(3)[rng.integers(0, 3, 12)]
    f0, ft0 = 0.3 * rng.standard_normal((12, 3)), 0.3 * rng.standard_normal((4, 3))
    k = np.asarray(kernel_fn(x, None, "ntk"))
    kt = np.asarray(kernel_fn(xt, x, "ntk"))
    if not c["trace_axes"]:
      k = np.einsum("ij,ab->ijab", k, MIX)
      kt = np.einsum("ij,ab->ijab", kt, MIX)
    fn = nt.predict.gradient_descent(LOSSES[c["loss"]], k, y, c["learning_rate"],
                                     c["momentum"], tuple(c["trace_axes"]))
    t = np.asarray(c["t"])
    train, test = fn(t, f0, ft0, kt)
    for key, v in dict(k=k, kt=kt, y=y, f0=f0, ft0=ft0, t=t, train=train, test=test).items():
      arrays[f"{name}__{key}"] = np.asarray(v)
    assert np.all(np.isfinite(arrays[f"{name}__train"])), name
    meta["cases"][name] = dict(c, seed=seed)
    print(name, "done")
  np.savez_compressed(os.path.join(a.out_dir, "nt_gradient_descent.npz"), **arrays)
  with open(os.path.join(a.out_dir, "nt_gradient_descent.json"), "w") as f:
    json.dump(meta, f, indent=1)


if __name__ == "__main__":
  main()
