"""Random features: their kernels converge to the exact NNGP/NTK like 1/sqrt(n_features), are
unbiased where the construction is (one hidden layer), and the posterior solved on them equals
the exact posterior of the feature kernel."""

import functools
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkgp import features, linalg, nn, predict
from ntkgp._src.features import rules
from ntkgp.kernels import Kernel
from tests.conftest import DTYPE, ONLY_X64_PASS, X64, frob_err

RNG = np.random.default_rng(0)
X1 = RNG.normal(size=(12, 5)).astype(DTYPE)
X2 = RNG.normal(size=(9, 5)).astype(DTYPE)

NETS = {
    "relu2": nn.serial(nn.Dense(64, 1.5, 0.1), nn.Relu(), nn.Dense(64, 1.3, 0.2), nn.Relu(),
                       nn.Dense(1, 1.2, 0.05)),
    "erf": nn.serial(nn.Dense(64, 1.5, 0.1), nn.Erf(), nn.Dense(1, 1.2, 0.05)),
    "gelu": nn.serial(nn.Dense(64, 1.5, 0.1), nn.Gelu(), nn.Dense(1, 1.2, 0.05)),
    "residual": nn.serial(nn.Dense(64), nn.FanOut(2),
                          nn.parallel(nn.Identity(), nn.serial(nn.Relu(), nn.Dense(64, 1.4, 0.1))),
                          nn.FanInSum(), nn.Relu(), nn.Dense(1)),
}


def _error(net, get, m, seeds=3):
    exact = getattr(net.kernel(X1, X2), get)
    return np.mean([frob_err(features.FeatureMap(net, m, s, get=get).kernel(X1, X2), exact)
                    for s in range(seeds)])


# float32 (README's pass): two of the eight; float64: all
@pytest.mark.parametrize("name,get", [(n, g) for n in sorted(NETS) for g in ("nngp", "ntk")]
                         if X64 else [("relu2", "ntk"), ("residual", "nngp")])
def test_feature_kernels_converge_like_one_over_sqrt_m(name, get):
    net = NETS[name]
    coarse, fine = _error(net, get, 64), _error(net, get, 1024)
    assert fine < 0.15, fine
    # 16 times the features: the error shrinks about 4-fold (1/sqrt(m)); 2.5-6.5 allows for
    # the spread of three seeds
    assert 2.5 < coarse / fine < 6.5, (coarse, fine)


@pytest.mark.parametrize("get", ["nngp", "ntk"] if X64 else ["ntk"])
def test_one_hidden_layer_features_are_unbiased(get):
    """With one activation the estimate is an exact Monte-Carlo average: the mean over 200
    independent maps of 32 features is 200 times less noisy than one map, bias included."""
    net = nn.serial(nn.Dense(8, 1.3, 0.2), nn.Relu(), nn.Dense(1, 1.1, 0.1))
    exact = getattr(net.kernel(X1, X2), get)
    maps = [features.FeatureMap(net, 32, s, get=get).kernel(X1, X2) for s in range(200)]
    single = np.mean([frob_err(k, exact) for k in maps[:20]])
    mean = frob_err(np.mean(maps, axis=0), exact)
    assert mean < 0.2 * single, (mean, single)  # 1/sqrt(200) = 0.07 without bias


