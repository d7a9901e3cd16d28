r"""Finite networks against their infinite-width predictions, as width grows.

For each width and seed, one network is trained (`ntkgp.train.train`) and compared with
(a) its own linearized model trained identically (same initialization, same minibatches);
(b) the closed form from *its own* initial outputs with the analytic NTK at the same time
    :math:`t = \eta \times \text{steps}` (`ntkgp.predict.gradient_descent_mse`, exact discrete
    steps, heavy ball for momentum), so that the random initial function cancels. For
    minibatch SGD the closed form is that of full-batch steps, so (b) then also measures the
    minibatch noise, which does not vanish with width;
(c) the ensemble over seeds is compared with `ntkgp.predict.gradient_descent_mse_ensemble`:
    ``ensemble_chi2`` is the mean of :math:`(\bar f - \mu_t)^2 / (\sigma_t^2 / S)` over test
    points and outputs (about 1 when the S networks are draws of the predicted Gaussian: the
    random initial function does not average out over a few seeds, so raw distances would not
    shrink), and ``ensemble_var_ratio`` the mean variance over seeds divided by the predicted
    :math:`\sigma_t^2`;
(d) test errors of trained nets, linearized nets, the NTK ensemble mean and the NNGP posterior
    mean (its noise chosen by marginal likelihood).
Distances are relative, :math:`\|f - g\| / \|g\|` over test points and outputs, and averaged
over seeds as a root mean square. In the kernel regime (a) and (b) fall like
:math:`\text{width}^{-1/2}`.

The parameterization decides whether that regime is reached: in the NTK and the standard
parameterization (trained at a step that shrinks like :math:`1/n`, as its NTK grows like
:math:`n`) the network stays near its linearization as it widens; in the maximal-update one
(μP, mean-field) its features move by :math:`O(1)` at every width and (a) does not vanish.

With ``loss='xent'`` (softmax cross-entropy on one-hot targets) there is no closed form: (b)
is the function-space ODE :math:`\dot f = -\Theta \nabla_f L` (`ntkgp.predict.
gradient_descent`) from each net's own initial outputs, and ``closed_form_floor`` the distance
between that flow and the discrete steps the nets take (the same map with the analytic NTK),
a level (b) cannot fall below at any width; (c) is skipped, and test accuracies are reported,
the infinite-width one from zero initial outputs.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, ClassVar, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ntkgp._src import checks
from ntkgp._src.experiments.metrics import accuracy, rel, rms, rmse, slope
from ntkgp._src.experiments.reference import check_width_independent, discrete_steps, reference
from ntkgp._src.progress import progress_bar
from ntkgp._src.train.losses import get_loss
from ntkgp._src.train.models import center, linearize
from ntkgp._src.train.training import ntk_drift, train
from ntkgp._src.util import RowsJson

DISTANCES = ("dist_net_linearized", "dist_net_closed_form", "param_change", "ntk_drift")
PARAMETERIZATIONS = ("ntk", "standard", "mup")


@dataclasses.dataclass
class WidthResult:
    """Averages over seeds at one width (see `width_sweep`).

    Attributes:
        width: the hidden width.
        dist_net_linearized: (a), relative distance of test outputs, net vs its linearization.
        dist_net_closed_form: (b), net vs the closed form from its own initial outputs.
        param_change: :math:`\\|\\theta_T - \\theta_0\\| / \\|\\theta_0\\|` over all parameters.
        ntk_drift: :math:`\\|\\hat\\Theta_T - \\hat\\Theta_0\\|_F / \\|\\hat\\Theta_0\\|_F` on up to
            64 training points.
        test_rmse_net, test_rmse_linearized: mean over seeds of the test RMSE.
        ensemble_chi2, ensemble_var_ratio: (c); ``None`` for centered networks or one seed.
        train_loss_net, train_loss_closed_form: mean training loss over seeds at each step of
            `SweepResult.curve_steps`.
        example_net, example_closed_form: seed 0's test outputs (M x K, flattened).
        test_acc_net, test_acc_linearized, test_acc_closed_form: mean test accuracies
            (``loss='xent'`` only).
        learning_rate, test_rmse_ntk: this width's step and infinite-width test error
            (``parameterization='standard'`` only, where they change with the width).
    """

    width: int
    dist_net_linearized: float
    dist_net_closed_form: float
    param_change: float
    ntk_drift: float
    test_rmse_net: float
    test_rmse_linearized: float
    ensemble_chi2: Optional[float]
    ensemble_var_ratio: Optional[float]
    train_loss_net: list = dataclasses.field(default_factory=list)
    train_loss_closed_form: list = dataclasses.field(default_factory=list)
    example_net: list = dataclasses.field(default_factory=list)
    example_closed_form: list = dataclasses.field(default_factory=list)
    test_acc_net: Optional[float] = None
    test_acc_linearized: Optional[float] = None
    test_acc_closed_form: Optional[float] = None
    learning_rate: Optional[float] = None
    test_rmse_ntk: Optional[float] = None


@dataclasses.dataclass
class SweepResult(RowsJson):
    """Plain data of a width sweep; ``to_json``/``from_json`` round-trip it (standard JSON:
    missing values are ``null``).

    Attributes:
        widths, seeds, steps, learning_rate, t: the settings (``t = learning_rate * steps``).
        optimizer, batch_size, momentum, centered: how the networks were trained.
        rows: one `WidthResult` per finished width.
        test_rmse_ntk: test RMSE of the infinite-width NTK ensemble mean at time ``t``.
        test_rmse_nngp: test RMSE of the NNGP posterior mean, with the observation noise
            ``nngp_noise`` (relative to the mean diagonal) of the largest marginal likelihood.
        slopes: log-log slope against width of each distance, fitted by least squares
            (``None`` with fewer than two widths).
        curve_steps: the steps at which training losses are recorded.
        y_test: the test targets (flattened), for plots.
        info: free-form labels (dataset, architecture) set by the caller.
        loss: ``'mse'`` or ``'xent'``.
        test_acc_ntk, test_acc_nngp: test accuracies at infinite width (``'xent'``: the ODE
            from zero outputs, and the NNGP posterior mean of the one-hot targets).
        closed_form_floor: (``'xent'``) relative distance of the ODE to the discrete steps
            with the analytic NTK, on seed 0's test outputs.
        alpha: the laziness scale (``None``: unscaled).
        parameterization: ``'ntk'``, ``'standard'`` (then ``learning_rate``, ``t`` and
            ``test_rmse_ntk`` are the first width's; each row has its own) or ``'mup'``.
    """

    ROW: ClassVar[type] = WidthResult

    widths: list
    seeds: int
    steps: int
    learning_rate: float
    t: float
    rows: list
    test_rmse_ntk: float
    test_rmse_nngp: float
    slopes: dict
    nngp_noise: Optional[float] = None
    optimizer: str = "gd"
    batch_size: Optional[int] = None
    momentum: float = 0.0
    centered: bool = False
    curve_steps: list = dataclasses.field(default_factory=list)
    y_test: list = dataclasses.field(default_factory=list)
    info: dict = dataclasses.field(default_factory=dict)
    loss: str = "mse"
    test_acc_ntk: Optional[float] = None
    test_acc_nngp: Optional[float] = None
    closed_form_floor: Optional[float] = None
    alpha: Optional[float] = None
    parameterization: str = "ntk"




def _scaled(f, alpha):
    def g(p, x):
        return alpha * f(p, x)
    return g


def width_sweep(make_net: Callable[[int], object], widths: Sequence[int], x_train, y_train,
                x_test, y_test, *, seeds: int = 4, steps: int = 500,
                learning_rate: Optional[float] = None, optimizer: str = "gd",
                batch_size: Optional[int] = None, momentum: float = 0.9,
                centered: bool = False, diag_reg: float = 0.0, loss: str = "mse",
                alpha: Optional[float] = None, parameterization: str = "ntk", key=None,
                show_progress: bool = True, info: Optional[dict] = None,
                callback: Optional[Callable[[SweepResult], None]] = None) -> SweepResult:
    r"""Train networks of several widths and compare them with their linearizations and the
    infinite-width closed forms.

    Args:
        make_net: ``make_net(width)`` returns an ``ntkgp.nn`` network in the NTK
            parameterization (its analytic kernel must not depend on the width), or with
            ``parameterization='standard'`` in the standard one.
        widths: hidden widths, e.g. ``[64, 256, 1024]``.
        x_train: inputs of shape ``(N, d)``; y_train: targets ``(N, K)`` or ``(N,)``.
        x_test: inputs ``(M, d)``; y_test: targets ``(M, K)`` or ``(M,)``.
        seeds: networks per width, trained one after another in one compiled program
            (``lax.map``: ``vmap``-ed convolutions run as slow grouped ones on CPU).
        steps: optimizer steps.
        learning_rate: :math:`\eta`; default half of `max_learning_rate` of the analytic NTK
            (times :math:`1-\beta` for ``'momentum'``, so that the effective step
            :math:`\eta/(1-\beta)` is gradient descent's).
        optimizer: ``'gd'`` (full batch), ``'sgd'`` (needs ``batch_size``) or ``'momentum'``.
        batch_size: minibatch size for ``'sgd'`` (optional for ``'momentum'``).
        momentum: heavy-ball coefficient for ``'momentum'``.
        centered: train :math:`f(x,\theta) - f(x,\theta_0)` (`ntkgp.train.center`); then (b)
            compares each network with the deterministic NTK mean, and (c) is skipped.
        diag_reg: regularization of the closed forms (0: exact).
        alpha: the laziness scale of Chizat et al. (2019): train
            :math:`\alpha\,(f(x,\theta) - f(x,\theta_0))` on the loss divided by
            :math:`\alpha^2` (implies ``centered``). Its function-space dynamics in the tangent
            space do not depend on :math:`\alpha`; large :math:`\alpha` keeps the network
            there (lazy), small :math:`\alpha` takes it out.
        parameterization: how the width enters training.

            * ``'ntk'``: as built; the analytic kernels do not depend on the width.
            * ``'standard'``: ``make_net`` builds standard-parameterization layers, whose NTK
              grows with the width: the kernels, the default step (so about
              :math:`1/n`) and the closed forms are computed for each width, and each row
              records its ``learning_rate`` and ``test_rmse_ntk``.
            * ``'mup'``: the maximal-update parameterization (Yang & Hu 2021; mean-field for
              one hidden layer) of the NTK-parameterized ``make_net``: its output multiplied
              by :math:`n^{-1/2}` and the loss by :math:`n` (the step on the loss :math:`n`
              times larger). For (S)GD this is exactly the abc-parameterization of μP (the
              weights' initial scale and per-layer step depend on :math:`n` only through
              these two products), i.e. the laziness scale :math:`\alpha = n^{-1/2}`
              without centering. The tangent-space dynamics are those of the NTK at step
              :math:`\eta`; the network learns features, and (a) does not vanish with the
              width. (c) is skipped: the initial function vanishes like :math:`n^{-1/2}`.
        loss: ``'mse'`` or ``'xent'`` (softmax cross-entropy; targets one-hot, ``'gd'`` or
            ``'sgd'``; the default step is scaled by :math:`\min(1, 2/K)`, as the softmax's
            curvature reaches :math:`K/2` times the squared error's: `curvature_bound`).
        key: PRNG key of the initializations and minibatches.
        show_progress: a progress bar over widths.
        info: labels stored in the result (e.g. ``{'dataset': 'diabetes'}``).
        callback: called with the partial `SweepResult` after each width (to save finished
            work as it comes).

    Returns:
        A `SweepResult`.

    Raises:
        ValueError: for bad shapes or options, or a width-dependent analytic kernel outside
        ``parameterization='standard'``.

    References:
        Yang & Hu 2021, "Tensor Programs IV: Feature learning in infinite-width neural
        networks", https://arxiv.org/abs/2011.14522.
    """
    widths = [checks.check_positive_int(w, "widths") for w in widths]
    if not widths:
        raise ValueError("`widths` must list at least one width, e.g. [64, 256, 1024].")
    seeds = checks.check_positive_int(seeds, "seeds")
    steps = checks.check_positive_int(steps, "steps")
    checks.check_choice(optimizer, "optimizer", checks.OPTIMIZERS[:3])  # closed forms
    checks.check_choice(loss, "loss", ("mse", "xent"))
    checks.check_choice(parameterization, "parameterization", PARAMETERIZATIONS)
    if loss == "xent" and optimizer == "momentum":
        raise ValueError("loss='xent' is compared with gradient flow: use optimizer='gd' or "
                         "'sgd' (the discrete heavy ball has no flow to match).")
    loss_fn = get_loss(loss)
    if alpha is not None:
        alpha = checks.check_scalar(alpha, "alpha")
        if not alpha > 0:
            raise ValueError(f"`alpha` must be > 0 (the laziness scale); got {alpha!r}.")
        if parameterization != "ntk":
            raise ValueError("`alpha` scales an NTK-parameterized network; "
                             f"parameterization={parameterization!r} sets its own scale: drop "
                             "one of them.")
        centered = True
    beta = float(momentum) if optimizer == "momentum" else 0.0
    if optimizer == "sgd" and batch_size is None:
        raise ValueError("optimizer='sgd' needs a `batch_size`; use optimizer='gd' for full "
                         "batches.")
    x_train, x_test = checks.check_inputs(x_train, x_test, ndim=None)  # vectors or images
    y_train = checks.check_targets(y_train, x_train.shape[0])[0].astype(x_train.dtype)
    y_test = checks.check_targets(y_test, x_test.shape[0], "y_test")[0].astype(x_train.dtype)
    key = jax.random.PRNGKey(0) if key is None else key
    per_width = parameterization == "standard"
    if not per_width:
        check_width_independent(make_net, widths, x_train[:4])

    def infinite(width):
        return reference(make_net(width), x_train, y_train, x_test, y_test, steps=steps,
                         loss=loss, loss_fn=loss_fn, learning_rate=learning_rate,
                         momentum=beta, diag_reg=diag_reg,
                         ensemble=not centered and parameterization != "mup")

    ref = infinite(widths[0])
    record_every = max(1, steps // 25)
    result = SweepResult(widths=widths, seeds=seeds, steps=steps,
                         learning_rate=ref.learning_rate, t=ref.t, rows=[],
                         test_rmse_ntk=ref.test_rmse_ntk, test_rmse_nngp=ref.test_rmse_nngp,
                         nngp_noise=ref.nngp_noise, slopes={}, optimizer=optimizer,
                         batch_size=batch_size, momentum=beta, centered=bool(centered),
                         y_test=np.ravel(y_test).tolist(), info=dict(info or {}), loss=loss,
                         test_acc_ntk=ref.test_acc_ntk, test_acc_nngp=ref.test_acc_nngp,
                         alpha=alpha, parameterization=parameterization)
    keys = jax.random.split(key, seeds)
    for i, width in enumerate(progress_bar(widths, total=len(widths), desc="widths",
                                           enabled=show_progress)):
        net = make_net(width)
        if per_width and i:
            ref = infinite(width)
        lr = ref.learning_rate
        scale = width ** -0.5 if parameterization == "mup" else (alpha or 1.0)
        kw = dict(steps=steps, learning_rate=lr, optimizer=optimizer, batch_size=batch_size,
                  momentum=beta, record_every=record_every,
                  loss=loss if scale == 1.0 else (lambda f, y: loss_fn(f, y) / scale ** 2))

        def one(k, net=net, scale=scale, kw=kw):
            k_init, k_batch = jax.random.split(k)
            _, p0 = net.init(k_init, x_train.shape)
            model = center(net, p0) if centered else net.apply
            lin = linearize(net, p0)
            lin = center(lin, p0) if centered else lin
            if scale != 1.0:
                model, lin = _scaled(model, scale), _scaled(lin, scale)
            p, hist = train(model, p0, x_train, y_train, x_test=x_test, key=k_batch, **kw)
            p_lin, _ = train(lin, p0, x_train, y_train, key=k_batch, **kw)
            return (model(p0, x_train), model(p0, x_test), model(p, x_test),
                    lin(p_lin, x_test), hist, p0, p)

        f0_tr, f0_te, f_net, f_lin, hist, p0s, ps = jax.jit(lambda k: jax.lax.map(one, k))(keys)
        times = lr * np.asarray(hist.steps[0], np.float64)
        closed_train, closed_test = [], []
        for s in range(seeds):
            tr, te = ref.closed(times, f0_tr[s], f0_te[s], ref.k_td.ntk)
            closed_train.append(np.asarray(tr, np.float64))
            closed_test.append(np.asarray(te[-1], np.float64))
        curve = jax.vmap(lambda f: loss_fn(f, y_train))
        closed_loss = np.mean([np.asarray(curve(jnp.asarray(c, y_train.dtype)), np.float64)
                               for c in closed_train], axis=0)
        if loss == "xent" and result.closed_form_floor is None:
            steps_te = discrete_steps(loss_fn, ref.k_dd.ntk, ref.k_td.ntk, y_train, f0_tr[0],
                                      f0_te[0], lr, steps)
            result.closed_form_floor = rel(steps_te, closed_test[0])  # the flow at t
        drift = [float(ntk_drift(net, jax.tree.map(lambda a: a[s], p0s),
                                 jax.tree.map(lambda a: a[s], ps), x_train[:64]))
                 for s in range(seeds)]
        f_net64 = np.asarray(f_net, np.float64)
        chi2 = var_ratio = None
        if ref.var is not None:
            chi2 = float(np.mean((f_net64.mean(0) - np.asarray(ref.mean, np.float64)) ** 2
                                 / (ref.var / seeds)))
            if seeds > 1:
                var_ratio = float(np.mean(np.var(f_net64, 0, ddof=1)) / np.mean(ref.var))
        result.rows.append(WidthResult(
            width=width,
            dist_net_linearized=rms([rel(f_net[s], f_lin[s]) for s in range(seeds)]),
            dist_net_closed_form=rms([rel(f_net[s], closed_test[s]) for s in range(seeds)]),
            param_change=float(np.mean(np.asarray(hist.param_change[:, -1]))),
            ntk_drift=float(np.mean(drift)),
            test_rmse_net=float(np.mean([rmse(f_net[s], y_test) for s in range(seeds)])),
            test_rmse_linearized=float(np.mean([rmse(f_lin[s], y_test) for s in range(seeds)])),
            ensemble_chi2=chi2, ensemble_var_ratio=var_ratio,
            train_loss_net=(scale ** 2 * np.mean(np.asarray(hist.train_loss, np.float64),
                                                 0)).tolist(),
            train_loss_closed_form=closed_loss.tolist(),
            example_net=np.ravel(f_net64[0]).tolist(),
            example_closed_form=np.ravel(closed_test[0]).tolist(),
            **(dict(learning_rate=lr, test_rmse_ntk=ref.test_rmse_ntk) if per_width else {}),
            **(dict(test_acc_net=float(np.mean([accuracy(f, y_test) for f in f_net])),
                    test_acc_linearized=float(np.mean([accuracy(f, y_test) for f in f_lin])),
                    test_acc_closed_form=float(np.mean([accuracy(c, y_test)
                                                        for c in closed_test])))
               if loss == "xent" else {})))
        result.curve_steps = np.asarray(hist.steps[0]).tolist()
        done = [r.width for r in result.rows]
        result.slopes = {name: slope(done, [getattr(r, name) for r in result.rows])
                         for name in DISTANCES}
        if callback is not None:
            callback(result)
    return result
