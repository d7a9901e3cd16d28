"""ntkgp.train: real training, the linearized model, and their link to the closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkgp import empirical, nn, predict, train
from tests.conftest import DTYPE, ONLY_X32_PASS, ONLY_X64_PASS, RTOL, X64, rel_err


def net_of(width, act=nn.Relu):
    return nn.serial(nn.Dense(width, W_std=1.5, b_std=0.1), act(),
                     nn.Dense(width, W_std=1.5, b_std=0.1), act(),
                     nn.Dense(1, W_std=1.5, b_std=0.1))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3)).astype(DTYPE)
    y = np.sin(x[:, :1]).astype(DTYPE)
    xt = rng.standard_normal((5, 3)).astype(DTYPE)
    return x, y, xt


def test_linearize_of_a_linear_model_is_exact(data, rng):
    x, _, _ = data

    def f(p, xx):
        return xx @ p["w"] + p["b"]

    p0 = {"w": jnp.asarray(rng.standard_normal((3, 2)), DTYPE), "b": jnp.zeros((1, 2), DTYPE)}
    p1 = {"w": jnp.asarray(rng.standard_normal((3, 2)), DTYPE), "b": jnp.ones((1, 2), DTYPE)}
    assert rel_err(train.linearize(f, p0)(p1, x), f(p1, x)) <= RTOL


def test_linearized_and_net_agree_to_first_order(data):
    """After one GD step the two differ by O(lr^2): halving lr divides the gap by ~4. (A smooth
    activation: with ReLU a unit whose pre-activation sits within lr of the kink adds an O(lr)
    term, seen with one float32 seed.)"""
    x, y, xt = data
    net = net_of(128, nn.Erf)
    _, p0 = net.init(jax.random.PRNGKey(0), x.shape)
    lin = train.linearize(net, p0)
    gaps = []
    for lr in (0.2, 0.1, 0.05):
        p_net, _ = train.train(net, p0, x, y, steps=1, learning_rate=lr)
        p_lin, _ = train.train(lin, p0, x, y, steps=1, learning_rate=lr)
        gaps.append(float(jnp.max(jnp.abs(net.apply(p_net, xt) - lin(p_lin, xt)))))
    assert 2.5 <= gaps[0] / gaps[1] <= 6 and 2.5 <= gaps[1] / gaps[2] <= 6, gaps


@pytest.mark.parametrize("optimizer", ["gd", "momentum"])
def test_training_the_linearized_model_is_the_closed_form(data, optimizer):
    """s GD (or heavy-ball) steps of the linearized net = gradient_descent_mse with its
    empirical NTK at t = lr * s, from its own initial outputs (the random initial function
    cancels)."""
    x, y, xt = data
    net = net_of(64)
    _, p0 = net.init(jax.random.PRNGKey(1), x.shape)
    lin = train.linearize(net, p0)
    ntk = empirical.empirical_ntk_fn(net)
    k_dd, k_td = ntk(x, None, p0), ntk(xt, x, p0)
    beta = 0.9 if optimizer == "momentum" else 0.0
    lr = 0.5 * float(predict.max_learning_rate(k_dd, momentum=beta))
    steps = 30
    p, hist = train.train(lin, p0, x, y, steps=steps, learning_rate=lr, x_test=xt,
                          record_every=10, optimizer=optimizer, momentum=beta)
    dyn = predict.gradient_descent_mse(k_dd, y, learning_rate=lr, momentum=beta)
    f_train, f_test = dyn(lr * np.array(hist.steps, np.float64), net.apply(p0, x),
                          net.apply(p0, xt), k_td)
    assert rel_err(hist.test_outputs, f_test) <= (1e-6 if X64 else 1e-3)
    assert rel_err(lin(p, x), f_train[-1]) <= (1e-6 if X64 else 1e-3)
    want_loss = 0.5 * np.mean((np.asarray(f_train, np.float64) - y) ** 2, axis=(1, 2))
    assert rel_err(hist.train_loss, want_loss) <= (1e-6 if X64 else 1e-3)


@ONLY_X64_PASS
def test_vmap_over_seeds_equals_a_loop(data):
    x, y, xt = data
    net = net_of(32)
    keys = jax.random.split(jax.random.PRNGKey(2), 3)

    def one(k):
        _, p0 = net.init(k, x.shape)
        _, h = train.train(net, p0, x, y, steps=20, learning_rate=0.3, x_test=xt,
                           record_every=10)
        return h.test_outputs

    batched = jax.vmap(one)(keys)
    looped = jnp.stack([one(k) for k in keys])
    assert rel_err(batched, looped) <= 10 * RTOL


@ONLY_X32_PASS
def test_sgd_and_momentum_reduce_the_loss_and_history_is_consistent(data):
    x, y, _ = data
    net = net_of(64)
    _, p0 = net.init(jax.random.PRNGKey(3), x.shape)
    for kw in (dict(optimizer="sgd", batch_size=4, key=jax.random.PRNGKey(0)),
               dict(optimizer="momentum", momentum=0.9)):
        _, h = train.train(net, p0, x, y, steps=45, learning_rate=0.1, record_every=10, **kw)
        np.testing.assert_array_equal(np.asarray(h.steps), [0, 10, 20, 30, 40, 45])
        assert float(h.param_change[0]) == 0.0 and float(h.param_change[-1]) > 0.0
        assert float(h.train_loss[-1]) < 0.5 * float(h.train_loss[0])


@ONLY_X32_PASS
def test_wider_networks_move_less(data):
    """||dtheta|| / ||theta0|| and the NTK drift shrink with width (the kernel regime)."""
    x, y, _ = data
    change, drift = [], []
    for width in (64, 1024):
        net = net_of(width)
        _, p0 = net.init(jax.random.PRNGKey(4), x.shape)
        p, h = train.train(net, p0, x, y, steps=50, learning_rate=0.5)
        change.append(float(h.param_change[-1]))
        drift.append(float(train.ntk_drift(net, p0, p, x)))
    # 16x width: theory 1/4 for both; allow noise of one seed
    assert change[1] < 0.5 * change[0] and drift[1] < 0.5 * drift[0], (change, drift)


@ONLY_X64_PASS
def test_bad_arguments(data):
    x, y, _ = data
    net = net_of(8)
    _, p0 = net.init(jax.random.PRNGKey(0), x.shape)
    cases = [(dict(optimizer="rmsprop"), "`optimizer` must be one of"),
             (dict(optimizer="sgd"), "needs a `batch_size`"),
             (dict(optimizer="sgd", batch_size=4), "`key` is required"),
             (dict(batch_size=99, key=jax.random.PRNGKey(0)), r"exceeds the 16"),
             (dict(learning_rate=-1.0), "`learning_rate` must be a positive"),
             (dict(steps=0), "`steps` must be an integer >= 1")]
    for kw, match in cases:
        args = {"steps": 2, "learning_rate": 0.1, **kw}
        with pytest.raises(ValueError, match=match):
            train.train(net, p0, x, y, **args)
    with pytest.raises(ValueError, match=r"`y_train` must have 16 rows"):
        train.train(net, p0, x, y[:3], steps=2, learning_rate=0.1)
    # 1-D targets are one output, as in ntkgp.predict
    _, h1 = train.train(net, p0, x, y[:, 0], steps=2, learning_rate=0.1)
    _, h2 = train.train(net, p0, x, y, steps=2, learning_rate=0.1)
    np.testing.assert_array_equal(np.asarray(h1.train_loss), np.asarray(h2.train_loss))


def test_centered_models_start_at_zero_and_train_like_the_net(data):
    """f_c - y = f - (y + f0): training the centered net on y is training the net on y + f0,
    step for step; the same holds for the centered linearization."""
    x, y, xt = data
    net = net_of(32)
    _, p0 = net.init(jax.random.PRNGKey(4), x.shape)
    c = train.center(net, p0)
    assert float(jnp.abs(c(p0, xt)).max()) == 0.0
    tol = 1e-10 if X64 else 1e-5
    p_net, _ = train.train(net, p0, x, y + net.apply(p0, x), steps=10, learning_rate=0.3)
    p_c, _ = train.train(c, p0, x, y, steps=10, learning_rate=0.3)
    assert rel_err(c(p_c, xt), net.apply(p_net, xt) - net.apply(p0, xt)) <= tol
    lin = train.linearize(net, p0)
    lc = train.center(lin, p0)
    assert float(jnp.abs(lc(p0, xt)).max()) == 0.0
    p_lin, _ = train.train(lin, p0, x, y + net.apply(p0, x), steps=10, learning_rate=0.3)
    p_lc, _ = train.train(lc, p0, x, y, steps=10, learning_rate=0.3)
    assert rel_err(lc(p_lc, xt), lin(p_lin, xt) - net.apply(p0, xt)) <= tol


@ONLY_X64_PASS  # power iteration against eigh: one pass suffices
def test_default_learning_rate_is_half_the_stable_step(data):
    """Power iteration on NTK-vector products finds the top eigenvalue of the empirical NTK
    (within 10% after the safety factor); training at the default converges; under vmap each
    seed gets its own step."""
    x, y, xt = data
    net = net_of(64)
    _, p0 = net.init(jax.random.PRNGKey(5), x.shape)
    exact = float(predict.max_learning_rate(empirical.empirical_ntk_fn(net)(x, None, p0)))
    lr = float(train.default_learning_rate(net, p0, x))
    assert 0.45 * exact / 1.1 <= lr <= 0.5 * exact, (lr, exact)
    assert np.isclose(float(train.default_learning_rate(net, p0, x, momentum=0.9)), 0.1 * lr,
                      rtol=1e-5)
    _, h = train.train(net, p0, x, y, steps=50)
    assert np.isclose(float(h.learning_rate), lr, rtol=1e-5)
    assert h.train_loss[-1] < 0.5 * h.train_loss[0]

    def one(k):
        _, p = net.init(k, x.shape)
        return train.train(net, p, x, y, steps=5)[1].learning_rate

    lrs = jax.vmap(one)(jax.random.split(jax.random.PRNGKey(0), 3))
    assert lrs.shape == (3,) and len(set(np.round(np.asarray(lrs), 6))) == 3


def test_linearized_cross_entropy_training_converges_to_the_function_space_ode(data):
    """Gradient descent on softmax cross-entropy of the linearized net is the Euler scheme of
    the ODE df/dt = -Theta grad_f L with its empirical NTK (full K x K output blocks): the gap
    to `predict.gradient_descent` at t = lr * steps halves with the step size."""
    x, _, xt = data
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0).astype(int)
    y = np.eye(3, dtype=DTYPE)[labels]
    net = nn.serial(nn.Dense(64), nn.Erf(), nn.Dense(3))
    _, p0 = net.init(jax.random.PRNGKey(2), x.shape)
    lin = train.linearize(net, p0)
    ntk = empirical.empirical_ntk_fn(net, trace_axes=())
    ode = predict.gradient_descent(train.cross_entropy_loss, ntk(x, None, p0), y, trace_axes=())
    t = 4.0
    _, want = ode(t, net.apply(p0, x), net.apply(p0, xt), ntk(xt, x, p0))
    gaps = []
    for lr in (0.4, 0.2):
        _, hist = train.train(lin, p0, x, y, steps=int(round(t / lr)), learning_rate=lr,
                              x_test=xt, loss="xent")
        gaps.append(rel_err(hist.test_outputs[-1], want))
    assert gaps[0] < 0.05 and 1.6 <= gaps[0] / gaps[1] <= 2.4, gaps
    assert float(hist.train_loss[-1]) < float(hist.train_loss[0])


def test_loss_choice_and_its_errors(data):
    x, y, _ = data
    net = net_of(16)
    _, p0 = net.init(jax.random.PRNGKey(0), x.shape)
    _, h_named = train.train(net, p0, x, y, steps=3, learning_rate=0.1, loss="mse")
    _, h_fn = train.train(net, p0, x, y, steps=3, learning_rate=0.1, loss=train.mse_loss)
    np.testing.assert_array_equal(h_named.train_loss, h_fn.train_loss)
    with pytest.raises(ValueError, match="loss"):
        train.train(net, p0, x, y, steps=3, loss="hinge")
    with pytest.raises(TypeError, match="scalar"):
        train.train(net, p0, x, y, steps=3, loss=lambda f, t: (f - t) ** 2)
    # a loss given as a function: its curvature at the initial outputs, by power iteration
    lr_mse = float(train.default_learning_rate(net, p0, x))
    lr_fn = float(train.default_learning_rate(net, p0, x, loss=train.mse_loss))
    assert abs(lr_fn / lr_mse - 1) < 1e-3


def test_curvature_bounds_hold_however_sharp_the_probabilities():
    """The named losses' bounds are the top eigenvalue of the output Hessian: exact for the
    squared error; for cross-entropy 1/(2N), above the curvature at uniform probabilities
    (1/(NK)) and at any logits, and reached by a two-class split."""
    n, k = 5, 4
    y = np.eye(k, dtype=DTYPE)[np.arange(n) % k]
    f0 = jnp.zeros((n, k), DTYPE)
    assert abs(float(train.loss_curvature(train.mse_loss, f0, y)) * n * k - 1) < 1e-4
    assert train.curvature_bound("mse", n, k) == 1 / (n * k)
    bound = train.curvature_bound("xent", n, k)
    assert abs(float(train.loss_curvature(train.cross_entropy_loss, f0, y)) * n * k - 1) < 1e-3
    rng = np.random.default_rng(0)
    for scale in (1.0, 5.0, 30.0):
        f = jnp.asarray(scale * rng.standard_normal((n, k)), DTYPE)
        assert float(train.loss_curvature(train.cross_entropy_loss, f, y)) <= bound * (1 + 1e-4)
    split = jnp.asarray(np.tile([0.0, 0.0, -50.0, -50.0], (n, 1)), DTYPE)  # p = (1/2, 1/2, 0, 0)
    assert abs(float(train.loss_curvature(train.cross_entropy_loss, split, y)) / bound - 1) < 1e-3


def test_taylor_expand_against_closed_forms(data):
    """Degree 1 is the linearization; a two-layer linear network is quadratic in its
    parameters (degree 2 exact); sin(p x) matches its series to third order."""
    x, _, xt = data
    net = net_of(32)
    _, p0 = net.init(jax.random.PRNGKey(0), x.shape)
    _, p1 = net.init(jax.random.PRNGKey(1), x.shape)
    near = jax.tree.map(lambda a, b: a + 0.1 * (b - a), p0, p1)
    assert rel_err(train.taylor_expand(net, p0, 1)(near, xt),
                   train.linearize(net, p0)(near, xt)) <= RTOL
    assert rel_err(train.taylor_expand(net, p0, 0)(near, xt), net.apply(p0, xt)) == 0

    def two_linear(p, xx):
        return xx @ p["a"] @ p["b"]

    rng = np.random.default_rng(3)
    q0 = {"a": jnp.asarray(rng.standard_normal((3, 4)), DTYPE),
          "b": jnp.asarray(rng.standard_normal((4, 2)), DTYPE)}
    q1 = jax.tree.map(lambda a: a + jnp.asarray(rng.standard_normal(a.shape), DTYPE), q0)
    assert rel_err(train.taylor_expand(two_linear, q0, 2)(q1, x), two_linear(q1, x)) <= RTOL
    a, d = 0.7 * x[:, 0], 0.3 * x[:, 0]  # p0 = 0.7, p = 1.0
    series = np.sin(a) + np.cos(a) * d - np.sin(a) * d ** 2 / 2 - np.cos(a) * d ** 3 / 6
    got = train.taylor_expand(lambda p, xx: jnp.sin(p * xx[:, 0]), 0.7, 3)(1.0, x)
    assert rel_err(got, series) <= 10 * RTOL
    with pytest.raises(ValueError, match="degree"):
        train.taylor_expand(net, p0, -1)