@pytest.mark.parametrize("d,m", [(5, 12), (12, 5), (6, 6)])
def test_orthogonal_directions_are_orthogonal_in_blocks_and_each_standard_normal(d, m):
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)
    draws = np.asarray(jax.vmap(lambda k: features.orthogonal_normal(k, (d, m), DTYPE))(keys),
                       np.float64)
    assert draws.shape == (2000, d, m)
    b = min(d, m)
    for start in range(0, m, b):  # within a block: orthogonal columns
        block = draws[:, :, start:start + b]
        gram = np.einsum("sdi,sdj->sij", block, block)
        off = gram * (1 - np.eye(block.shape[-1]))
        assert np.max(np.abs(off)) < 1e-4 * np.max(gram), np.max(np.abs(off))
    # every column N(0, I_d): entries of mean 0 and variance 1, uncorrelated within a column,
    # squared lengths of mean d and variance 2d (chi-square), over 2000 draws
    flat = draws.transpose(0, 2, 1).reshape(-1, d)
    assert np.max(np.abs(flat.mean(0))) < 0.05
    np.testing.assert_allclose(np.cov(flat.T), np.eye(d), atol=0.06)
    sq = (flat ** 2).sum(1)
    assert abs(sq.mean() - d) < 0.05 * d and abs(sq.var() - 2 * d) < 0.15 * 2 * d
    assert not np.asarray(features.orthogonal_normal(jax.random.PRNGKey(0), (0, 4), DTYPE)).any()


_TWO_DRAWS_AT_ONCE = """
import jax, jax.numpy as jnp
from ntkgp import features
f = jax.jit(lambda k: [features.orthogonal_normal(jax.random.fold_in(k, i), s, jnp.float32)
                       for i, s in enumerate([(6, 4096), (512, 4096), (64, 2560), (300, 900)])])
for i in range(3):
    jax.block_until_ready(f(jax.random.PRNGKey(i)))
print("finished")
"""


