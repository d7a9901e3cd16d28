#!/usr/bin/env bash
# Build the wheel and the sdist as a release would (python -m build), install the wheel into a
# clean venv (not editable, no test extra), and use it: a kernel, a prediction, the CLI, and
# the type marker. Usage: .ci/package_check.sh PYTHON_WITH_BUILD
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$1"
WORK="$(mktemp -d)"
"$PY" -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || { cat "$WORK/build.log"; exit 1; }
WHEEL="$(ls "$WORK"/dist/ntkgp-*.whl)"
SDIST="$(ls "$WORK"/dist/ntkgp-*.tar.gz)"
LISTING="$(tar -tzf "$SDIST")"
for f in ntkgp/py.typed ntkgp/__init__.py README.md setup.cfg pyproject.toml; do
  grep -qx "ntkgp-[^/]*/$f" <<<"$LISTING" || { echo "the sdist lacks $f"; exit 1; }
done
python3 -m venv "$WORK/venv"
"$WORK/venv/bin/pip" install -q "$WHEEL"
cd "$WORK"  # away from the source tree: the installed wheel is what gets imported
"$WORK/venv/bin/python" - <<'PY'
import importlib.resources
import numpy as np
import ntkgp
from ntkgp import nn, predict

assert "site-packages" in ntkgp.__file__, ntkgp.__file__
assert importlib.resources.files("ntkgp").joinpath("py.typed").is_file(), "py.typed missing"
net = nn.serial(nn.Dense(1), nn.Relu(), nn.Dense(1))
x = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
y = np.sin(x[:, :1])
k = net.kernel(x, None)
mean = predict.Posterior(net, x, y, mode="nngp", diag_reg=1e-3).predict(x[:5])
assert k.nngp.shape == (20, 20) and mean.shape == (5, 1) and np.all(np.isfinite(mean))
print(f"wheel import OK: ntkgp {ntkgp.__version__} from {ntkgp.__file__}")
PY
"$WORK/venv/bin/ntkgp" --help >/dev/null
echo "package OK: $(basename "$WHEEL"), $(basename "$SDIST")"
