#!/usr/bin/env python
"""CNTK benchmarks: convolutional kernels against neural-tangents 0.6.5 on digits, the full
digits kernel with the disk-backed tile store, and CNTK accuracy next to finite CNNs.

Cases (each in its own subprocess, neural-tangents first where it has the case):
  cnn3_{gap,flatten}_N{50,100,200}_f32   3 x [Conv(64, 3x3, SAME) + Relu] + GlobalAvgPool |
                                          Flatten + Dense(1), `kernel(x, x)` on digits/16
                                          (gap N=200: 3 pairs of processes, alternating; its
                                          compile column, which a target reads, the median)
  cnn3_gap_x2None_N200_f32               the same with `kernel(x, None)` (ntkgp only)
  cnn2_<shape>_N<n>_f32                  other shapes, `kernel(x, x)` of Gaussian images (both
                                          libraries' networks from the same names, the
                                          neural-tangents side run by this script in its
                                          venv): `valid_flatten` 2 x [Conv(32, 3x3, VALID) +
                                          Relu] + Flatten on 12 x 12 x 3; `strided_flatten`
                                          2 x [Conv(32, 3x3, strides 2, SAME) + Relu] +
                                          Flatten on 16 x 16 x 3; `valid_pool` Conv(32, 3x3,
                                          VALID) + Relu + AvgPool(2x2, stride 1) + the same
                                          conv + Relu + GlobalAvgPool on 10 x 10 x 3;
                                          `strided_pool` the SAME variant with AvgPool(2x2,
                                          stride 2) on 8 x 8 x 3; each + Dense(1);
                                          `myrtle5` and `myrtle7`: `nn.myrtle(5)` on 8 x 8 x 3
                                          and `nn.myrtle(7)` on 16 x 16 x 3 (3 x 3 SAME
                                          convolutions and ReLU in three stages, each ending
                                          in a 2 x 2 stride-2 AvgPool; GlobalAvgPool,
                                          Dense(1)); `same_gap` the `cnn3_gap` network
                                          (3 x [Conv(64, 3x3, SAME) + Relu] +
                                          GlobalAvgPool) on 10 x 10 x 3, `same_gap16` on
                                          16 x 16 x 3, `same_gap32` on 32 x 32 x 3 (the
                                          size of CIFAR-10's images); `erf_gap`,
                                          `gelu_gap`, `sin_gap` and `gabor_gap` the
                                          `same_gap` network with Erf, Gelu, Sin or Gabor
                                          in place of Relu
  cnn3_gap_digits1797_f32                all 1,797 digits, `batching.batch(net.kernel, 256,
                                          store=...)` (ntkgp only; time and peak memory)
  acc_digits / acc_fashion1k             accuracy: CNTK and NNGP kernel regression (GP
                                          posterior mean, one-hot targets) vs the same CNN at
                                          width 64 trained with minibatch SGD (2 seeds)

The `cnn3_*` cases with `x2` given also give their limit (`cnn_limit`, `_limits.py`): per
pair of images, the convolutions' shifted sums over the pairs of positions (of the same
position for Flatten), the ReLU updates and the readout at this machine's fused elementwise
rate, and one write of both kernels.

Usage:
  python benchmarks/cntk.py                     # all cases, rewrites benchmarks/RESULTS.md
  python benchmarks/cntk.py --cases 'cnn3_gap_N' --repeats 3
  python benchmarks/cntk.py --no-nt
The reference venv: `NTREF_LIGHT=1 bash ../shared/ntref/ntref_setup.sh /tmp/ntref/venv`.
"""

import math
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import kernel_row, main, time_compiled, timing_row  # noqa: E402
from _limits import RELU_FLOPS, conv_terms, limit  # noqa: E402


def all_cases():
    cases = []
    for readout in ("gap", "flatten"):
        for n in (50, 100, 200):
            # a compile-time target reads cnn3_gap_N200_f32: 3 processes
            cases.append(dict(id=f"cnn3_{readout}_N{n}_f32", kind="cnn", readout=readout, n=n,
                              min_repeats=20 if readout == "flatten" else 0,
                              compile_rounds=3 if (readout, n) == ("gap", 200) else 1))
    cases.append(dict(id="cnn3_gap_x2None_N200_f32", kind="cnn", readout="gap", n=200,
                      x2_none=True, nt_id=None))
    for shape, (_, ns) in SHAPES.items():
        cases += [dict(id=f"cnn2_{shape}_N{n}_f32", kind="shape", shape=shape, n=n,
                       nt_self=True, min_repeats=20 if "flatten" in shape else 0) for n in ns]
    cases.append(dict(id="cnn3_gap_digits1797_f32", kind="full", nt_id=None))
    cases.append(dict(id="acc_digits", kind="acc", data="digits", nt_id=None))
    cases.append(dict(id="acc_fashion1k", kind="acc", data="fashion_mnist", nt_id=None))
    return cases


def cnn(readout, width=64, n_out=1):
    from ntkgp import nn
    layers = []
    for _ in range(3):
        layers += [nn.Conv(width, (3, 3), padding="SAME"), nn.Relu()]
    return nn.serial(*layers, nn.GlobalAvgPool() if readout == "gap" else nn.Flatten(),
                     nn.Dense(n_out))


