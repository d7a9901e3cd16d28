"""Plain JAX functions whose empirical kernels `nt_empirical.py` records with neural-tangents
and ntkgp's tests compute again (shared so that both evaluate the same function)."""
import jax.numpy as jnp


def conv_like(p, x):
    """x (N, 5, 3) -> (N, 5, 2): examples independent, two output axes per example."""
    h = jnp.tanh(x @ p["w1"] + p["b1"].reshape(1, 1, -1))
    return 0.7 * (h @ p["w2"]) + p["s"] * jnp.sin(x[..., :2])


def coupled(p, x):
    """`conv_like` minus half its mean over the batch: each output depends on every example."""
    y = conv_like(p, x)
    return y - 0.5 * jnp.mean(y, axis=0, keepdims=True)


def mlp(p, x):
    """x (N, 4) -> (N, 3), one tanh hidden layer of 16."""
    return jnp.tanh(x @ p["v1"] + p["c1"].reshape(1, -1)) @ p["v2"] / 4.0


def make_params(rng):
    """Parameters of all three, from a NumPy generator."""
    n = rng.standard_normal
    return {"w1": n((3, 4)), "b1": 0.1 * n(4), "w2": n((4, 2)), "s": n(()),
            "v1": n((4, 16)), "c1": 0.1 * n(16), "v2": n((16, 3))}
