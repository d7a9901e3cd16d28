"""The SGD-vs-Bayes experiment: orthant probabilities (EP, GHK) against closed forms and brute
force, the frequency estimator, and the vmapped slots of SGD runs against a Python loop."""

import collections
import itertools
import json
import math
import warnings

import jax
import numpy as np
import optax
import pytest

from ntkgp import experiments, nn
from ntkgp._src.experiments import sgd_runs
from ntkgp.cli import main
from ntkgp.predict import log_orthant_probability
from tests.conftest import ONLY_X32_PASS, ONLY_X64_PASS


def _random_cov(rng, n):
    a = rng.standard_normal((n, n + 2))
    return a @ a.T


@ONLY_X64_PASS  # NumPy float64 whatever JAX's dtype
@pytest.mark.parametrize("n", [1, 2, 3])
def test_ep_and_ghk_match_closed_forms(n, rng):
    """Sheppard's formula (n=2) and its 3-D analogue; EP is not exact even here (its error on
    2-D orthants of correlated Gaussians is known to be about 1%), GHK is unbiased."""
    for _ in range(4):
        k = _random_cov(rng, n)
        s = rng.choice([-1, 1], n)
        exact = log_orthant_probability(k, s, method="exact").log_p
        ep = log_orthant_probability(k, s, method="ep").log_p
        ghk = log_orthant_probability(k, s, method="ghk", samples=40000, seed=1)
        assert abs(ep - exact) < 0.02, (ep, exact)
        assert abs(ghk.log_p - exact) < 4 * ghk.stderr + 1e-12, (ghk, exact)
    # independent points: P = 2^-n exactly, for every method
    for method in ("exact", "ep", "ghk"):
        lp = log_orthant_probability(np.diag(rng.random(n) + 0.5), rng.choice([-1, 1], n),
                                     method=method).log_p
        assert math.isclose(lp, -n * math.log(2), abs_tol=1e-9)


@ONLY_X64_PASS  # NumPy float64 whatever JAX's dtype
def test_posterior_of_a_tiny_problem_matches_brute_force():
    """3 bits, |S| = 4: P_B(f|S) of all 16 held-out functions against the frequencies of
    2,000,000 draws of the NNGP prior conditioned on sign(g_S) = y_S (about 80,000 kept).
    Tolerance: 0.05 in log (EP's own bias, about 2% here) plus 3 Monte-Carlo standard
    errors."""
    p = experiments.boolean_problem(3, "and_or", n_train=4, seed=1)
    net = experiments.default_net(8)
    k = np.asarray(net.kernel(p.x, None, "nngp"), np.float64)
    g = np.random.default_rng(0).multivariate_normal(np.zeros(8), k, size=2_000_000,
                                                     method="cholesky")
    keep = np.all(np.sign(g[:, p.train]) == p.y[p.train], axis=1)
    codes = (g[keep][:, p.test] > 0).astype(int) @ (2 ** np.arange(4)[::-1])
    counts = np.bincount(codes, minlength=16)
    funcs = experiments.pack_functions(np.array(list(itertools.product([0, 1], repeat=4)),
                                                bool))
    log_pb = experiments.bayes_log_probabilities(net, p, funcs, show_progress=False).log_p
    se = 1 / np.sqrt(counts)
    assert np.all(np.abs(np.log(counts / keep.sum()) - log_pb) < 0.05 + 3 * se)
    assert abs(np.exp(log_pb).sum() - 1) < 0.03           # EP is not normalized exactly
    # the unbiased sampler needs no allowance for a bias: its own error bar and the counts'
    tilted = experiments.bayes_log_probabilities(net, p, funcs, method="tilted",
                                                 samples=20000, show_progress=False)
    assert np.all(tilted.stderr > 0) and np.all(tilted.stderr < 0.05)
    assert np.all(np.abs(np.log(counts / keep.sum()) - tilted.log_p)
                  < 3 * se + 4 * tilted.stderr)
    assert abs(np.exp(tilted.log_p).sum() - 1) < 0.02
    # functions drawn from P_B itself come with the brute-force frequencies
    drawn, n_drawn, ess = experiments.sample_posterior_functions(net, p, 40000, seed=2)
    assert ess > 0.5 * 4 * 40000                       # the tilted proposal is nearly exact
    freq = counts / keep.sum()
    got = np.array([dict(zip(drawn, n_drawn)).get(f, 0) for f in funcs]) / 40000
    bound = 4 * np.sqrt(freq * (1 - freq) * (1 / 40000 + 1 / keep.sum())) + 1e-3
    assert np.all(np.abs(got - freq) < bound), (got, freq)
    # the evidence P(sign g_S = y_S) itself
    ep_s = log_orthant_probability(k[np.ix_(p.train, p.train)], p.y[p.train]).log_p
    assert abs(ep_s - math.log(keep.mean())) < 0.03