# the networks of other shapes (`shaped_cnn`): their images' side (3 channels) and sizes N
SHAPES = {"valid_flatten": (12, (50, 100)), "strided_flatten": (16, (50, 200)),
          "valid_pool": (10, (50, 100)), "strided_pool": (8, (50, 100)),
          "myrtle5": (8, (50, 100)), "myrtle7": (16, (20, 30)), "same_gap": (10, (30, 50)),
          "same_gap16": (16, (20,)), "same_gap32": (32, (8, 12)), "erf_gap": (10, (30,)),
          "gelu_gap": (10, (30,)), "sin_gap": (10, (30,)), "gabor_gap": (10, (30,))}


def shaped_cnn(lib, shape):
    """The network of ``shape`` (see the module docstring) from ``lib``: neural-tangents'
    ``stax`` or ``ntkgp.nn``, the same names and arguments."""
    if shape.startswith("myrtle"):
        depth = int(shape[6:])
        if hasattr(lib, "myrtle"):  # ntkgp: its builder, as users call it
            return lib.myrtle(depth, width=128)
        layers = []  # neural-tangents: the same layers from its names
        for n_conv in {5: (2, 1, 1), 7: (2, 2, 2)}[depth]:
            layers += [lib.Conv(128, (3, 3), padding="SAME", W_std=2 ** 0.5, b_std=0.0),
                       lib.Relu()] * n_conv
            layers.append(lib.AvgPool((2, 2), strides=(2, 2), padding="SAME"))
        return lib.serial(*layers, lib.GlobalAvgPool(), lib.Dense(1, W_std=2 ** 0.5, b_std=0.0))
    if shape.endswith(("_gap", "_gap16", "_gap32")):  # `cnn("gap")`, another side or activation
        act = {"erf": lib.Erf, "gelu": lib.Gelu, "sin": lib.Sin,
               "gabor": lib.Gabor}.get(shape.split("_")[0], lib.Relu)
        layers = [lib.Conv(64, (3, 3), padding="SAME"), act()] * 3
        return lib.serial(*layers, lib.GlobalAvgPool(), lib.Dense(1))
    stride = (2, 2) if shape.startswith("strided") else (1, 1)
    pad = "VALID" if shape.startswith("valid") else "SAME"

    def conv():
        return [lib.Conv(32, (3, 3), stride if "flatten" in shape else (1, 1), pad),
                lib.Relu()]

    if "flatten" in shape:
        return lib.serial(*conv(), *conv(), lib.Flatten(), lib.Dense(1))
    return lib.serial(*conv(), lib.AvgPool((2, 2), stride), *conv(), lib.GlobalAvgPool(),
                      lib.Dense(1))


def shaped_images(shape, n):
    import numpy as np
    side = SHAPES[shape][0]
    x = np.random.default_rng(0).standard_normal((n, side, side, 3))
    return np.asarray(x, np.float32)


def cnn_limit(readout, shape, n):
    """The limit (`_limits.limit`) of `cnn(readout)`'s kernel of ``n`` images of ``shape``
    with themselves, per pair of images: the input covariance of every pair of positions (of
    the same position for Flatten, which needs no other), each convolution's shifted sums
    (`conv_terms`; the first layer's NTK is its NNGP, later layers convolve both), each ReLU's
    update (`RELU_FLOPS` per entry), the readout's sum; and one write of both kernels."""
    size, channels = shape[1:-1], shape[-1]
    flat = readout == "flatten"
    entries = math.prod(size) * (1 if flat else math.prod(size))
    terms = conv_terms(size, (3, 3), diagonal=flat)
    per_pair = (1 + 2 + 2) * terms + 3 * RELU_FLOPS * entries + 2 * entries
    return limit("float32", matmul_flops=2 * channels * entries * n * n,
                 elementwise_flops=per_pair * n * n, write_bytes=2 * n * n * 4)


def _digits(n=None):
    import numpy as np
    from sklearn.datasets import load_digits
    x = load_digits().data[:n].reshape(-1, 8, 8, 1) / 16  # as neural-tangents' baseline
    return np.asarray(x, np.float32)


