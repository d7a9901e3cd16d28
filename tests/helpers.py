"""Shared test helpers: build ntkgp networks from the reference layer specs."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp import nn

DATA = os.path.join(os.path.dirname(__file__), "data")


# named positional-embedding decay functions of the attention references
DECAYS = {"exp3": lambda d: jnp.exp(-d / 3.0)}


def _erf_dual(c, v1, v2):
    return jnp.arcsin(2 * c / jnp.sqrt((1 + 2 * v1) * (1 + 2 * v2))) * 2 / np.pi


def _erf_d_dual(c, v1, v2):
    return 4 / np.pi / jnp.sqrt((1 + 2 * v1) * (1 + 2 * v2) - 4 * c * c)


# named functions of the activation references' Elementwise layers
FUNCTIONS = {"erf": jax.scipy.special.erf, "erf_dual": _erf_dual, "erf_d_dual": _erf_d_dual}


def load_reference(name="nt_reference"):
    ref = np.load(os.path.join(DATA, f"{name}.npz"))
    with open(os.path.join(DATA, f"{name}.json")) as fh:
        meta = json.load(fh)
    return ref, meta


def _index(spec):
    """An index from its JSON form: integers, "...", ":" and {"slice": [start, stop, step]}."""
    decode = {"...": Ellipsis, ":": slice(None)}
    return tuple(slice(*v["slice"]) if isinstance(v, dict) else decode.get(v, v) for v in spec)


def _tuples(v):
    return tuple(_tuples(a) for a in v) if isinstance(v, list) else v


def build(specs):
    """An ntkgp network from a reference spec list (see tests/data/README.md)."""
    layers = []
    for name, arg in specs:
        if name == "parallel":
            layers.append(nn.parallel(*[build(b) for b in arg]))
            continue
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in arg.items()}
        if name == "Index":
            kw["idx"] = _index(arg["idx"])
        if name == "DotGeneral":
            kw = {k: np.array(v) if k in ("lhs", "rhs") else _tuples(v) for k, v in arg.items()}
        if name == "Gelu":
            kw.pop("approximate", None)
        if "pos_emb_decay_fn" in kw:
            kw["pos_emb_decay_fn"] = DECAYS[kw["pos_emb_decay_fn"]]
        for k in ("fn", "nngp_fn", "d_nngp_fn"):
            if k in kw:
                kw[k] = FUNCTIONS[kw[k]]
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


def rms_kernel_errors(make_net, analytic, x, width, n_samples, apply=None, seed=0):
    """sqrt(mean over sampled networks of ||K_s - K||_F^2) / ||K||_F for the NNGP and the NTK.

    ``make_net(width, n_out)`` builds the finite network; ``analytic`` is its `Kernel` on
    ``x``. The empirical NNGP is that of a readout with ``width`` outputs (one output's
    f(x1) f(x2) has O(1) variance at any width); the NTK that of one output, which already
    converges (it sums over all parameters). ``apply(net)`` gives the function to
    differentiate (default the network itself).
    """
    import jax

    from ntkgp import empirical

    se = np.zeros(2)
    for i, (g, out, make_fn) in enumerate((("nngp", width, empirical.empirical_nngp_fn),
                                           ("ntk", 1, empirical.empirical_ntk_fn))):
        net = make_net(width, out)
        f = jax.jit(make_fn(net if apply is None else apply(net)))
        init = jax.jit(lambda k, net=net: net.init(k, x.shape)[1])
        ref = np.asarray(getattr(analytic, g), np.float64)
        for s in range(n_samples):
            key = jax.random.fold_in(jax.random.PRNGKey(seed), s)
            d = np.asarray(f(x, None, init(key)), np.float64) - ref
            se[i] += np.sum(d * d) / np.sum(ref ** 2)
    return np.sqrt(se / n_samples)


def batch_kernel_errors(make_net, analytic, x, width, n_samples, kwargs_for, seed=3):
    """Like `rms_kernel_errors`, with the whole batch applied at once as
    ``apply(params, x, **kwargs_for(key))``: for layers whose apply takes per-batch
    arguments (dropout's ``rng``, whose masks are independent per example; graphs'
    ``pattern``, one graph per example), which ntkgp's empirical kernels, applying the
    network one example at a time, do not pass."""
    import jax

    se = np.zeros(2)
    for s in range(n_samples):
        key = jax.random.fold_in(jax.random.PRNGKey(seed), s)
        kw = kwargs_for(key)
        wide = make_net(width, width)
        _, p = wide.init(key, x.shape)
        f = np.asarray(wide.apply(p, x, **kw), np.float64)
        one = make_net(width, 1)
        _, p1 = one.init(key, x.shape)
        jac = jax.jacrev(lambda q: one.apply(q, x, **kw)[:, 0])(p1)
        j = np.concatenate([np.asarray(a, np.float64).reshape(x.shape[0], -1)
                            for a in jax.tree.leaves(jac)], axis=1)
        for i, (emp, ref) in enumerate(((f @ f.T / width, analytic.nngp),
                                        (j @ j.T, analytic.ntk))):
            ref = np.asarray(ref, np.float64)
            se[i] += np.sum((emp - ref) ** 2) / np.sum(ref ** 2)
    return np.sqrt(se / n_samples)


def gauss_hermite_expect(phi, s1, s2, c, degree=120, phi2=None):
    """E[phi(u) phi2(v)] (phi2 defaults to phi) for (u, v) Gaussian with variances s1, s2 and
    covariance c, by NumPy 2-D Gauss-Hermite quadrature (float64)."""
    t, w = np.polynomial.hermite.hermgauss(degree)
    z, w = np.sqrt(2) * t, w / np.sqrt(np.pi)
    l11 = np.sqrt(s1)
    l21, l22 = c / l11, np.sqrt(max(s2 - c ** 2 / s1, 0.0))
    u = l11 * z[:, None]
    v = l21 * z[:, None] + l22 * z[None, :]
    return float(np.sum(w[:, None] * w[None, :] * phi(u) * (phi2 or phi)(v)))
