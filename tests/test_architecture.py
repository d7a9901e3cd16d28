"""The layout of ``ntkgp/_src`` keeps its promises (docs/architecture.md): imports go down the
layers only, come from ``ntkgp._src`` (never the public modules), never take another module's
private names, and no module is longer than 400 lines."""

import ast
import os

import pytest

from tests.conftest import ONLY_X32_PASS

pytestmark = ONLY_X32_PASS  # nothing here depends on the dtype

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ntkgp", "_src")
# bottom to top; a module may import from its own layer and the layers before it
LAYERS = [("checks", "util", "progress", "data"), ("kernels", "features"), ("nn",), ("empirical",),
          ("scale",), ("solve",), ("predict", "train"), ("experiments", "estimator"), ("cli",)]
RANK = {name: i for i, group in enumerate(LAYERS) for name in group}


def _modules():
    for folder, _, files in os.walk(SRC):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(folder, f)
                yield os.path.relpath(path, SRC), path


def _layer(rel):
    return rel.split(os.sep)[0].removesuffix(".py")


def _imports(path):
    """``(line, module, names)`` of every import of an ntkgp module (function bodies too)."""
    with open(path) as fh:
        tree = ast.parse(fh.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ntkgp"):
            yield node.lineno, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("ntkgp"):
                    yield node.lineno, a.name, []


MODULES = sorted(m for m in _modules() if m[0] != "__init__.py")


@pytest.mark.parametrize("rel,path", MODULES, ids=[m[0] for m in MODULES])
def test_imports_go_down_the_layers_from_src(rel, path):
    here = RANK[_layer(rel)]
    problems = []
    for line, module, names in _imports(path):
        if module == "ntkgp._version":
            continue
        if not module.startswith("ntkgp._src"):
            problems.append(f"line {line}: imports the public module {module}")
            continue
        parts = module.split(".")[2:]
        targets = [parts[0]] if parts else names  # `from ntkgp._src import checks`
        for t in targets:
            if RANK[t] > here:
                problems.append(f"line {line}: {_layer(rel)} imports {t}, a higher layer")
        private = [n for n in names if n.startswith("_")]
        if private:
            problems.append(f"line {line}: imports private {private} from {module}")
    assert not problems, problems


@pytest.mark.parametrize("rel,path", MODULES, ids=[m[0] for m in MODULES])
def test_modules_stay_under_400_lines(rel, path):
    with open(path) as fh:
        assert sum(1 for _ in fh) < 400


def test_every_folder_is_a_layer():
    folders = {_layer(rel) for rel, _ in MODULES} - {"__init__"}
    assert folders <= set(RANK), folders - set(RANK)
