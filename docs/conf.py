"""Sphinx configuration: autosummary API, napoleon (Google style), executed MyST notebooks."""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))
os.environ.setdefault("NTKGP_PROGRESS", "0")

project = "ntkgp"
author = "the ntkgp developers"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 copied into the site: math renders offline
    "myst_nb",
]
autosummary_generate = True
autodoc_default_options = {"members": True, "undoc-members": False}
autodoc_typehints = "description"
# long signatures one parameter a line, so that they fit the page
maximum_signature_line_length = 88
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True
nb_execution_mode = "force"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_render_markdown_format = "myst"  # Markdown outputs (the benchmark targets table) with tables
myst_enable_extensions = ["dollarmath", "amsmath"]
exclude_patterns = ["_build", "generated/*.md"]
html_theme = "sphinx_book_theme"  # the scientific Python ecosystem's (JAX, tinygp)
html_title = "ntkgp"
html_static_path = ["_static"]
html_css_files = ["ntkgp.css"]
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
suppress_warnings = ["mystnb.unknown_mime_type"]


def _skip_sklearn_members(app, what, name, obj, skip, options):
    """Methods the estimators inherit or receive from scikit-learn (``score``, ``get_params``,
    ``set_*_request``...) are documented by scikit-learn; their docstrings cite its own labels."""
    module = getattr(obj, "__module__", "") or ""
    if name.startswith("set_") and name.endswith("_request") or module.startswith("sklearn"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_sklearn_members)
