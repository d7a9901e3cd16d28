"""Lottery tickets: magnitude pruning and random masks, the experiment's plumbing (with nothing
pruned every ticket is the dense net), the kernel regime at growing width, and the CLI."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntkgp import experiments, nn
from ntkgp._src.cli.main import main
from tests.conftest import DTYPE, ONLY_X64_PASS, X64


def _net(width):
    return nn.serial(nn.Dense(width, W_std=1.5, b_std=0.1), nn.Erf(),
                     nn.Dense(2, W_std=1.5, b_std=0.1))


def _data(n=24, m=12):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n + m, 4)).astype(DTYPE)
    y = np.concatenate([np.sin(x[:, :1]), 0.5 * x[:, 1:2] - x[:, 2:3]], 1).astype(DTYPE)
    return x[:n], y[:n], x[n:], y[n:]


def test_magnitude_mask_keeps_the_largest_weights_globally():
    p = {"a": {"W": jnp.array([[3.0, -0.1], [0.5, -2.0]]), "b": jnp.array([0.01, 0.02])},
         "c": {"W": jnp.array([[1.0, -4.0, 0.2]])}}
    ones = jax.tree.map(jnp.ones_like, p)
    m = experiments.magnitude_mask(p, ones, 3 / 7)  # keep 3 of 7 weights: 4, 3, 2
    np.testing.assert_array_equal(m["a"]["W"], [[1, 0], [0, 1]])
    np.testing.assert_array_equal(m["c"]["W"], [[0, 1, 0]])
    np.testing.assert_array_equal(m["a"]["b"], [1, 1])  # biases are never pruned
    # a later round prunes among the survivors only, even where pruned weights were large
    p2 = jax.tree.map(lambda a: a, p)
    p2["a"]["W"] = p2["a"]["W"].at[0, 1].set(100.0)
    m2 = experiments.magnitude_mask(p2, m, 2 / 7)
    np.testing.assert_array_equal(m2["a"]["W"], [[1, 0], [0, 0]])
    np.testing.assert_array_equal(m2["c"]["W"], [[0, 1, 0]])


def test_random_mask_density():
    p = {"W": jnp.zeros((200, 100)), "b": jnp.zeros(100)}
    m = experiments.random_mask(p, 0.2, jax.random.PRNGKey(0))
    assert abs(float(m["W"].mean()) - 0.2) < 0.01 and float(m["b"].min()) == 1.0


@ONLY_X64_PASS  # logic, not rounding: one pass
def test_nothing_pruned_gives_the_dense_net_back():
    """With a sparsity too small to remove a weight, each ticket is the dense network trained
    again from the same start: the plumbing of rewinding and retraining, exactly."""
    x, y, xt, yt = _data()
    res = experiments.lottery_tickets(_net, [32], x, y, xt, yt, seeds=1, steps=20,
                                      sparsities=[1e-6], show_progress=False)
    row = res.rows[0]
    tol = 1e-9 if X64 else 1e-4
    assert row.dist["ticket"][0] < tol and row.dist["ticket_k"][0] < tol
    assert row.dist["masked_init"][0] == pytest.approx(row.dist["init"], abs=tol)
    assert row.dist["init"] > 0.1  # training moved the network
    assert row.error["ticket"][0] == pytest.approx(row.error["net"], rel=1e-3)


@pytest.fixture(scope="module")
def sweep():  # the kernel regime of two widths: the float64 pass (its dtype is not the point)
    x, y, xt, yt = _data()
    return experiments.lottery_tickets(_net, [64, 2048], x, y, xt, yt, seeds=2, steps=60,
                                       sparsities=[0.5, 0.9], show_progress=False)


@ONLY_X64_PASS
def test_wide_nets_approach_their_tangent_space_ticket(sweep):
    small, wide = sweep.rows
    for name in ("linearized", "closed_form"):
        assert wide.dist[name] < 0.5 * small.dist[name], name
        assert sweep.slopes[name] < -0.3, name
    # the sub-network tickets at 90% sparsity stay far from the dense function at any width
    assert wide.dist["ticket"][1] > 3 * wide.dist["linearized"]
    assert wide.dist["masked_init"][1] > wide.dist["ticket"][1]
    back = experiments.TicketResult.from_json(sweep.to_json())
    assert back.rows[1].dist == wide.dist and back.sparsities == [0.5, 0.9]
    json.loads(sweep.to_json())


def test_bad_options():
    x, y, xt, yt = _data()
    with pytest.raises(ValueError, match="increasing fractions"):
        experiments.lottery_tickets(_net, [8], x, y, xt, yt, sparsities=[0.9, 0.5])
    with pytest.raises(ValueError, match="rewind_step"):
        experiments.lottery_tickets(_net, [8], x, y, xt, yt, steps=10, rewind_step=10)


TINY = ["tickets", "--widths", "16,32", "--seeds", "1", "--steps", "12", "--n-train", "40",
        "--n-test", "20", "--sparsities", "0.5,0.8", "--quiet"]


@pytest.mark.skipif(not X64, reason="end-to-end CLI run, once per CI (the float64 pass)")
def test_cli_writes_table_json_and_png(tmp_path, capsys):
    assert main(TINY + ["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ticket θ0" in out and "log-log slopes" in out and "float32" in out
    res = experiments.TicketResult.from_json((tmp_path / "tickets.json").read_text())
    assert [r.width for r in res.rows] == [16, 32] and res.info["dataset"] == "digits"
    pytest.importorskip("matplotlib")
    assert (tmp_path / "tickets.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("args,message", [
    (["--sparsities", "0.9,0.5"], "sparsities must be increasing"),
    (["--rewind-step", "50"], "must be below --steps"),
    (["--arch", "conv-relu-8x1"], "fully connected"),
    (["--loss", "xent", "--dataset", "diabetes"], "needs a classification dataset"),
])
def test_cli_bad_input(args, message, capsys, tmp_path):
    try:
        code = main(TINY + ["--out", str(tmp_path)] + args)
    except SystemExit as e:  # argparse's own errors
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err