@ONLY_X64_PASS  # NumPy float64 whatever JAX's dtype
def test_ep_agrees_with_ghk_on_the_full_problem():
    """7 bits, the whole 128-point orthant of the majority function: EP and the unbiased GHK
    estimator (with the Genz ordering) agree within GHK's error."""
    p = experiments.boolean_problem(7, "majority")
    k = np.asarray(experiments.default_net(8).kernel(p.x, None, "nngp"), np.float64)
    ep = log_orthant_probability(k, p.y).log_p
    ghk = log_orthant_probability(k, p.y, method="ghk", samples=20000)
    assert abs(ep - ghk.log_p) < 4 * ghk.stderr + 0.05, (ep, ghk)


@ONLY_X64_PASS  # NumPy float64 whatever JAX's dtype
def test_orthant_errors():
    k = np.eye(3)
    with pytest.raises(ValueError, match="only -1 and \\+1"):
        log_orthant_probability(k, [0, 1, 1])
    with pytest.raises(ValueError, match="shape \\(3,\\)"):
        log_orthant_probability(k, [1, 1])
    with pytest.raises(ValueError, match="square"):
        log_orthant_probability(np.ones((3, 2)), [1, 1, 1])
    with pytest.raises(ValueError, match="NaN"):
        log_orthant_probability(np.full((2, 2), np.nan), [1, 1])
    with pytest.raises(ValueError, match="zero prior variance"):
        log_orthant_probability(np.diag([1.0, 0.0]), [1, 1])
    with pytest.raises(ValueError, match="up to 3 points"):
        log_orthant_probability(np.eye(4), [1] * 4, method="exact")
    with pytest.raises(ValueError, match="method"):
        log_orthant_probability(k, [1, 1, 1], method="magic")


@ONLY_X64_PASS  # NumPy float64 whatever JAX's dtype
def test_frequencies_and_function_names(rng):
    bits = rng.random((200, 11)) < 0.2
    names = experiments.pack_functions(bits)
    funcs, counts = experiments.function_frequencies(names)
    want = collections.Counter(map(tuple, bits))
    assert sum(counts) == 200 and len(funcs) == len(want)
    assert list(counts) == sorted(counts, reverse=True)
    for f, c in zip(funcs, counts):
        signs = experiments.unpack_function(f, 11)
        assert want[tuple(signs > 0)] == c


def test_problem_and_errors():
    p = experiments.boolean_problem(5, "majority", n_train=20, seed=3)
    assert p.x.shape == (32, 5) and np.array_equal(np.sort(np.r_[p.train, p.test]),
                                                   np.arange(32))
    assert np.array_equal(p.y > 0, p.x.sum(1) >= 3)
    q = experiments.boolean_problem(3, lambda x: x[:, 2] == 0, n_train=4)
    assert np.array_equal(q.y > 0, q.x[:, 2] == 0)
    with pytest.raises(ValueError, match="n_train < 2\\*\\*n_bits = 8"):
        experiments.boolean_problem(3, n_train=8)
    with pytest.raises(ValueError, match="target"):
        experiments.boolean_problem(3, "xor3", n_train=4)
    with pytest.raises(ValueError, match="one label per point"):
        experiments.boolean_problem(3, lambda x: x[:2, 0] > 0, n_train=4)
    with pytest.raises(ValueError, match="one output"):
        experiments.sgd_vs_bayes(experiments.boolean_problem(3, n_train=4),
                                 make_net=lambda w: nn.serial(nn.Dense(w), nn.Relu(),
                                                              nn.Dense(2)), runs=2)
    with pytest.raises(ValueError, match="optimizer"):
        experiments.sgd_vs_bayes(experiments.boolean_problem(3, n_train=4), optimizers=["lbfgs"])
    with pytest.raises(ValueError, match="batch_size"):
        experiments.sample_sgd_functions(experiments.default_net(8),
                                         experiments.boolean_problem(3, n_train=4), batch_size=5)


