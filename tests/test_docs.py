"""The documentation is complete: every public name in the API reference, with a
Google-style docstring, and every page in a toctree. (The benchmark runner's own tests are in
``benchmarks/test_runner.py``.)"""

import importlib
import importlib.util
import inspect
import os
import re
import types

import pytest

import ntkgp
from tests.conftest import ONLY_X32_PASS

pytestmark = ONLY_X32_PASS  # nothing here depends on the dtype

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = [m for m in ntkgp.MODULES if m != "cli"]  # the command line: docs/cli.md


def _public(mod):
    m = importlib.import_module(f"ntkgp.{mod}")
    names = getattr(m, "__all__", None) or [n for n in dir(m) if not n.startswith("_")]
    return [(n, getattr(m, n)) for n in names if not isinstance(getattr(m, n), types.ModuleType)]


@pytest.mark.parametrize("mod", MODULES)
def test_every_public_name_is_in_the_api_reference(mod):
    with open(os.path.join(ROOT, "docs", "api.md")) as fh:
        api = fh.read()
    section = api[api.index(f"`ntkgp.{mod}`"):]
    section = section[:section.find("\n## ", 1)] if "\n## " in section[1:] else section
    missing = [n for n, _ in _public(mod)
               if not re.search(rf"^\s+{re.escape(n)}\s*$|`{re.escape(n)}`", section, re.M)]
    assert not missing, f"ntkgp.{mod}: not in its section of docs/api.md: {missing}"


@pytest.mark.parametrize("mod", MODULES)
def test_public_functions_have_google_style_docstrings(mod):
    bad = []
    for name, obj in _public(mod):
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue  # constants are described in api.md
        doc = inspect.getdoc(obj) or ""
        if len(doc) < 40:
            bad.append(f"{name}: docstring too short")
        if inspect.isfunction(obj):
            params = [p for p in inspect.signature(obj).parameters.values()]
            if params and "Args:" not in doc:
                bad.append(f"{name}: no Args section")
            if "Returns:" not in doc:
                bad.append(f"{name}: no Returns section")
        if "Args:" in doc and "Returns:" in doc and doc.index("Args:") > doc.index("Returns:"):
            bad.append(f"{name}: Args after Returns")
        if "\t" in doc:
            bad.append(f"{name}: a tab in the docstring (an unescaped backslash-t?)")
    assert not bad, f"ntkgp.{mod}: " + "; ".join(bad)


def test_every_docs_page_is_in_a_toctree():
    pages = []
    for d, _, files in os.walk(os.path.join(ROOT, "docs")):
        if "generated" in d or "_build" in d:
            continue
        pages += [os.path.relpath(os.path.join(d, f), os.path.join(ROOT, "docs"))[:-3]
                  for f in files if f.endswith(".md")]
    toc = ""
    for p in pages:
        with open(os.path.join(ROOT, "docs", p + ".md")) as fh:
            toc += "\n".join(re.findall(r"```\{toctree\}(.*?)```", fh.read(), re.S))
    listed = set(re.findall(r"^\s*([\w/]+)\s*$", toc, re.M))
    orphans = [p for p in pages if p != "index" and p not in listed]
    assert not orphans, f"docs pages in no toctree: {orphans}"
