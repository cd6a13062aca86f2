"""Packaging: one version everywhere, no module importing names from the package init, and
a wheel that holds the library alone."""

from __future__ import annotations

import ast
import importlib.metadata
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import ldelib
from ldelib._version import __version__

PACKAGE = Path(ldelib.__file__).parent
ROOT = Path(__file__).resolve().parents[1]


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


def _import_graph(package: Path = PACKAGE) -> tuple[dict[str, set[str]], list[str]]:
    """Every module's imports of the package's modules (type-only ones too), and the
    private names (``_name``, not dunders) that a module imports from another one."""
    modules: dict[str, Path] = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph: dict[str, set[str]] = {}
    private = []
    for name, path in modules.items():
        home = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {alias.name for alias in node.names}
                continue
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                parts = home.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            for alias in node.names:
                if f"{source}.{alias.name}" in modules:  # a submodule
                    deps.add(f"{source}.{alias.name}")
                    continue
                deps.add(source)
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    private.append(f"{name}:{node.lineno}: {alias.name} from {source}")
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph, private


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (its modules in order), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        state[module] = 2
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_import_cycle_and_no_private_names_across_modules():
    # docs/architecture.md says so: layers import only from the layers above them.
    graph, private = _import_graph()
    assert len(graph) > 60 and graph["ldelib.models.mdn"] >= {"ldelib.models.gmm"}
    cycle = _cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])
    assert not private, "private names imported from another module:\n" + "\n".join(private)


def test_the_graph_check_finds_cycles_and_private_names(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub import b\nfrom ._c import _hidden, __version__\n")
    (package / "_c.py").write_text("_hidden = __version__ = 1\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..a import x\n"
    )
    graph, private = _import_graph(package)
    assert graph["pkg.a"] == {"pkg.sub.b", "pkg._c"} and graph["pkg.sub.b"] == {"pkg.a"}
    assert _cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.a"]
    assert private == ["pkg.a:2: _hidden from pkg._c"]


def test_the_library_does_not_import_the_benchmarks():
    # The benchmarks live in the repository, not in the wheel: an import of them from
    # ldelib would fail wherever ldelib is installed.
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            found += [
                f"{path.relative_to(PACKAGE).as_posix()}:{node.lineno}: {name}"
                for name in names
                if name.split(".")[0] in ("benchmarks", "tests")
            ]
    assert not found, "ldelib imports the repository's benchmarks or tests:\n" + "\n".join(found)


@pytest.mark.skipif(not (ROOT / "pyproject.toml").exists(), reason="not a source checkout")
def test_the_wheel_holds_the_library_alone(tmp_path):
    pytest.importorskip("setuptools", minversion="77")  # the build requirement of pyproject
    # A copy of what the build reads: building in the checkout would leave build/ and
    # egg-info there, and stale files in build/ would end up in the next wheel.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source)
    for name in ("ldelib", "benchmarks", "tests"):
        ignore = shutil.ignore_patterns("__pycache__", "results")
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    build = "from setuptools import build_meta; build_meta.build_wheel('dist')"
    result = subprocess.run(
        [sys.executable, "-c", build],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = (source / "dist").glob("ldelib-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    library = {p.relative_to(ROOT).as_posix() for p in (ROOT / "ldelib").rglob("*.py")}
    assert {n for n in names if n.endswith(".py")} == library
    assert "ldelib/py.typed" in names
    others = [
        n for n in names if not n.startswith(("ldelib/", f"ldelib-{__version__}.dist-info/"))
    ]
    assert not others, f"the wheel holds more than the library: {others}"