def _python_loop(net, run, seed, x, y, x_test, lr, batch_size, max_epochs):
    """Run ``run`` written as a plain Python loop over epochs and steps (one jitted gradient
    step), from the keys documented for it; returns the held-out signs, the epochs run and
    whether S was fitted."""
    opt = optax.sgd(lr)
    k_init, k_train = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), run))

    @jax.jit
    def step(p, s, xb, yb):
        g = jax.grad(lambda q: 0.5 * jax.numpy.mean((net.apply(q, xb)[:, 0] - yb) ** 2))(p)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s

    def fits(p):
        return bool(np.all(np.asarray(net.apply(p, x))[:, 0] * np.asarray(y) > 0))

    p = net.init(k_init, x.shape)[1]
    s, n, epochs = opt.init(p), x.shape[0], 0
    nb = n // batch_size
    while not fits(p) and epochs < max_epochs:
        order = np.asarray(jax.random.permutation(jax.random.fold_in(k_train, epochs), n))
        for idx in order[: nb * batch_size].reshape(nb, batch_size):
            p, s = step(p, s, x[idx], y[idx])
        epochs += 1
    return np.asarray(net.apply(p, x_test))[:, 0] > 0, epochs, fits(p)


@ONLY_X64_PASS  # the same updates in both dtypes: runs through slots against a Python loop
def test_runs_through_slots_equal_a_python_loop_whatever_the_slot_count(monkeypatch):
    """Each run stops at its first fitting epoch and its slot takes the next run; whatever
    the number of slots, run ``i`` is the plain loop from ``fold_in(PRNGKey(seed), i)``."""
    p = experiments.boolean_problem(4, "and_or", n_train=10, seed=0)
    net = experiments.default_net(16)
    dtype = jax.numpy.result_type(float)
    x, y, xt = (jax.numpy.asarray(a, dtype) for a in (p.x[p.train], p.y[p.train], p.x[p.test]))
    lr, bs, max_epochs, runs = 0.5, 5, 12, 9
    want = [_python_loop(net, r, 3, x, y, xt, lr, bs, max_epochs) for r in range(runs)]
    assert len({w[1] for w in want}) > 2 and not all(w[2] for w in want)  # runs differ
    seen, real = {}, sgd_runs._Groups.stopped
    monkeypatch.setattr(sgd_runs._Groups, "stopped", lambda self, r, f, e, sg: (
        seen.__setitem__(r, (sg, e, f)), real(self, r, f, e, sg))[1])
    for slots in (1, 4, 9):
        seen.clear()
        got = experiments.sample_sgd_functions(net, p, runs=runs, batch_size=bs,
                                               learning_rate=lr, max_epochs=max_epochs,
                                               seed=3, chunk=slots, show_progress=False)
        assert sorted(seen) == list(range(runs))
        for r, (signs, epochs, fitted) in enumerate(want):
            assert seen[r][1:] == (epochs, fitted)
            np.testing.assert_array_equal(seen[r][0], signs)
        assert got.fitted == sum(w[2] for w in want)
        fitted_epochs = [w[1] for w in want if w[2]]
        assert got.mean_epochs == pytest.approx(np.mean(fitted_epochs))


@ONLY_X32_PASS
def test_sample_counts_and_runs_that_do_not_fit():
    p = experiments.boolean_problem(4, "parity", n_train=12, seed=0)
    net = experiments.default_net(16)
    s = experiments.sample_sgd_functions(net, p, runs=32, batch_size=4, max_epochs=1,
                                         chunk=16, show_progress=False)
    assert s.runs == 32 and sum(s.counts) == s.fitted < 32    # parity is not fitted in 1 epoch
    assert all(len(f) == 2 for f in s.functions)             # 4 held-out points: one byte


