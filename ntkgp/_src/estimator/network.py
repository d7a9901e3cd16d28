"""The network an estimator's hyperparameters describe, and its jitted kernel and
marginal-likelihood functions (cached per architecture, so new hyperparameter values reuse
one compilation)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ntkgp._src import checks
from ntkgp._src.nn import blocking
from ntkgp._src.nn.core import Layer
from ntkgp._src.nn.spec import mlp
from ntkgp._src.predict import evidence
from ntkgp._src.predict.common import DRIVER, PRIOR
from ntkgp._src.predict.gp import gp_inference
from ntkgp._src.scale import batching
from ntkgp._src.scale.tiles import DENSE_ROWS

NAMES = ("W_std", "b_std", "diag_reg")
#: kernels of at most this many entries are computed in one piece inside the evidence
#: program (`blocking.whole_up_to`; up to N = 1216 rows of a fully connected network)
FIT_WHOLE_ENTRIES = 3 << 19


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
    (``[W_std, b_std, diag_reg]``). One compilation per architecture and data shape.

    ``value_and_grad(theta, fixed, x, y, mask)`` takes inputs padded to `padding.padded_rows`
    (rows where ``mask`` is False are left out), so that nearby data sizes share one program,
    and returns ``(log p, gradient, kernels, factor)``: with the value and its gradient, the
    training kernels a posterior of ``mode`` needs (``{'nngp': ..., 'ntk': ...}``, padded rows
    as `evidence.mask_padded` makes them) and the Cholesky factor of the regularized driving
    kernel, so that the posterior at the fitted hyperparameters is built from the fit's own
    best evaluation."""

    def with_theta(theta, fixed):
        hp = dict(zip(NAMES, fixed))
        hp.update({n: jnp.exp(theta[i]) for i, n in enumerate(names)})
        return hp

    def train_kernel(theta, fixed, x, get=(mode,)):
        hp = with_theta(theta, fixed)
        net = build_network(activation, depth, hp["W_std"], hp["b_std"], parameterization,
                            width, network)
        return net.kernel(x, None, get)

    def lml(theta, fixed, x, y):
        k = getattr(train_kernel(theta, fixed, x), mode)
        post = gp_inference(k, y, diag_reg=with_theta(theta, fixed)["diag_reg"])
        return post.log_marginal_likelihood()

    kinds = tuple(sorted({DRIVER[mode], PRIOR[mode]}))

    def value_and_grad(theta, fixed, x, y, mask):
        # The chain rule through the N x N kernel: log p(y)'s gradient in the kernel matrix in
        # closed form (`evidence`: one solve with the identity, half the time of reverse mode
        # through the Cholesky factor), the kernel's derivatives in its hyperparameters by
        # forward mode, all tangents in one pass with the kernel itself (ReLU depth 2,
        # N=1200, float32: 0.05 s for both tangents against 0.17 s by reverse mode through
        # the kernel recursion, and a shorter compilation than one jvp per tangent).
        hp = with_theta(theta, fixed)
        # the kernel's hyperparameters (not diag_reg, which only enters the solve)
        which = jnp.asarray([i for i, n in enumerate(names) if n != "diag_reg"], int)

        def kernel(sub):
            k = train_kernel(theta.at[which].set(sub), fixed, x, kinds)
            return getattr(k, mode), {g: getattr(k, g) for g in kinds}

        with blocking.whole_up_to(FIT_WHOLE_ENTRIES):
            dk, ks = jax.jacfwd(kernel, has_aux=True)(theta[which])
        data = jnp.asarray(mask, x.dtype)
        value, g_k, g_reg, k_solved, factor = evidence.log_marginal_likelihood_gradients(
            ks[mode], y, hp["diag_reg"], data)
        grad = jnp.zeros_like(theta).at[which].set(
            jnp.sum(g_k[:, :, None] * dk, axis=(0, 1)))
        if "diag_reg" in names:
            grad = grad.at[names.index("diag_reg")].set(g_reg * hp["diag_reg"])
        kernels = {g: k_solved if g == mode else evidence.mask_padded(ks[g], data)[0]
                   for g in kinds}
        return value, grad, kernels, factor

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
