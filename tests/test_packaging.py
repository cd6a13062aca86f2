"""Packaging: one version everywhere, and no module importing names from the package init."""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

import ldelib
from ldelib._version import __version__

PACKAGE = Path(ldelib.__file__).parent


def test_installed_metadata_has_the_package_version():
    assert importlib.metadata.version("ldelib") == ldelib.__version__ == __version__


def _imports_of_the_package_init(path: Path, package: Path = PACKAGE) -> list[str]:
    """``from . import NAME`` (or ``from .. import``, ``from ldelib import``) reaching
    ``ldelib/__init__.py`` for a name that is not a submodule of the package."""
    relative = path.relative_to(package)
    top_level = len(relative.parts)  # the ImportFrom level that names ``ldelib`` itself
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        relative_top = node.level == top_level and not node.module
        absolute_top = node.level == 0 and node.module == "ldelib"
        if not (relative_top or absolute_top):
            continue
        for alias in node.names:
            name = alias.name
            if (package / f"{name}.py").exists() or (package / name / "__init__.py").exists():
                continue  # a submodule: imported on its own, not read off the package init
            found.append(f"{relative.as_posix()}:{node.lineno}: {name}")
    return found


def test_no_module_imports_names_from_the_package_init():
    # The package init imports the modules: a module that reads a name back from it
    # depends on the order of that file (``__version__`` must come before the imports).
    found = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "__init__.py"
        for hit in _imports_of_the_package_init(path)
    ]
    assert not found, "import these from their own modules:\n" + "\n".join(found)


def test_the_check_finds_what_it_looks_for(tmp_path):
    package = tmp_path / "ldelib"
    (package / "sub").mkdir(parents=True)
    (package / "models.py").write_text("")
    (package / "top.py").write_text("from . import __version__\nfrom . import models\n")
    (package / "sub" / "deep.py").write_text(
        "from .. import load\nfrom . import sibling\nfrom ldelib import GMM\n"
    )
    found = _imports_of_the_package_init(package / "top.py", package)
    assert found == ["top.py:1: __version__"]
    assert _imports_of_the_package_init(package / "sub" / "deep.py", package) == [
        "sub/deep.py:1: load",
        "sub/deep.py:3: GMM",
    ]
