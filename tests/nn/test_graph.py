"""Graph networks (`nn.Aggregate`): kernels against neural-tangents 0.6.5 reference values
(tests/data/nt_graphs.py), the finite layer against a loop over edges, sparse against dense,
and clear errors for graphs that do not fit the inputs."""

import jax
import numpy as np
import pytest

from ntkgp import nn
from tests.conftest import DTYPE, ONLY_X64_PASS, X64, rel_err
from tests.helpers import build, load_reference

REF, META = load_reference("nt_graphs")
CASES = sorted(META["cases"])
TOL = 1e-9 if X64 else 2e-4  # float64 observed <= 1e-13


def test_reference_covers_the_graph_layer():
    aggs = [s[1] for c in META["cases"].values() for s in c["layers"] if s[0] == "Aggregate"]
    assert {a.get("implementation", "DENSE") for a in aggs} == {"DENSE", "SPARSE"}
    assert any("aggregate_axis" in a for a in aggs)  # one of two node axes
    assert any(len(c["in_shape"]) == 3 for c in META["cases"].values())  # a 2-D node grid


@pytest.mark.parametrize("case", CASES)
def test_kernel_matches_neural_tangents(case):
    net = build(META["cases"][case]["layers"])
    x1, x2, p1, p2 = (REF[f"{case}__{k}"] for k in ("x1", "x2", "p1", "p2"))
    x1, x2 = x1.astype(DTYPE), x2.astype(DTYPE)
    if p1.dtype.kind == "f":
        p1, p2 = p1.astype(DTYPE), p2.astype(DTYPE)
    for tag, (a, b, pa, pb) in {"12": (x1, x2, p1, p2), "11": (x1, None, p1, None),
                                "22": (x2, None, p2, p2)}.items():
        k = net.kernel(a, b, pattern=(pa, pb))
        for g in ("nngp", "ntk"):
            ref = REF[f"{case}__{g}_{tag}"]
            assert getattr(k, g).shape == ref.shape
            assert rel_err(getattr(k, g), ref) <= TOL, (tag, g, rel_err(getattr(k, g), ref))


def _random_edges(rng, n, nodes, e):
    v = int(np.prod(nodes))
    flat = rng.integers(0, v, (n, e, 2))
    flat[:, 1] = flat[:, 0]  # a repeated edge counts twice
    edges = np.stack([np.stack(np.unravel_index(flat[..., j], nodes), -1) for j in range(2)],
                     -1).astype(np.int32)  # (n, e, K, 2)
    edges[:, -1, 0, 1] = -1  # a head with a negative coordinate: padding, dropped
    return edges


def _dense_from_edges(edges, nodes):
    n, v = edges.shape[0], int(np.prod(nodes))
    a = np.zeros((n, v, v))
    for i in range(n):
        for tail, head in zip(edges[i, :, :, 0], edges[i, :, :, 1]):
            if np.all(head >= 0):
                a[i, np.ravel_multi_index(tuple(tail), nodes),
                  np.ravel_multi_index(tuple(head), nodes)] += 1
    return a.reshape((n,) + nodes + nodes)


@pytest.mark.parametrize("shape,axis", [((3, 5, 2), None), ((3, 4, 3, 2), None),
                                        ((3, 4, 3, 2), 2), ((3, 4, 3, 2), -3)])
