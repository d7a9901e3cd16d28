"""The network an estimator's hyperparameters describe, and its jitted kernel and
marginal-likelihood functions (cached per architecture, so new hyperparameter values reuse
one compilation)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ntkgp._src import checks
from ntkgp._src.nn.core import Layer
from ntkgp._src.nn.spec import mlp
from ntkgp._src.predict.gp import gp_inference
from ntkgp._src.scale import batching
from ntkgp._src.scale.tiles import DENSE_ROWS

NAMES = ("W_std", "b_std", "diag_reg")


def build_network(activation, depth, W_std, b_std, parameterization, width, network):
    """The ntkgp.nn network the estimator's hyperparameters describe (one output)."""
    if network is not None:
        if isinstance(network, Layer):
            return network
        net = network(W_std, b_std)
        if not isinstance(net, Layer):
            raise TypeError("`network` called as network(W_std, b_std) must return an "
                            f"ntkgp.nn network (a Layer); got {type(net).__name__}.")
        return net
    return mlp(depth, width, activation, W_std=W_std, b_std=b_std,
               parameterization=parameterization)


@functools.lru_cache(maxsize=64)
def lml_function(mode, activation, depth, parameterization, width, network, names):
    """Jitted ``(lml, value_and_grad(lml))`` with ``lml(theta, fixed, x, y)``: the log marginal
    likelihood of ``y`` ``(N, K)`` under the GP with this architecture's NNGP (``mode='nngp'``)
    or NTK (``'ntk'``), ``log(hyperparameters[names]) = theta`` and the others from ``fixed``
    (``[W_std, b_std, diag_reg]``). One compilation per architecture and data shape."""

    def with_theta(theta, fixed):
        hp = dict(zip(NAMES, fixed))
        hp.update({n: jnp.exp(theta[i]) for i, n in enumerate(names)})
        return hp

    def train_kernel(theta, fixed, x):
        hp = with_theta(theta, fixed)
        net = build_network(activation, depth, hp["W_std"], hp["b_std"], parameterization,
                            width, network)
        return getattr(net.kernel(x, None, (mode,)), mode)

    def lml_of_kernel(k, theta, fixed, y):
        post = gp_inference(k, y, diag_reg=with_theta(theta, fixed)["diag_reg"])
        return post.log_marginal_likelihood()

    def lml(theta, fixed, x, y):
        return lml_of_kernel(train_kernel(theta, fixed, x), theta, fixed, y)

    def value_and_grad(theta, fixed, x, y):
        # The chain rule through the N x N kernel: log p(y)'s gradient in the kernel matrix by
        # reverse mode (through the Cholesky factor), the kernel's derivative in each of its
        # hyperparameters by forward mode, one tangent at a time. Reverse mode through the
        # kernel recursion itself cost 3x as much (ReLU depth 2, N=1200: 0.17 s against
        # 0.06 s for two tangents; one vmap over the tangents 0.14 s).
        kernel = functools.partial(train_kernel, fixed=fixed, x=x)
        k = kernel(theta)
        value, (g_k, g_theta) = jax.value_and_grad(lml_of_kernel, (0, 1))(k, theta, fixed, y)
        for i, n in enumerate(names):
            if n != "diag_reg":  # the one hyperparameter the kernel does not depend on
                e = jnp.zeros_like(theta).at[i].set(1)
                g_theta = g_theta.at[i].add(jnp.sum(jax.jvp(kernel, (theta,), (e,))[1] * g_k))
        return value, g_theta

    return jax.jit(lml), jax.jit(value_and_grad)


@functools.lru_cache(maxsize=128)
def kernel_function(activation, depth, parameterization, width, network):
    """Jitted ``k(hp, x1, x2, get)`` of this architecture with ``hp = [W_std, b_std]`` as an
    array: new hyperparameter values reuse the compilation (one per data shape)."""

    @functools.partial(jax.jit, static_argnames="get")
    def k(hp, x1, x2, get):
        net = build_network(activation, depth, hp[0], hp[1], parameterization, width, network)
        return net.kernel(x1, x2, get)

    return k


class KernelFunction:
    """``kernel(x1, x2=None, get) -> Kernel`` of fixed hyperparameters; computed in tiles (with
    a progress bar when there are many) once an input has more than ``tiles.DENSE_ROWS``
    rows, or always when ``tile_size`` is given. Picklable (it holds the architecture's
    description)."""

    def __init__(self, arch: dict, tile_size=None):
        self.arch = dict(arch)
        self.tile_size = tile_size

    def _fn(self):
        a = self.arch
        return kernel_function(a["activation"], a["depth"], a["parameterization"], a["width"],
                               a["network"])

    def __call__(self, x1, x2=None, get=("nngp", "ntk")):
        a = self.arch
        fn = self._fn()
        hp = jnp.asarray([a["W_std"], a["b_std"]], x1.dtype)
        if not checks.is_concrete(x1):  # traced (a tile of a kernel operator): in one piece
            return fn(hp, x1, x2, get)
        rows = max(x1.shape[0], 0 if x2 is None else x2.shape[0])
        if rows <= DENSE_ROWS and self.tile_size is None:
            out = fn(hp, x1, x2, get)
        else:
            out = _tiled(fn, self.tile_size)(x1, x2, hp, get=get)
        checks.check_kernel_finite(out, "the estimator's network", x1, x2)
        return out


@functools.lru_cache(maxsize=32)
def _tiled(fn, tile_size):
    """One tiled wrapper (and so one compilation of its tiles) per kernel and tile size."""
    return batching.batch(lambda u, v, hp, get: fn(hp, u, v, get), tile_size)
