"""Shared test helpers: build ntkgp networks from the reference layer specs."""

import json
import os

import jax.numpy as jnp
import numpy as np

from ntkgp import nn

DATA = os.path.join(os.path.dirname(__file__), "data")


# named positional-embedding decay functions of the attention references
DECAYS = {"exp3": lambda d: jnp.exp(-d / 3.0)}


def load_reference(name="nt_reference"):
    ref = np.load(os.path.join(DATA, f"{name}.npz"))
    with open(os.path.join(DATA, f"{name}.json")) as fh:
        meta = json.load(fh)
    return ref, meta


def build(specs):
    """An ntkgp network from a reference spec list (see tests/data/README.md)."""
    layers = []
    for name, arg in specs:
        if name == "parallel":
            layers.append(nn.parallel(*[build(b) for b in arg]))
            continue
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in arg.items()}
        if name == "Gelu":
            kw.pop("approximate", None)
        if "pos_emb_decay_fn" in kw:
            kw["pos_emb_decay_fn"] = DECAYS[kw["pos_emb_decay_fn"]]
        layers.append(getattr(nn, name)(**kw))
    return nn.serial(*layers)


def fc(depth=2, W_std=1.5, b_std=0.05, act=nn.Relu):
    """``depth`` hidden ``Dense(1)`` + ``act`` layers and a ``Dense(1)`` readout (the
    width does not matter for infinite-width kernels)."""
    return nn.mlp(depth, 1, act, W_std=W_std, b_std=b_std)


def check_convergence_rate(errors_at, x, widths, n_samples, label):
    """Per-network kernel errors (``errors_at(width, x, n_samples)`` -> array) must shrink by
    at least 0.6x for each 4x wider network (O(width^-1/2) fluctuations give 0.5x)."""
    errs = [errors_at(w, x, n_samples) for w in widths]
    for small, big in zip(errs, errs[1:]):
        assert np.all(big <= 0.6 * small), (label, widths, errs)
    return errs