def test_finite_layer_sums_each_nodes_predecessors(shape, axis):
    """Dense and sparse apply against a loop: y[n, j] = sum_i A[n, i, j] x[n, i]."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape).astype(DTYPE)
    r = len(shape) - 2
    axes = tuple(range(r)) if axis is None else ((axis % len(shape)) - 1,)
    nodes = tuple(shape[1 + a] for a in axes)
    edges = _random_edges(rng, shape[0], nodes, 9)
    a = _dense_from_edges(edges, nodes)
    want = np.zeros(shape)
    xt = np.moveaxis(x, [1 + i for i in axes], list(range(1, 1 + len(axes))))
    wt = np.moveaxis(want, [1 + i for i in axes], list(range(1, 1 + len(axes))))
    v = int(np.prod(nodes))
    xf = xt.reshape(shape[0], v, -1)
    wf = np.einsum("nij,nir->njr", a.reshape(shape[0], v, v), xf)
    want = np.moveaxis(wf.reshape(wt.shape), list(range(1, 1 + len(axes))),
                       [1 + i for i in axes])
    dense = nn.Aggregate(axis).apply((), x, pattern=a.astype(DTYPE))
    sparse = nn.Aggregate(axis, implementation="SPARSE").apply((), x, pattern=edges)
    tol = 1e-12 if X64 else 1e-5
    np.testing.assert_allclose(np.asarray(dense), want, atol=tol)
    np.testing.assert_allclose(np.asarray(sparse), want, atol=tol)


@ONLY_X64_PASS  # the same arithmetic in both passes: which rows get which graph
def test_sparse_kernel_equals_dense_kernel_and_is_row_blocked_correctly(monkeypatch):
    """Edge lists give the kernel of their adjacency counts, also when the kernel is computed
    in blocks of examples (the graphs are sliced with their inputs)."""
    from ntkgp._src.nn import blocking
    monkeypatch.setattr(blocking, "CHUNK_ELEMENTS", 25 * 16)  # blocks of a few examples
    monkeypatch.setattr(blocking, "MAX_CHUNK_ELEMENTS", 25 * 16)
    rng = np.random.default_rng(1)
    x1 = rng.standard_normal((20, 5, 2)).astype(DTYPE)
    x2 = rng.standard_normal((7, 5, 2)).astype(DTYPE)
    e1, e2 = _random_edges(rng, 20, (5,), 8), _random_edges(rng, 7, (5,), 8)
    d1, d2 = (_dense_from_edges(e, (5,)).astype(DTYPE) for e in (e1, e2))

    def net(impl):
        return nn.serial(nn.Aggregate(implementation=impl), nn.Dense(3, 1.3, 0.1), nn.Relu(),
                         nn.Aggregate(implementation=impl), nn.GlobalAvgPool(), nn.Dense(1))

    sparse, dense = net("SPARSE"), net("DENSE")
    tol = 1e-12 if X64 else 2e-5
    for args, pats in (((x1, x2), ((e1, e2), (d1, d2))), ((x1, None), ((e1, None), (d1, None)))):
        ks = sparse.kernel(*args, pattern=pats[0])
        kd = dense.kernel(*args, pattern=pats[1])
        assert rel_err(ks.ntk, kd.ntk) <= tol
        # one example at a time: the blocks of rows carry the right graphs
        i = 17
        one = dense.kernel(args[0][i:i + 1], args[1] if args[1] is not None else args[0],
                           pattern=(pats[1][0][i:i + 1], pats[1][1] if args[1] is not None
                                    else pats[1][0]))
        assert rel_err(kd.nngp[i:i + 1], one.nngp) <= tol


def test_kernel_and_apply_work_under_jit():
    x = np.random.default_rng(2).standard_normal((3, 4, 2)).astype(DTYPE)
    a = np.abs(np.random.default_rng(3).standard_normal((3, 4, 4))).astype(DTYPE)
    net = nn.serial(nn.Aggregate(), nn.Dense(5), nn.Relu(), nn.GlobalSumPool(), nn.Dense(1))
    k = jax.jit(lambda x, a: net.kernel(x, None, "ntk", pattern=(a, None)))(x, a)
    assert rel_err(k, net.kernel(x, None, "ntk", pattern=a)) <= (1e-12 if X64 else 1e-5)
    _, params = net.init(jax.random.PRNGKey(0), x.shape)
    y = jax.jit(lambda p, x, a: net.apply(p, x, pattern=a))(params, x, a)
    assert y.shape == (3, 1) and np.all(np.isfinite(y))


def _graph_problem():
    rng = np.random.default_rng(4)
    x1 = rng.standard_normal((7, 5, 2)).astype(DTYPE)
    x2 = rng.standard_normal((5, 5, 2)).astype(DTYPE)
    a1, a2 = ((rng.uniform(size=(n, 5, 5)) < 0.4).astype(DTYPE) for n in (7, 5))
    net = nn.serial(nn.Aggregate(), nn.Dense(8), nn.Relu(), nn.Aggregate(), nn.Dense(8),
                    nn.GlobalAvgPool(), nn.Dense(2))
    return x1, x2, a1, a2, net


@ONLY_X64_PASS
def test_empirical_kernels_take_each_examples_graph():
    """pattern=(A1, A2) goes to the network with each example's graph: the empirical NTK
    equals J(x1) J(x2)^T of the whole batch applied at once."""
    from ntkgp import empirical
    x1, x2, a1, a2, net = _graph_problem()
    _, p = net.init(jax.random.PRNGKey(0), x1.shape)

    def jac(x, a):
        j = jax.jacrev(lambda q: net.apply(q, x, pattern=a))(p)  # (N, 2, *param)
        return np.concatenate([np.asarray(v).reshape(x.shape[0], 2, -1)
                               for v in jax.tree.leaves(j)], axis=-1)

    j1, j2 = jac(x1, a1), jac(x2, a2)
    want = np.einsum("ikp,jkp->ij", j1, j2) / 2  # averaged over the 2 outputs
    tol = 1e-10 if X64 else 1e-4
    for implementation in ("jacobian", "ntvp"):  # 'auto' picks 'jacobian' here
        f = empirical.empirical_ntk_fn(net, implementation=implementation)
        assert rel_err(f(x1, x2, p, pattern=(a1, a2)), want) <= tol
        assert rel_err(f(x1, None, p, pattern=a1), np.einsum("ikp,jkp->ij", j1, j1) / 2) <= tol
    k = empirical.empirical_kernel_fn(net)(x1, x2, None, p, pattern=(a1, a2))
    y1, y2 = net.apply(p, x1, pattern=a1), net.apply(p, x2, pattern=a2)
    assert rel_err(k.nngp, np.asarray(y1) @ np.asarray(y2).T / 2) <= tol
    with pytest.raises(ValueError, match=r"with x2 given, pass pattern=\(for_x1, for_x2\)"):
        f(x1, x2, p, pattern=a1)
    with pytest.raises(ValueError, match="`pattern` for x2 must have one entry per example"):
        f(x1, x2, p, pattern=(a1, a1))


@ONLY_X64_PASS
def test_tiles_and_monte_carlo_carry_each_examples_graph(tmp_path):
    """batching.batch slices the graphs with the examples of each tile (also for the store's
    fingerprint), and monte_carlo_kernel passes them to every sample."""
    from ntkgp import batching, empirical
    x1, x2, a1, a2, net = _graph_problem()
    tol = 1e-12 if X64 else 1e-5
    for args, pat in (((x1, x2), (a1, a2)), ((x1, None), a1)):
        want = net.kernel(*args, pattern=pat)
        got = batching.batch(net.kernel, 3, store=str(tmp_path / str(args[1] is None)))(
            *args, pattern=pat)
        assert rel_err(got.ntk, want.ntk) <= tol and rel_err(got.nngp, want.nngp) <= tol
    with pytest.raises(batching.StoreError, match="different computation"):
        batching.batch(net.kernel, 3, store=str(tmp_path / "True"))(x1, None,
                                                                      pattern=a1[::-1])
    mc = empirical.monte_carlo_kernel(net, jax.random.PRNGKey(1), 2, x1, x2, pattern=(a1, a2))
    assert mc.ntk.shape == (7, 5) and np.all(np.isfinite(mc.ntk))


X = np.zeros((3, 4, 2), DTYPE)
NET = nn.serial(nn.Aggregate(), nn.Dense(2), nn.Relu(), nn.GlobalAvgPool())
BAD = {
    "no pattern": (lambda: NET.kernel(X), "needs each example's graph"),
    "wrong node count": (lambda: NET.kernel(X, pattern=np.zeros((3, 5, 5), DTYPE)),
                         "must have shape (3, 4, 4)"),
    "wrong example count": (lambda: NET.kernel(X, pattern=np.zeros((2, 4, 4), DTYPE)),
                            "one graph per example: a first axis of 3"),
    "x2 without its graphs": (lambda: NET.kernel(X, X, pattern=(np.zeros((3, 4, 4)), None)),
                              "pass the graphs of both"),
    "float edges": (lambda: nn.Aggregate(implementation="SPARSE").apply(
        (), X, pattern=np.zeros((3, 5, 2))), "must be integer edges of shape (3, E, 1, 2)"),
    "apply without pattern": (lambda: nn.Aggregate().apply((), X), "pass pattern="),
    "(N, d) inputs": (lambda: nn.Aggregate().apply((), X[:, 0], pattern=np.zeros((3, 4, 4))),
                      "without node axes"),
    "batch axis elsewhere": (lambda: nn.Aggregate(batch_axis=1), "batch-first, channels-last"),
    "unknown implementation": (lambda: nn.Aggregate(implementation="CSR"),
                               "'DENSE' or 'SPARSE'"),
    "channel axis aggregated": (lambda: nn.Aggregate(aggregate_axis=3).apply(
        (), X, pattern=np.zeros((3, 2, 2))), "is not a node axis"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_graphs_get_clear_errors(case):
    fn, match = BAD[case]
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        fn()