@ONLY_X64_PASS  # the float32 workflow runs in the CLI test (float32 without --x64)
def test_sgd_vs_bayes_end_to_end_json_and_plot(tmp_path):
    p = experiments.boolean_problem(5, "first_bit", n_train=24, seed=0)
    r = experiments.sgd_vs_bayes(p, widths=[32], batch_sizes=[8], optimizers=["sgd", "adam"],
                                 runs=200, max_epochs=300, show_progress=False)
    assert [(row.width, row.optimizer) for row in r.rows] == [(32, "sgd"), (32, "adam")]
    for row in r.rows:
        assert row.fitted == sum(row.counts) and row.fitted > 150
        assert 0 < row.top_mass_sgd <= 1 and 0 <= row.top_mass_b <= 1
        with_pb = [b for c, b in zip(row.counts, row.log_p_b) if c >= 2]
        assert with_pb and all(b is not None and b < 0 for b in with_pb)
        assert row.correlation is None or -1 <= row.correlation <= 1
        if row.correlation is not None:   # least squares, with bootstrap intervals around it
            have = [(c, b) for c, b in zip(row.counts, row.log_p_b) if b is not None]
            want = np.polyfit([b for _, b in have], np.log([c / row.fitted for c, _ in have]),
                              1)[0]
            assert abs(row.slope - want) < 1e-9
            assert row.slope_ci[0] < row.slope < row.slope_ci[1]
            assert row.correlation_ci[0] < row.correlation < row.correlation_ci[1]
    # the target itself is a simple function: SGD and the posterior both favour it
    top = r.rows[0].functions[0]
    assert experiments.unpack_function(top, p.test.size).tolist() == p.y[p.test].tolist()
    back = experiments.SGDBayesResult.from_json(r.to_json())
    assert back == r and json.loads(r.to_json())["rows"][0]["width"] == 32
    assert "corr" in r.table()
    pytest.importorskip("matplotlib")
    fig = experiments.plot_sgd_vs_bayes(r, tmp_path / "s.png")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    fig.clf()


@ONLY_X64_PASS
def test_cli_runs_and_writes_json(tmp_path, capsys):
    with warnings.catch_warnings():   # the CLI prints them: one line each
        warnings.simplefilter("default", RuntimeWarning)
        assert main(["sgd-vs-bayes", "--bits", "4", "--n-train", "10", "--runs", "64",
                     "--widths", "16", "--batch-sizes", "5", "--out", str(tmp_path),
                     "--pb-method", "tilted", "--pb-samples", "2000", "--bayes-baseline",
                     "--quiet"]) == 0
    out, err = capsys.readouterr()
    for line in err.splitlines():
        assert line.startswith("ntkgp sgd-vs-bayes: warning: ") and "did not fit S" in line
    assert "corr" in out and "top-mass" in out
    res = experiments.SGDBayesResult.from_json((tmp_path / "sgd_vs_bayes.json").read_text())
    assert res.rows[0].runs == 64 and res.pb_method == "tilted"
    row = res.rows[0]
    have = [(b, e) for b, e in zip(row.log_p_b, row.log_p_b_stderr) if b is not None]
    assert have and all(0 < e < 0.2 for _, e in have)
    assert [e is None for e in row.log_p_b_stderr] == [b is None for b in row.log_p_b]
    ideal = res.rows[-1]             # --bayes-baseline: 64 functions drawn from P_B itself
    assert len(res.rows) == 3 and ideal.optimizer == "posterior" and ideal.fitted == 64
    assert sum(ideal.counts) == 64 and ideal.batch_size == 0
    assert main(["sgd-vs-bayes", "--bits", "3", "--n-train", "8", "--out",
                 str(tmp_path)]) == 2
    assert "n_train < 2**n_bits" in capsys.readouterr().err


@ONLY_X64_PASS
def test_interrupt_propagates_after_the_callback_has_the_finished_settings(monkeypatch):
    """A KeyboardInterrupt during the second setting's runs propagates; the callback has
    already received the first setting whole."""
    real = sgd_runs._epoch
    calls, seen = [], []

    def flaky(*args, **kwargs):
        calls.append(1)
        if seen:                       # the first setting is done
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sgd_runs, "_epoch", flaky)
    p = experiments.boolean_problem(4, "first_bit", n_train=10)
    with pytest.raises(KeyboardInterrupt):
        experiments.sgd_vs_bayes(p, widths=[16], batch_sizes=[5, 10], runs=40, chunk=20,
                                 show_progress=False,
                                 callback=lambda r: seen.append(len(r.rows)))
    assert seen == [1]