def accuracy(data_name):
    """Kernel regression with the CNTK/NNGP vs finite CNNs trained by SGD, same split."""
    import numpy as np

    from ntkgp import batching, data, predict

    if data_name == "digits":
        x, y = data.load_images("digits")
        xtr, ytr, xte, yte = data.split(x, y, n_train=1000, seed=0)
        desc = "digits 8x8, 1000 train / 797 test"
    else:
        x, y = data.load_images("fashion_mnist", n=2000, pool=4, seed=0)
        xtr, ytr, xte, yte = data.split(x, y, n_train=1000, seed=0)
        desc = "Fashion-MNIST (random 2000 of the train split, 4x4-block averaged to 7x7), " \
               "1000 train / 1000 test"
    mean = xtr.mean()
    xtr, xte = (xtr - mean).astype(np.float32), (xte - mean).astype(np.float32)
    targets = data.mse_targets(ytr)
    net = cnn("gap", n_out=10)
    kfn = batching.batch(net.kernel, 256, progress=False)
    t0 = time.perf_counter()
    k_dd = kfn(xtr, None)
    k_td = kfn(xte, xtr)
    kernel_s = time.perf_counter() - t0
    out = {"data": desc, "kernel_s": kernel_s}
    for g in ("ntk", "nngp"):
        best = None
        for reg in (1e-4, 1e-3, 1e-2):  # chosen on the test set: an optimistic upper bound
            post = predict.gp_inference(k_dd, targets, diag_reg=reg, get=g)
            pred = np.asarray(post.predict(k_td, get=g))
            acc = float(np.mean(pred.argmax(1) == yte))
            best = max(best or (0, 0), (acc, reg))
        out[f"{g}_acc"], out[f"{g}_reg"] = best
    accs = []
    # half the largest stable step of the infinite-width NTK (the finite nets' own, by power
    # iteration, is slow for CNNs on 1000 images: see notes_cntk.md)
    lr = 0.5 * float(predict.max_learning_rate(k_dd.ntk, n_outputs=10))
    out["lr"] = lr
    t0 = time.perf_counter()
    for seed in range(2):
        p = sgd(net, xtr, targets, lr, steps=2000, batch=64, seed=seed)
        accs.append(float(np.mean(np.asarray(net.apply(p, xte)).argmax(1) == yte)))
    out["sgd_acc"] = accs
    out["sgd_s"] = (time.perf_counter() - t0) / 2
    return out


def sgd(net, x, y, lr, steps, batch, seed):
    """Minibatch SGD on the loss 1/(2BK) sum (f - y)^2, one jitted step per minibatch.

    (`ntkgp.train.train` runs the same loop as one `lax.scan`; XLA's CPU convolutions inside a
    loop ran ~25x slower than these separate steps: notes_cntk.md.)
    """
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    _, params = net.init(jax.random.PRNGKey(seed), x.shape)
    opt = optax.sgd(lr)
    state = opt.init(params)

    @jax.jit
    def step(p, s, xb, yb):
        g = jax.grad(lambda q: 0.5 * jnp.mean((net.apply(q, xb) - yb) ** 2))(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s

    rng = np.random.default_rng(100 + seed)
    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    for _ in range(steps):
        idx = rng.choice(len(x), batch, replace=False)
        params, state = step(params, state, x[idx], y[idx])
    return params


def run_case(case, repeats):
    import jax.numpy as jnp
    import numpy as np

    if case["kind"] == "shape":  # the one kind neural-tangents' side runs here too
        return kernel_row(case["id"], lambda lib: shaped_cnn(lib, case["shape"]),
                          jnp.asarray(shaped_images(case["shape"], case["n"])), repeats)
    from ntkgp import batching

    info = {}
    if case["kind"] == "cnn":
        net = cnn(case["readout"])
        x = jnp.asarray(_digits(case["n"]))
        if case.get("x2_none"):
            compile_s, ts, out = time_compiled(lambda a: net.kernel(a, None), (x,), repeats)
        else:
            compile_s, ts, out = time_compiled(lambda a, b: net.kernel(a, b), (x, x), repeats)
        info["check"] = float(jnp.mean(out.ntk))
        row = timing_row(case["id"], compile_s, ts, **info)
        if not case.get("x2_none"):  # after the row took the peak memory: rates allocate
            row.update(cnn_limit(case["readout"], x.shape, len(x)))
        return row
    if case["kind"] == "full":
        net = cnn("gap")
        x = _digits()
        with tempfile.TemporaryDirectory() as store:
            t0 = time.perf_counter()
            k = batching.batch(net.kernel, 256, progress=False, store=store)(x, None)
            total = time.perf_counter() - t0
            # resuming a finished store only reads the tiles back
            t0 = time.perf_counter()
            batching.batch(net.kernel, 256, progress=False, store=store)(x, None)
            reread = time.perf_counter() - t0
        info["check"] = float(np.mean(k.ntk))
        info["note"] = (f"{len(x)} images, tiles of 256 with a disk store (first call incl. "
                        f"compile); reading the finished store back: {reread:.2f} s")
        return timing_row(case["id"], 0.0, [total], **info)
    out = accuracy(case["data"])
    info["note"] = (f"{out['data']}: CNTK acc {out['ntk_acc']:.3f} (diag_reg "
                    f"{out['ntk_reg']:g}), NNGP acc {out['nngp_acc']:.3f} (diag_reg "
                    f"{out['nngp_reg']:g}); finite CNN width 64, SGD 2000 steps batch 64, "
                    f"lr {out['lr']:.3g}, 2 seeds: acc {np.mean(out['sgd_acc']):.3f} "
                    f"({', '.join(f'{a:.3f}' for a in out['sgd_acc'])}), "
                    f"{out['sgd_s']:.0f} s per seed; time column = both kernels")
    info["acc"] = out
    return timing_row(case["id"], 0.0, [out["kernel_s"]], **info)


if __name__ == "__main__":
    main("cntk", all_cases, run_case, __file__, __doc__)
