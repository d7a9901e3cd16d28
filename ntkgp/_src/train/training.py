r"""Finite-width training of networks and their linearizations, on any loss.

The default loss is :math:`\mathcal L(\theta) = \frac{1}{2NK}\sum_i \|f(x_i, \theta) -
y_i\|^2` (``0.5 * mean((f - y)**2)``) and training time is :math:`t = \eta \times
\text{steps}`, the conventions of `ntkgp.predict`, so that a network trained here for ``s``
full-batch steps at learning rate :math:`\eta` lines up with
``predict.gradient_descent_mse(...)(t=eta * s)``, and on cross-entropy with
``predict.gradient_descent(cross_entropy_loss, ...)`` at the same time.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntkgp._src import checks
from ntkgp._src.train.losses import curvature_bound, get_loss, loss_curvature
from ntkgp._src.train.models import Centered, Linearized, as_model

Array = jax.Array


def make_optimizer(optimizer: str, learning_rate, momentum: Optional[float] = 0.9):
    """An optax optimizer: ``'gd'``/``'sgd'`` plain steps, ``'momentum'`` heavy ball,
    ``'adam'`` Adam.

    Args:
        optimizer: one of ``checks.OPTIMIZERS``: ``'gd'``, ``'sgd'``, ``'momentum'`` or
            ``'adam'``.
        learning_rate: step size (a float or an optax schedule).
        momentum: heavy-ball coefficient for ``'momentum'``.

    Returns:
        An ``optax.GradientTransformation``.
    """
    checks.check_choice(optimizer, "optimizer", checks.OPTIMIZERS)
    if optimizer == "adam":
        return optax.adam(learning_rate)
    if optimizer == "momentum":
        return optax.sgd(learning_rate, momentum=momentum)
    return optax.sgd(learning_rate)


def _norm(tree):
    return jnp.sqrt(sum(jnp.sum(jnp.square(a)) for a in jax.tree.leaves(tree)))


@dataclasses.dataclass(frozen=True)
class History:
    r"""What a training run records, every ``record_every`` steps (``R`` records, the first at
    step 0 and the last at the final step).

    Attributes:
        steps: array of shape ``(R,)``, the step of each record.
        train_loss: array of shape ``(R,)``, the full-batch training loss.
        test_outputs: array of shape ``(R, M, K)``, outputs on ``x_test`` (or ``None``).
        param_change: array of shape ``(R,)``, :math:`\|\theta_t - \theta_0\| / \|\theta_0\|`.
        learning_rate: the step :math:`\eta` used (a scalar array), so that the training time
            of record ``r`` is ``learning_rate * steps[r]``.
    """

    steps: Array
    train_loss: Array
    test_outputs: Optional[Array]
    param_change: Array
    learning_rate: Optional[Array] = None


jax.tree_util.register_dataclass(
    History, data_fields=["steps", "train_loss", "test_outputs", "param_change",
                          "learning_rate"], meta_fields=[])


@functools.partial(jax.jit, static_argnames=("loss", "optimizer", "momentum", "steps",
                                              "record_every", "batch_size"))
def _train(apply, loss, optimizer, learning_rate, momentum, params0, x, y, x_test, key, steps,
           record_every, batch_size):
    n = x.shape[0]
    opt = make_optimizer(optimizer, learning_rate, momentum)
    norm0 = _norm(params0)

    def loss_fn(p, xb, yb):
        return loss(apply(p, xb), yb)

    def step(carry, k):
        p, s = carry
        if batch_size is None:
            xb, yb = x, y
        else:
            idx = jax.random.choice(k, n, (batch_size,), replace=False)
            xb, yb = x[idx], y[idx]
        g = jax.grad(loss_fn)(p, xb, yb)
        upd, s = opt.update(g, s, p)
        return (optax.apply_updates(p, upd), s), None

    def record(p):
        out = None if x_test is None else apply(p, x_test)
        delta = jax.tree.map(lambda a, b: a - b, p, params0)
        return loss_fn(p, x, y), out, _norm(delta) / norm0

    n_chunks = -(-steps // record_every)
    sizes = [record_every] * (steps // record_every) + ([steps % record_every] if
                                                        steps % record_every else [])
    carry = (params0, opt.init(params0))
    recs = [record(params0)]
    keys = jax.random.split(key, steps)
    # full chunks in one scan; a shorter last chunk, if any, in a second one
    full = steps // record_every
    if full:
        def chunk(c, ks):
            c, _ = jax.lax.scan(step, c, ks)
            return c, record(c[0])

        carry, r = jax.lax.scan(chunk, carry, keys[: full * record_every].reshape(
            (full, record_every) + keys.shape[1:]))
        recs.append(r)
    if steps % record_every:
        carry, _ = jax.lax.scan(step, carry, keys[full * record_every:])
        recs.append(jax.tree.map(lambda a: a[None], record(carry[0])))
    first = jax.tree.map(lambda a: a[None], recs[0])
    loss, out, change = jax.tree.map(lambda *a: jnp.concatenate(a), first, *recs[1:])
    rec_steps = jnp.asarray(np.cumsum([0] + sizes)[: n_chunks + 1])
    return carry[0], History(rec_steps, loss, out, change, learning_rate)


def default_learning_rate(f: Callable, params0, x, n_outputs: int = 1, momentum: float = 0.0,
                          iterations: int = 30, loss="mse", y=None):
    r"""Half the largest stable full-batch step of ``f`` at ``params0``:
    :math:`\eta = (1-\beta) / (\hat\lambda_{\max} c)`, with :math:`\hat\lambda_{\max}` the
    top eigenvalue of the empirical NTK on ``x``, found by power iteration with NTK-vector
    products (:math:`J J^\top v`, never forming the :math:`N \times N` kernel) and raised by 10%
    because power iteration approaches it from below, and :math:`c` the curvature of the loss
    in the outputs: `curvature_bound` for a named loss (:math:`1/(NK)` for the squared error,
    so :math:`\eta = (1-\beta) NK / \hat\lambda_{\max}`; :math:`1/(2N)` for
    cross-entropy, stable however sharp the probabilities become), or for a loss given as a
    function the top eigenvalue of :math:`\nabla_f^2 L` at the initial outputs
    (`loss_curvature`). With momentum :math:`\beta` the effective step
    :math:`\eta/(1-\beta)` equals gradient descent's.

    Args:
        f: ``f(params, x)``, an ``ntkgp.nn`` network, or a `linearize`-d / `center`-ed model.
        params0: parameters at which the kernel is taken.
        x: inputs of shape ``(N, ...)``.
        n_outputs: ``K``, the number of outputs.
        momentum: :math:`\beta` of heavy-ball momentum (0 for gradient descent).
        iterations: power-iteration steps.
        loss: ``'mse'``, ``'xent'`` or ``loss(outputs, targets) -> scalar``.
        y: targets ``(N, K)`` where the loss's curvature depends on them (default zeros).

    Returns:
        A scalar array (traced under ``vmap``/``jit``, so it can vary per seed).
    """
    model = as_model(f)
    out, vjp = jax.vjp(lambda p: model(p, x), params0)

    def ntk_times(v):
        return jax.jvp(lambda p: model(p, x), (params0,), (vjp(v)[0],))[1]

    def body(_, v):
        w = ntk_times(v)
        return w / jnp.linalg.norm(w)

    v0 = jax.random.normal(jax.random.PRNGKey(0), out.shape, out.dtype)
    v = jax.lax.fori_loop(0, iterations, body, v0 / jnp.linalg.norm(v0))
    lam = 1.1 * jnp.vdot(v, ntk_times(v))
    if isinstance(loss, str):
        curvature = curvature_bound(loss, out.shape[0], n_outputs)
    else:
        curvature = loss_curvature(get_loss(loss), out, jnp.zeros_like(out) if y is None else y)
    return (1.0 - momentum) / (lam * curvature)


def train(f: Callable, params0, x_train, y_train, *, steps: int,
          learning_rate: Optional[float] = None,
          optimizer: str = "gd", batch_size: Optional[int] = None, momentum: float = 0.9,
          x_test=None, key=None, record_every: Optional[int] = None, loss="mse"):
    r"""Train ``f`` from ``params0`` on a loss and record the trajectory.

    Full-batch gradient descent (``'gd'``), minibatch SGD (``'sgd'``, ``batch_size`` examples
    drawn without replacement each step), or heavy-ball momentum (``'momentum'``), via optax,
    on :math:`\frac{1}{2NK}\sum\|f - y\|^2` (``loss='mse'``), softmax cross-entropy
    (``'xent'``, `cross_entropy_loss`) or any ``loss(outputs, targets) -> scalar``. The whole
    loop is one jitted ``lax.scan``, so it can be ``vmap``-ed over initial parameters and keys
    (an ensemble of seeds in one call; for convolutional networks a loop over seeds is faster,
    as XLA:CPU runs ``vmap``-ed convolutions as slow grouped ones).

    Args:
        f: ``f(params, x)`` or an ``ntkgp.nn`` network (or a `linearize`-d model).
        params0: initial parameters.
        x_train: inputs of shape ``(N, ...)``.
        y_train: targets of shape ``(N, K)`` (``(N,)`` is read as ``(N, 1)``).
        steps: number of optimizer steps; training time is ``learning_rate * steps``.
        learning_rate: the step size :math:`\eta`; default `default_learning_rate` (half the
            largest stable step of the network's own NTK at ``params0``, estimated by power
            iteration; times :math:`1-\beta` with momentum).
        optimizer: ``'gd'``, ``'sgd'``, ``'momentum'`` or ``'adam'`` (no closed form at
            infinite width).
        batch_size: minibatch size for ``'sgd'`` (and optionally ``'momentum'``); ``None`` is
            full batch.
        momentum: the momentum coefficient for ``'momentum'``.
        x_test: optional inputs of shape ``(M, ...)`` whose outputs are recorded.
        key: PRNG key for minibatches (required when ``batch_size`` is set).
        record_every: steps between records (default: about 50 records).
        loss: ``'mse'``, ``'xent'`` or a function ``loss(outputs, targets) -> scalar`` of
            ``(N, K)`` arrays (``History.train_loss`` records it).

    Returns:
        ``(params, history)``: the final parameters and a `History`.

    Raises:
        ValueError: for bad shapes or options.

    Example:
        >>> import jax, numpy as np
        >>> from ntkgp import nn, train
        >>> net = nn.serial(nn.Dense(256), nn.Relu(), nn.Dense(1))
        >>> x, y = np.random.default_rng(0).normal(size=(2, 16, 1))
        >>> _, p0 = net.init(jax.random.PRNGKey(0), x.shape)
        >>> p, hist = train.train(net, p0, x, y, steps=100, learning_rate=0.5, record_every=50)
        >>> hist.train_loss.shape, bool(hist.train_loss[-1] < hist.train_loss[0])
        ((3,), True)
    """
    model = as_model(f)
    checks.check_choice(optimizer, "optimizer", checks.OPTIMIZERS)
    steps = checks.check_positive_int(steps, "steps")
    x_train, x_test = checks.check_inputs(x_train, x_test, ndim=None)
    y, _ = checks.check_targets(y_train, x_train.shape[0])  # (N,) is one output, as in predict
    y = y.astype(x_train.dtype)
    loss_fn = get_loss(loss)
    checks.check_loss(loss_fn, y)
    if learning_rate is None:
        learning_rate = default_learning_rate(
            model, params0, x_train, n_outputs=y.shape[1],
            momentum=float(momentum) if optimizer == "momentum" else 0.0, loss=loss, y=y)
    elif not (np.isscalar(learning_rate) and np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"`learning_rate` must be a positive number or None (a safe default); "
                         f"got {learning_rate!r}.")
    if batch_size is not None:
        batch_size = checks.check_positive_int(batch_size, "batch_size")
        if batch_size > x_train.shape[0]:
            raise ValueError(f"`batch_size` ({batch_size}) exceeds the {x_train.shape[0]} "
                             "training points.")
        if key is None:
            raise ValueError("`key` is required for minibatches: pass key=jax.random.PRNGKey(0).")
    elif optimizer == "sgd":
        raise ValueError("optimizer='sgd' needs a `batch_size`; use optimizer='gd' for full "
                         "batches.")
    record_every = checks.check_positive_int(record_every or max(1, steps // 50),
                                             "record_every")
    key = jax.random.PRNGKey(0) if key is None else key
    return _train(model, loss_fn, optimizer, jnp.asarray(learning_rate, x_train.dtype),
                  float(momentum) if optimizer == "momentum" else None, params0, x_train,
                  y, x_test, key, steps, record_every, batch_size)


@functools.lru_cache(maxsize=32)
def _cached_ntk_fn(f):
    """``empirical_ntk_fn(f)``, built (and compiled) once per network: each call of
    ``empirical_ntk_fn`` makes a new jitted function. Training takes examples to be
    independent (per-example losses), so Jacobians are per example."""
    from ntkgp._src.empirical.empirical import empirical_ntk_fn

    return empirical_ntk_fn(f, vmap_axes=0)


def ntk_drift(f: Callable, params0, params, x) -> Array:
    r"""Relative change of the empirical NTK during training,
    :math:`\|\hat\Theta_T - \hat\Theta_0\|_F / \|\hat\Theta_0\|_F` on inputs ``x`` (N, ...).

    It vanishes like :math:`\text{width}^{-1/2}` in the NTK parameterization (the kernel
    regime) and stays of order one when features are learned.

    Args:
        f: the network (an ``ntkgp.nn`` `Layer` or ``f(params, x)``).
        params0: initial parameters.
        params: trained parameters.
        x: inputs ``(N, ...)`` (a few dozen suffice).

    Returns:
        A scalar array.
    """
    fn = _cached_ntk_fn(f.apply if isinstance(f, (Linearized, Centered)) else f)
    k0, k1 = fn(x, None, params0), fn(x, None, params)
    return jnp.linalg.norm(k1 - k0) / jnp.linalg.norm(k0)