@ONLY_X64_PASS  # a workflow test: the float32 path is the Boolean one's
def test_binarized_images(tmp_path, capsys):
    p = experiments.image_problem("digits", n_train=40, n_test=8, seed=1)
    assert p.x.shape == (48, 64) and set(np.unique(p.y)) == {-1.0, 1.0}
    assert p.train.tolist() == list(range(40)) and p.test.tolist() == list(range(40, 48))
    assert p.target == "digits 0-4 vs 5-9" and np.all((p.x >= 0) & (p.x <= 1))
    images = experiments.image_problem("digits", n_train=40, n_test=8, seed=1, flatten=False)
    np.testing.assert_array_equal(images.x.reshape(48, -1), p.x)
    with pytest.raises(ValueError, match="between 1 and 1797"):
        experiments.image_problem("digits", n_train=1790, n_test=50)
    assert main(["sgd-vs-bayes", "--dataset", "digits", "--n-train", "40", "--n-test", "8",
                 "--runs", "64", "--widths", "16", "--batch-sizes", "8", "--optimizers", "sgd",
                 "--moments", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "digits 0-4 vs 5-9 (64 inputs), |S| = 40" in out and "moments:" in out
    cnn = experiments.default_net(4, 1, arch="cnn")             # images (N, 8, 8, 1)
    s = experiments.sample_sgd_functions(cnn, images, runs=8, batch_size=8, max_epochs=200,
                                         show_progress=False)
    assert s.runs == 8 and s.fitted > 0 and all(len(f) == 2 for f in s.functions)
    assert main(["sgd-vs-bayes", "--arch", "cnn", "--out", str(tmp_path)]) == 2
    assert "--arch cnn needs images" in capsys.readouterr().err
    moments = experiments.EnsembleResult.from_json((tmp_path / "moments.json").read_text())
    assert moments.widths == [16] and [r.seeds for r in moments.rows] == [4, 16, 64]
    assert all(0 < r.mean_err < 1 for r in moments.rows)   # the same problem, closed forms
    res = experiments.SGDBayesResult.from_json((tmp_path / "sgd_vs_bayes.json").read_text())
    row = res.rows[0]
    assert res.target == "digits 0-4 vs 5-9" and row.fitted == sum(row.counts) > 0
    assert all(len(f) == 2 for f in row.functions)          # 8 held-out images: one byte


@ONLY_X64_PASS  # NumPy float64 whatever JAX's dtype
def test_posterior_draws_with_a_held_out_point_that_repeats_a_training_point():
    """Its conditional variance is zero: every draw gives it the training point's label."""
    p = experiments.boolean_problem(3, "majority", n_train=5, seed=0)
    x = p.x.copy()
    x[p.test[0]] = x[p.train[0]]
    dup = experiments.BooleanProblem(x, p.y, p.train, p.test, p.target)
    funcs, counts, _ = experiments.sample_posterior_functions(experiments.default_net(8), dup,
                                                              500, seed=1)
    first = [experiments.unpack_function(f, p.test.size)[0] for f in funcs]
    assert sum(counts) == 500 and set(first) == {p.y[p.train[0]]}


@ONLY_X64_PASS
def test_learning_rate_factors_are_settings_of_their_own():
    p = experiments.boolean_problem(4, "first_bit", n_train=10)
    kw = dict(widths=[16], batch_sizes=[5], runs=40, show_progress=False)
    r = experiments.sgd_vs_bayes(p, lr_factors=[0.5, 1], **kw)
    plain = experiments.sgd_vs_bayes(p, **kw).rows[0]
    half, one = r.rows
    assert half.learning_rate == pytest.approx(0.5 * one.learning_rate, rel=1e-12)
    assert one == plain     # factor 1 is the default step (EP's estimates ignore batch-mates)
    assert half.functions != one.functions or half.mean_epochs > one.mean_epochs
    head, *lines = r.table().splitlines()
    assert head.split()[:5] == ["width", "optimizer", "batch", "lr", "fitted"]
    assert f"{half.learning_rate:.3g}" in lines[0] and "decades" in head
    with pytest.raises(ValueError, match="lr_factors"):
        experiments.sgd_vs_bayes(p, lr_factors=[0.0], **kw)


@ONLY_X64_PASS
def test_warnings_say_what_to_change():
    """Runs that never fit S, and a held-out set too large for functions to repeat."""
    hard = experiments.boolean_problem(5, "parity", n_train=12, seed=0)
    with pytest.warns(RuntimeWarning, match="did not fit S within 1 epochs"):
        experiments.sgd_vs_bayes(hard, widths=[8], batch_sizes=[4], runs=16, max_epochs=1,
                                 optimizers=["sgd"], show_progress=False)
    wide = experiments.boolean_problem(7, "majority", n_train=24, seed=0)     # 104 held out
    with pytest.warns(RuntimeWarning, match=r"104 held-out points .* use about 52"):
        r = experiments.sgd_vs_bayes(wide, widths=[8], batch_sizes=[8], runs=8,
                                     optimizers=["sgd"], show_progress=False)
    assert r.rows[0].correlation is None
