"""Sphinx configuration of the ldelib documentation.

Build (warnings are errors):

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import sys
from typing import Any

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

import ldelib

project = "ldelib"
author = "the ldelib developers"
copyright = "ldelib developers"
version = release = ldelib.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx-mathjax-offline",  # the package's name, hyphens and all
    "sphinx_copybutton",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Markdown (MyST): $...$ maths, ::: fences, anchors for the headings of every page.
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3

# Maths is typeset by a copy of MathJax served with the site (sphinx-mathjax-offline copies
# it to _static/mathjax), not by one fetched from a CDN: pages read offline, or behind a
# firewall, show formulas rather than raw TeX. tests/test_docs.py fails on any page that
# loads a script or stylesheet from the network.
mathjax_path = "mathjax/tex-chtml.js"

# The copy button leaves out ">>> " and "... " prompts and the output lines of the
# docstring examples, so what it copies runs as it is.
copybutton_prompt_text = r">>> |\.\.\. "
copybutton_prompt_is_regexp = True

# API reference: autodoc directives are written out in docs/api/*.md, so no stub files
# are generated into the source tree.
autosummary_generate = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_preserve_defaults = True
autoclass_content = "class"
napoleon_numpy_docstring = True
napoleon_google_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = False

# Every cross-reference must resolve. Names of other projects (numpy, torch,
# scikit-learn...) cannot: nothing is fetched at build time (no intersphinx).
nitpicky = True
# The types of numpy-style parameter lists ("int, default=None", "array-like of shape
# (n, D)") are free text, read as class names word by word: only ldelib's own are checked.
nitpick_ignore_regex = [
    (r"py:class", r"(?!ldelib\.).*"),
    (
        r"py:.*",
        (
            r"(np|numpy|torch|nn|sklearn|scipy|matplotlib|safetensors|os|io|pathlib|typing"
            r"|collections|datetime|argparse|numbers|typing_extensions|zipfile|subprocess"
            r"|json|tempfile|abc|dataclasses)(\..*)?"
        ),
    ),
    (r"py:class", r"ldelib\.persistence\.registry\.T"),  # a TypeVar
]

html_theme = "furo"
html_title = f"ldelib {release}"
html_static_path = ["_static"]
html_show_sourcelink = False


# --- docstring processing -------------------------------------------------------------


def _doc_comment(module_name: str, attribute: str) -> list[str] | None:
    """The ``#:`` comment of ``attribute`` in ``module_name`` or one of its submodules."""
    from sphinx.errors import PycodeError
    from sphinx.pycode import ModuleAnalyzer

    module = importlib.import_module(module_name)
    names = [module_name]
    if hasattr(module, "__path__"):
        names += [
            f"{module_name}.{m.name}"
            for m in pkgutil.iter_modules(module.__path__)
            if m.name != "__main__"  # importing it would run the command line
        ]
    for name in names:
        try:
            docs = ModuleAnalyzer.for_module(name).find_attr_docs()
        except PycodeError:  # a module without source: nothing to find
            continue
        if ("", attribute) in docs:
            return list(docs[("", attribute)])
    return None


def _process_docstring(
    app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    # A module-level constant is documented by its "#:" comment. Where autodoc looks for
    # one (the package that re-exports it) finds none, it shows the docstring of the
    # constant's type (dict, ndarray...): take the comment from the submodule that
    # defines the constant instead, or nothing.
    if what == "data":
        module_name, _, attribute = name.rpartition(".")
        lines[:] = _doc_comment(module_name, attribute) or []
    # Numbered footnotes ("[1]_", ".. [1]") of the numpy "References" sections: make
    # their labels unique on the page, where several docstrings each have a [1].
    prefix = re.sub(r"[^0-9A-Za-z]+", "-", name).strip("-")
    for i, line in enumerate(lines):
        line = re.sub(r"\[(\d+)\]_", rf"[#{prefix}-\1]_", line)
        lines[i] = re.sub(r"^(\s*)\.\. \[(\d+)\]", rf"\1.. [#{prefix}-\2]", line)


def _skip_foreign_member(
    app: Any, what: str, name: str, obj: Any, skip: bool, options: Any
) -> bool | None:
    """Skip members inherited from scikit-learn or torch: only ldelib's own are shown."""
    target = obj.fget if isinstance(obj, property) else obj
    if callable(target) or isinstance(obj, property):
        module = getattr(target, "__module__", None) or ""
        if not module.startswith("ldelib"):
            return True
    return None


def setup(app: Any) -> None:
    app.connect("autodoc-process-docstring", _process_docstring)
    app.connect("autodoc-skip-member", _skip_foreign_member)