@ONLY_X64_PASS  # the same in either pass
def test_directions_of_several_layers_drawn_at_once_do_not_deadlock():
    """Several layers' directions in one compiled call: XLA runs the draws concurrently, and
    jaxlib's batched QR (a batch split over XLA's thread pool) hung forever on a 2-core host
    when two ran at once. In a subprocess, so that a hang fails the test instead of CI."""
    try:
        out = subprocess.run([sys.executable, "-c", _TWO_DRAWS_AT_ONCE], capture_output=True,
                             text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("drawing several layers' orthogonal directions in one call hung (240 s)")
    assert out.returncode == 0 and "finished" in out.stdout, out.stderr[-2000:]


def test_orthogonal_directions_lower_the_feature_kernels_error():
    """The arc-cosine features of one ReLU layer, max(x.g, 0) / sqrt(m), with orthogonal
    directions against independent ones: the same expectation, a smaller spread (Yu et al.
    2016; Choromanski et al. 2017)."""
    x = RNG.normal(size=(40, 16)).astype(DTYPE)
    net = nn.serial(nn.Dense(1, 1.0, 0.0), nn.Relu())
    exact = np.asarray(net.kernel(x, None, "nngp"), np.float64)
    errors = {}
    for name, draw in (("orthogonal", features.orthogonal_normal),
                       ("independent", jax.random.normal)):
        errors[name] = []
        for s in range(40):
            phi = np.maximum(x / 4 @ np.asarray(draw(jax.random.PRNGKey(s), (16, 48), DTYPE)), 0)
            errors[name].append(frob_err(phi @ phi.T / 48, exact))
    orth, ind = np.mean(errors["orthogonal"]), np.mean(errors["independent"])
    assert orth < 0.9 * ind, (orth, ind)


def test_features_do_not_depend_on_blocks_of_rows():
    phi = features.FeatureMap(NETS["relu2"], 64, jax.random.PRNGKey(3))
    whole = np.asarray(phi(X1))
    parts = np.concatenate([np.asarray(f.ntk) for _, _, f in phi.chunks(jnp.asarray(X1), True,
                                                                            rows=5)])
    np.testing.assert_allclose(parts, whole, rtol=1e-5 if not X64 else 1e-12, atol=1e-6)
    assert whole.shape == (12, 2 * 64 + 1)  # [W psi, phi'] of the readout: m + (m + 1)
    assert np.asarray(features.FeatureMap(NETS["relu2"], 64, 3, get="nngp")(X1)).shape == \
        (12, 64 + 1)


def _feature_kernels(phi, x, xt):
    f = phi.features(np.concatenate([x, xt]), True)
    return {g: np.asarray(getattr(f, g), np.float64) for g in ("nngp", "ntk")}


CNN = nn.serial(nn.Conv(8, (3, 3), padding="SAME"), nn.Relu(), nn.Flatten(), nn.Dense(1))


@pytest.mark.filterwarnings("ignore::ntkgp.linalg.FeatureSaturationWarning")
@pytest.mark.parametrize("mode,kind", [("nngp", "random"), ("ntk", "random"),
                                       ("ntkgp", "random"), ("ntk", "nystrom")]
                         if X64 else [("ntk", "random"), ("ntk", "nystrom")])
def test_posterior_on_features_is_the_exact_posterior_of_the_feature_kernel(mode, kind):
    net = NETS["relu2"] if kind == "random" else CNN
    shape = (5,) if kind == "random" else (4, 4, 2)  # Nystrom: any network, images too
    x = RNG.normal(size=(60, *shape)).astype(DTYPE)
    y = np.sin(x.reshape(60, -1)[:, :2]).astype(DTYPE)
    xt = RNG.normal(size=(7, *shape)).astype(DTYPE)
    solver = linalg.FeatureSolver(n_features=48, seed=1, kind=kind)
    post = predict.Posterior(net, x, y, mode=mode, solver=solver, diag_reg=1e-2)
    assert post.solve_result.solver == solver.name
    mean, cov = post.predict(xt, return_cov=True)
    _, var = post.predict(xt, return_var=True)
    f = _feature_kernels(post.factor.feature_map, x, xt)
    n = len(x)
    k = {g: a @ a.T for g, a in f.items()}
    ref = predict.Posterior.from_kernels({g: v[:n, :n] for g, v in k.items()}, y, mode=mode,
                                         diag_reg=1e-2)
    ktt = Kernel(nngp=jnp.asarray(k["nngp"][n:, :n]), ntk=jnp.asarray(k["ntk"][n:, :n]),
                 cov1=None, cov2=None)
    kss = Kernel(nngp=jnp.asarray(k["nngp"][n:, n:]), ntk=jnp.asarray(k["ntk"][n:, n:]),
                 cov1=None, cov2=None)
    ref_mean, ref_cov = ref.predict(k_test_train=ktt, k_test_test=kss, return_cov=True)
    tol = 1e-8 if X64 else 2e-3
    scale = np.max(np.abs(ref_cov))
    np.testing.assert_allclose(mean, ref_mean, atol=tol * np.max(np.abs(ref_mean)))
    np.testing.assert_allclose(cov, ref_cov, atol=tol * scale)
    np.testing.assert_allclose(var, np.diagonal(ref_cov), atol=tol * scale)
    assert abs(float(post.log_marginal_likelihood()) - float(ref.log_marginal_likelihood())) \
        < tol * abs(float(ref.log_marginal_likelihood())) + (1e-6 if X64 else 0.05)
    assert post.solve_result.converged
    again = post.with_targets(2 * y)
    np.testing.assert_allclose(again.predict(xt), 2 * np.asarray(mean),
                               atol=tol * np.max(np.abs(ref_mean)) * 2)


@ONLY_X64_PASS  # the projection's algebra; float32 runs Nystrom in the posterior test
def test_nystrom_features_are_the_kernel_projected_on_the_landmarks():
    x = RNG.normal(size=(40, 4, 4, 2)).astype(DTYPE)
    phi = features.NystromMap.from_rows(CNN, x, 25, key=2)
    exact = np.asarray(CNN.kernel(x, None, "ntk"), np.float64)
    approx = np.asarray(phi.kernel(x), np.float64)
    rows = [i for i in range(40) if any(np.array_equal(x[i], m) for m in phi.landmarks)]
    assert len(rows) == 25 and phi.n_features <= 25
    tol = (1e-8 if X64 else 2e-3) * np.max(np.abs(exact))
    np.testing.assert_allclose(approx[np.ix_(rows, rows)], exact[np.ix_(rows, rows)], atol=tol)
    assert np.min(np.linalg.eigvalsh(exact - approx)) > -tol  # never above the kernel
    every = features.NystromMap.from_rows(CNN, x[:20], 25)  # all rows are landmarks: exact
    np.testing.assert_allclose(every.kernel(x[:20]), exact[:20, :20], atol=tol)


def test_saturated_features_are_said_and_measured():
    x = RNG.normal(size=(200, 5)).astype(DTYPE)
    y = np.sin(3 * x[:, 0])
    net = NETS["erf"]
    with pytest.warns(linalg.FeatureSaturationWarning, match="raise `n_features`"):
        few = predict.Posterior(net, x, y, solver=linalg.FeatureSolver(16), diag_reg=1e-3)
    assert few.factor.effective_dim > 0.5 * (2 * 16 + 1)
    many = predict.Posterior(net, x[:20], y[:20], solver=linalg.FeatureSolver(256),
                             diag_reg=1e-3)  # 20 rows use at most 20 of 513 dimensions
    assert many.factor.effective_dim <= 20


def test_feature_operator_products_match_the_feature_kernel():
    net = NETS["erf"]
    x = RNG.normal(size=(30, 5)).astype(DTYPE)
    phi = features.FeatureMap(net, 32, 0)
    op = linalg.FeatureKernelOperator(phi, jnp.asarray(x), "ntk")
    a = np.asarray(phi(x), np.float64)
    v = RNG.normal(size=(30, 2))
    tol = 1e-10 if X64 else 1e-4
    np.testing.assert_allclose(op.matmat(v), a @ (a.T @ v), rtol=tol, atol=tol)
    np.testing.assert_allclose(op.diagonal(), np.sum(a * a, 1), rtol=tol)
    np.testing.assert_allclose(op.columns([3, 7]), (a @ a.T)[:, [3, 7]], rtol=tol, atol=tol)


@ONLY_X64_PASS
def test_what_random_features_cannot_do_is_said():
    x = RNG.normal(size=(10, 5)).astype(DTYPE)
    y = x[:, 0]
    with pytest.raises(ValueError, match="not available for the layer Dense.*standard"):
        features.FeatureMap(nn.serial(nn.Dense(8, parameterization="standard"), nn.Relu(),
                                      nn.Dense(1)), 8)(x)
    with pytest.raises(ValueError, match="spatial layers"):
        features.FeatureMap(nn.serial(nn.Conv(4, (3, 3)), nn.Relu(), nn.Flatten(),
                                      nn.Dense(1)), 8)
    with pytest.raises(ValueError, match="not available for the layer LayerNorm"):
        features.FeatureMap(nn.serial(nn.Dense(8), nn.LayerNorm(), nn.Dense(1)), 8)(x)
    only_kernel = nn.Elementwise(nngp_fn=lambda c, v1, v2: c)
    with pytest.raises(ValueError, match="not available"):
        features.FeatureMap(nn.serial(nn.Dense(8), only_kernel, nn.Dense(1)), 8)(x)
    with pytest.raises(TypeError, match="ntkgp.nn network"):
        features.FeatureMap(lambda a, b, g: None, 8)
    net = NETS["relu2"]
    with pytest.raises(ValueError, match="diag_reg > 0"):
        predict.Posterior(net, x, y, solver="features", diag_reg=0.0)
    post = predict.Posterior(net, x, y, solver="features", diag_reg=1e-2)
    with pytest.raises(ValueError, match="finite training time"):
        post.predict(x, t=1.0)
    with pytest.raises(ValueError, match="not test kernels"):
        post.predict(k_test_train=np.zeros((2, 10)))
    with pytest.raises(ValueError, match="needs a network"):
        predict.Posterior.from_kernels(np.eye(10), y, solver="features", diag_reg=1e-2)
    with pytest.raises(ValueError, match="n_features"):
        features.FeatureMap(net, 0)


@ONLY_X64_PASS
def test_estimators_solve_on_random_features_and_save_them(tmp_path):
    from ntkgp import data
    from ntkgp.estimator import NNGPRegressor, NTKRegressor, load_model, save_model

    x, y = data.load("diabetes")
    x, y = x.astype(DTYPE), y.astype(DTYPE)
    kw = dict(depth=1, optimizer=None, diag_reg=0.1)
    exact = NTKRegressor(**kw).fit(x[:300], y[:300])
    est = NTKRegressor(solver="features", n_features=512, random_state=3, **kw).fit(x[:300],
                                                                                   y[:300])
    assert est.solver_ == "features" and est.get_params()["n_features"] == 512
    err = [np.sqrt(np.mean((e.predict(x[300:]) - y[300:]) ** 2)) for e in (exact, est)]
    assert abs(err[1] / err[0] - 1) < 0.05, err
    mean, std = est.predict(x[300:], return_std=True)
    assert np.all(std > 0) and np.isfinite(est.log_marginal_likelihood_value_)
    save_model(est, tmp_path / "m.npz")
    back = load_model(tmp_path / "m.npz")
    assert back.solver_ == "features"
    np.testing.assert_allclose(back.predict(x[300:]), mean, rtol=1e-5)
    nys = NTKRegressor(solver="nystrom", n_features=200, **kw).fit(x[:300], y[:300])
    assert nys.solver_ == "nystrom"
    err_nys = np.sqrt(np.mean((nys.predict(x[300:]) - y[300:]) ** 2))
    assert abs(err_nys / err[0] - 1) < 0.05, (err_nys, err[0])
    nngp = NNGPRegressor(solver="features", n_features=256, **kw).fit(x[:300], y[:300])
    assert np.isfinite(nngp.score(x[300:], y[300:]))
    with pytest.raises(ValueError, match="solver='features' predicts"):
        NTKRegressor(solver="features", t=1.0, **kw).fit(x[:50], y[:50])


@functools.partial(jax.jit, static_argnums=0)
def _bias_dominated_jit(homogeneous, key, x):
    f = rules.dense(rules.input_features(x, True), 0.6, 4.0)
    f = rules.activation(f, key, rules.Draws(64), jax.nn.relu, homogeneous)
    return rules.Feats(f.nngp, f.ntk)


def _bias_dominated(homogeneous, seed, x):
    """One Dense(W_std=0.6, b_std=4) + ReLU layer's features by the rules (64 directions),
    the bias proposal on (``homogeneous``) or off."""
    return _bias_dominated_jit(homogeneous, jax.random.PRNGKey(seed), jnp.asarray(x))


def test_a_dominating_bias_is_sampled_where_relu_bends():
    """With b_std = 4 and inputs of spread 0.6, about 12% of directions with a standard normal
    bias coordinate bend on the data; the proposal draws more of them there, weighted: the
    NTK features stay unbiased (mean of 200 maps), their error on the kernel's varying part
    (centred: the constant b^2 dominates the raw kernel) drops, and the NNGP features are
    untouched."""
    x = RNG.normal(size=(40, 16)).astype(DTYPE)
    exact = nn.serial(nn.Dense(1, 0.6, 4.0), nn.Relu()).kernel(x, None)
    centre = np.eye(40) - 1.0 / 40

    def err(k, e):
        return frob_err(centre @ np.asarray(k, np.float64) @ centre,
                        centre @ np.asarray(e, np.float64) @ centre)

    errors, means = {}, {}
    for on in (False, True):
        fs = [_bias_dominated(on, s, x) for s in range(200)]
        kernels = [np.asarray(f.ntk, np.float64) @ np.asarray(f.ntk, np.float64).T for f in fs]
        errors[on] = np.mean([err(k, exact.ntk) for k in kernels[:40]])
        means[on] = err(np.mean(kernels, axis=0), exact.ntk)
        if on:
            plain = _bias_dominated(False, 0, x)
            np.testing.assert_array_equal(np.asarray(fs[0].nngp), np.asarray(plain.nngp))
    assert errors[True] < 0.8 * errors[False], errors  # measured 1.06 against 1.56
    assert means[True] < 0.2 * errors[True], (means, errors)  # 1/sqrt(200) = 0.07 unbiased


@ONLY_X64_PASS  # which layers use the proposal: the same rules in both passes
def test_the_bias_proposal_is_left_out_for_small_biases_and_other_activations():
    """Each layer's own rule: only the homogeneous activations after a bias above 1 change
    their NTK features when told of the bias column; NNGP features never change."""
    x = jnp.asarray(RNG.normal(size=(10, 4)).astype(DTYPE))
    small = rules.dense(rules.input_features(x, True), 1.5, 1.0)
    large = rules.dense(rules.input_features(x, True), 0.6, 4.0)
    assert float(large.bias) == 4.0
    key = jax.random.PRNGKey(3)
    cases = [(nn.Relu(), large, True), (nn.Abs(), large, True), (nn.LeakyRelu(0.1), large, True),
             (nn.Erf(), large, False), (nn.Sin(), large, False), (nn.Gelu(), large, False),
             (nn.Relu(), small, False)]
    for layer, f, uses in cases:
        told = layer.features(f, key, rules.Draws(16))
        untold = layer.features(rules.Feats(f.nngp, f.ntk), key, rules.Draws(16))
        np.testing.assert_array_equal(np.asarray(told.nngp), np.asarray(untold.nngp))
        same = np.array_equal(np.asarray(told.ntk), np.asarray(untold.ntk))
        assert same != uses, (layer.name, float(f.bias))
    weights = rules.bias_proposal(key, jnp.zeros((3, 1000), DTYPE), 4.0)[1]
    assert float(jnp.max(weights)) <= 2.0 + 1e-5  # the defensive half bounds the weights


def test_feature_gram_keeps_its_small_directions_under_a_large_common_part():
    """A bias of 4 puts most ReLU units on one side of the kink on every row: the features
    share a large common part, most of them are linear in x and the Gram is singular. Summed
    over float32 blocks unshifted, its null directions came out at -1.3e-4 of the kernel's
    diagonal (plus a regularizer of 1e-4 of it, not positive definite); the pass shifts the
    features by the first block's means and adds the shift back in float64."""
    from ntkgp._src.solve.features import pass_sums
    rng = np.random.default_rng(0)
    n = 20000
    x = jnp.asarray((0.3 * rng.standard_normal((n, 8))).astype(DTYPE))
    y = rng.standard_normal((n, 2)).astype(DTYPE)
    net = nn.serial(nn.Dense(512, 0.63, 4.0), nn.Relu(), nn.Dense(1, 0.63, 4.0))
    fmap = features.FeatureMap(net, 256, key=0)
    gram, rhs, cross = pass_sums(fmap, x, y, "ntk", "nngp", True, progress=False)
    want_gram = want_rhs = want_cross = 0.0
    for a, b, f in fmap.chunks(x, True, progress=False):  # float64 products, same features
        phi, psi = np.asarray(f.ntk, np.float64), np.asarray(f.nngp, np.float64)
        want_gram = want_gram + phi.T @ phi
        want_rhs = want_rhs + phi.T @ y[a:b].astype(np.float64)
        want_cross = want_cross + phi.T @ psi
    scale = np.trace(want_gram) / n  # the kernel's mean diagonal: diag_reg's unit
    tol = 1e-12 if X64 else 3e-5
    assert np.abs(gram - want_gram).max() <= tol * scale
    assert np.abs(cross - want_cross).max() <= tol * scale
    assert np.abs(rhs - want_rhs).max() <= tol * np.abs(want_rhs).max()
    assert np.linalg.eigvalsh(gram)[0] >= -(1e-12 if X64 else 1e-6) * scale
