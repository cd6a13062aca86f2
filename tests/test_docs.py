"""The documentation under docs/: its examples run, each on its own, its API reference is
complete, its pages and links resolve, the results files it cites are linked, and the
built site loads nothing from the network.

Most tests read the Markdown sources; those of the built site build it (with warnings as
errors, as ``python -m sphinx -W --keep-going -b html docs docs/_build/html`` does), which
needs the ``docs`` extra, and skip without Sphinx.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

import ldelib
from ldelib.persistence import registry

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.relative_to(DOCS).parts)

#: The modules whose ``__all__`` is public API, each documented under docs/api/.
PUBLIC_MODULES = (
    "ldelib",
    "ldelib.autoencoders",
    "ldelib.base",
    "ldelib.cli",
    "ldelib.compare",
    "ldelib.datasets",
    "ldelib.density",
    "ldelib.distributed",
    "ldelib.incremental",
    "ldelib.latent",
    "ldelib.metrics",
    "ldelib.models",
    "ldelib.nn",
    "ldelib.ood",
    "ldelib.peers",
    "ldelib.persistence",
    "ldelib.plot",
    "ldelib.training",
)

SKIP_MARKER = "<!-- skip-test -->"


def _name(page: Path) -> str:
    return page.relative_to(DOCS).as_posix()


def _blocks(page: Path) -> list[tuple[int, str, str, bool]]:
    """The fenced blocks of a page: (line number, info string, code, skipped)."""
    return _blocks_of(page.read_text(encoding="utf-8").splitlines())


def _blocks_of(lines: list[str]) -> list[tuple[int, str, str, bool]]:
    blocks = []
    i = 0
    while i < len(lines):
        opening = re.match(r"^(\s*)(`{3,}|~{3,})\s*([^`\s]*)", lines[i])
        if not opening:
            i += 1
            continue
        indent, fence, info = opening.groups()
        start = i
        body = []
        i += 1
        while i < len(lines) and not re.match(
            rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$", lines[i]
        ):
            line = lines[i]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            i += 1
        previous = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
        blocks.append((start + 1, info, "\n".join(body) + "\n", previous == SKIP_MARKER))
        i += 1
    return blocks


def _without_code(text: str) -> str:
    """The page with the lines of its fenced blocks blanked out."""
    out, fence = [], None
    for line in text.splitlines():
        opening = re.match(r"^\s*(`{3,}|~{3,})", line)
        if fence is None and opening:
            fence = opening.group(1)
            out.append("")
        elif fence is not None:
            if re.match(rf"^\s*{re.escape(fence)}\s*$", line):
                fence = None
            out.append("")
        else:
            out.append(line)
    return "\n".join(out)


# Directives whose body is Markdown (a figure's caption, a note), not code.
PROSE_DIRECTIVES = re.compile(r"^\{(figure|note|tip|warning|important|seealso|admonition)\}")


def _prose(text: str) -> str:
    """The page with the lines of its code blocks blanked out; directives holding
    Markdown, such as a figure and its caption, are kept."""
    lines = text.splitlines()
    for line, info, body, _ in _blocks_of(lines):
        if not PROSE_DIRECTIVES.match(info):
            for i in range(line - 1, min(line + body.count("\n") + 1, len(lines))):
                lines[i] = ""
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# Every Python example runs, each on its own
# ---------------------------------------------------------------------------------------
# A reader copies one block, not the page: every block brings its own imports and data,
# so each runs in a fresh namespace (and a fresh working directory).
PYTHON_BLOCKS = [
    (page, line, code)
    for page in PAGES
    for line, info, code, skipped in _blocks(page)
    if info == "python" and not skipped
]


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """A temporary working directory; torch's global generator and the class registry
    are put back afterwards, so the examples leave no trace on the other tests."""
    monkeypatch.chdir(tmp_path)
    tables = (registry._REGISTRY, registry._NAMES)  # the examples register a class
    saved = [dict(table) for table in tables]
    state = torch.random.get_rng_state()
    yield tmp_path
    torch.random.set_rng_state(state)
    for table, before in zip(tables, saved, strict=True):
        table.clear()
        table.update(before)


@pytest.mark.parametrize(
    ("page", "line", "code"), PYTHON_BLOCKS, ids=[f"{_name(p)}:{n}" for p, n, _ in PYTHON_BLOCKS]
)
def test_python_example_runs_on_its_own(page, line, code, isolated):
    namespace: dict[str, object] = {"__name__": f"docs:{_name(page)}:{line}"}
    try:
        exec(compile(code, f"{page}:{line}", "exec"), namespace)  # noqa: S102 - our pages
    except Exception as error:
        raise AssertionError(
            f"the Python block at {_name(page)}:{line} failed on its own (each block needs "
            f"its own imports and data): {error!r}"
        ) from error


def test_skipped_examples_are_few():
    skipped = [(_name(p), line) for p in PAGES for line, _, _, s in _blocks(p) if s]
    assert len(skipped) <= 3, f"too many examples opt out of testing: {skipped}"


# ---------------------------------------------------------------------------------------
# Every public name is in the API reference
# ---------------------------------------------------------------------------------------
def _documented() -> tuple[set[str], set[str]]:
    """The objects and modules that docs/api/*.md document with a directive."""
    objects: set[str] = set()
    modules: set[str] = set()
    directive = re.compile(r"^\s*\.\. (?:auto|py:)?(\w+)::\s+(\S+)")
    for page in sorted((DOCS / "api").glob("*.md")):
        current = ""
        for line in page.read_text(encoding="utf-8").splitlines():
            found = directive.match(line)
            if not found:
                continue
            kind, target = found.groups()
            if kind in ("module", "currentmodule"):
                current = target
                if kind == "module":
                    modules.add(target)
            else:
                objects.add(target if target.startswith("ldelib") else f"{current}.{target}")
    return objects, modules


def _canonical(module_name: str, name: str) -> str:
    """Where a public name is documented: under ``ldelib`` when the package re-exports
    the same object, else under its module."""
    obj = getattr(importlib.import_module(module_name), name)
    if name in ldelib.__all__ and getattr(ldelib, name) is obj:
        return f"ldelib.{name}"
    return f"{module_name}.{name}"


def test_every_public_module_is_listed():
    children = {
        f"ldelib.{m.name}"
        for m in pkgutil.iter_modules(ldelib.__path__)
        if not m.name.startswith("_")
    }
    assert children <= set(PUBLIC_MODULES), (
        f"new public modules {sorted(children - set(PUBLIC_MODULES))}: add them to "
        "PUBLIC_MODULES here and document them under docs/api/"
    )


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_is_documented(module_name):
    objects, modules = _documented()
    assert module_name in modules, f"docs/api/ has no `.. automodule:: {module_name}`"
    module = importlib.import_module(module_name)
    missing = [
        _canonical(module_name, name)
        for name in module.__all__
        if _canonical(module_name, name) not in objects
    ]
    assert not missing, f"public names without an autodoc directive in docs/api/: {missing}"


def test_every_name_is_documented_once():
    seen: dict[str, int] = {}
    directive = re.compile(r"^\s*\.\. auto(?:class|function|data|exception)::\s+(\S+)")
    for page in (DOCS / "api").glob("*.md"):
        for line in page.read_text(encoding="utf-8").splitlines():
            found = directive.match(line)
            if found:
                seen[found.group(1)] = seen.get(found.group(1), 0) + 1
    assert not [n for n, count in seen.items() if count > 1 and "." in n]


# ---------------------------------------------------------------------------------------
# Every page is reachable, every relative link and image exists
# ---------------------------------------------------------------------------------------
def _toctree_entries(page: Path) -> list[Path]:
    entries = []
    for _, info, body, _ in _blocks(page):
        if info != "{toctree}":
            continue
        for line in body.splitlines():
            line = line.strip()
            if line and not line.startswith(":"):
                target = page.parent / (line if line.endswith(".md") else f"{line}.md")
                entries.append(target.resolve())
    return entries


def test_every_page_is_in_a_toctree():
    root = (DOCS / "index.md").resolve()
    reached, queue = {root}, [root]
    while queue:
        page = queue.pop()
        for entry in _toctree_entries(page):
            assert entry.exists(), f"{_name(page)}: toctree entry {entry} does not exist"
            if entry not in reached:
                reached.add(entry)
                queue.append(entry)
    unreached = [_name(p) for p in PAGES if p.resolve() not in reached]
    assert not unreached, f"pages in no toctree: {unreached}"


def _slug(heading: str) -> str:
    """The anchor MyST gives a heading (myst_heading_anchors)."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = _without_code(page.read_text(encoding="utf-8"))
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+)$", text, re.MULTILINE)}


LINK = re.compile(r"!?\[[^\]]*\]\(\s*([^)\s]+)\s*\)")
FIGURE = re.compile(r"^\s*```\{(?:figure|image)\}\s+(\S+)", re.MULTILINE)


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_relative_links_and_images_exist(page):
    raw = page.read_text(encoding="utf-8")
    targets = [m.group(1) for m in LINK.finditer(_without_code(raw))] + FIGURE.findall(raw)
    broken = []
    for target in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:...
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page.resolve()
        # A missing file, or a missing heading of a page (anchors only once it exists).
        if not file.exists() or (file.suffix == ".md" and anchor and anchor not in _anchors(file)):
            broken.append(target)
    assert not broken, f"{_name(page)}: broken relative links or images: {broken}"


# ---------------------------------------------------------------------------------------
# Every results file cited is linked, to a page of the site that shows it
# ---------------------------------------------------------------------------------------
RESULTS = DOCS.parent / "benchmarks" / "results"
RESULTS_PAGES = DOCS / "results"
# A results file named in code: `toy.md`, `results/toy.md` or `benchmarks/results/toy.md`.
CITATION = re.compile(r"`(?:(?:benchmarks/)?results/)?([\w.-]+\.md)`")


def _results_files() -> list[str]:
    return sorted(p.name for p in RESULTS.glob("*.md"))


@pytest.mark.parametrize("name", _results_files())
def test_every_results_file_has_a_page(name):
    page = RESULTS_PAGES / name
    assert page.exists(), f"docs/results/{name} is missing: add a page that includes it"
    text = page.read_text(encoding="utf-8")
    included = re.findall(r"^```\{include\}\s+(\S+)", text, re.MULTILINE)
    assert [(page.parent / target).resolve() for target in included] == [RESULTS / name], (
        f"docs/results/{name} must include benchmarks/results/{name}, and only it"
    )


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_cited_results_files_are_linked(page):
    text = _prose(page.read_text(encoding="utf-8"))
    unlinked, wrong = [], []
    for found in CITATION.finditer(text):
        name = found.group(1)
        if name not in _results_files():
            continue  # another project file (the README of a folder, SUITE.md...)
        link = re.match(r"\]\(\s*([^)\s]+)\s*\)", text[found.end() :])
        if text[found.start() - 1 : found.start()] != "[" or link is None:
            unlinked.append(found.group(0))
            continue
        target = (page.parent / link.group(1).partition("#")[0]).resolve()
        if target != (RESULTS_PAGES / name).resolve():
            wrong.append(f"{found.group(0)} -> {link.group(1)}")
    assert not unlinked, (
        f"{_name(page)} cites results files without linking them: {unlinked}; write "
        f"[`NAME.md`](RELATIVE/results/NAME.md), which links the page of docs/results/"
    )
    assert not wrong, f"{_name(page)} links results files to the wrong page: {wrong}"


# ---------------------------------------------------------------------------------------
# The built site: no network, copy buttons, the results pages
# ---------------------------------------------------------------------------------------
class _Assets(HTMLParser):
    """The scripts, stylesheets and other resources a page loads (not the links it shows)."""

    def __init__(self) -> None:
        super().__init__()
        self.loaded: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("script", "img", "iframe", "source", "audio", "video", "embed"):
            self.loaded.append(values.get("src") or "")
        elif tag == "link" and values.get("rel") not in ("canonical", "next", "prev"):
            self.loaded.append(values.get("href") or "")
        elif tag == "object":
            self.loaded.append(values.get("data") or "")


def _loaded(page: Path) -> list[str]:
    parser = _Assets()
    parser.feed(page.read_text(encoding="utf-8"))
    return [url for url in parser.loaded if url]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The HTML site, built as CI builds it (every warning an error)."""
    pytest.importorskip("sphinx", reason="the docs extra builds the site")
    out = tmp_path_factory.mktemp("site")
    command = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
    build = subprocess.run(
        [*command, "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, f"the docs build failed:\n{build.stdout}{build.stderr}"
    return out / "html"


def _html_pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if "_static" not in p.parts)


@pytest.mark.slow
def test_site_loads_nothing_from_the_network(site):
    remote = {
        f"{page.relative_to(site)}: {url}"
        for page in _html_pages(site)
        for url in _loaded(page)
        if re.match(r"^\s*(https?:)?//", url, re.IGNORECASE)
    }
    # Stylesheets can load fonts and other stylesheets themselves.
    for sheet in (site / "_static").rglob("*.css"):
        for url in re.findall(
            r"(?:url\(|@import)\s*['\"]?\s*((?:https?:)?//[^'\")\s]+)",
            sheet.read_text(encoding="utf-8", errors="replace"),
        ):
            remote.add(f"{sheet.relative_to(site)}: {url}")
    assert not remote, f"the site loads from the network: {sorted(remote)}"


@pytest.mark.slow
def test_maths_is_typeset_by_the_served_mathjax(site):
    page = site / "guide" / "autoencoders.html"
    html = page.read_text(encoding="utf-8")
    assert 'class="math' in html, "the page chosen for this test has no maths any more"
    scripts = [url for url in _loaded(page) if "mathjax" in url.lower()]
    assert scripts, "the maths of guide/autoencoders.html loads no MathJax"
    for url in scripts:
        assert (page.parent / url.split("?")[0]).is_file(), f"{url} is not in the site"
    fonts = site / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2"
    assert any(fonts.glob("*.woff")), "MathJax's fonts are not served with the site"


@pytest.mark.slow
def test_code_blocks_have_a_copy_button(site):
    for name in ("getting-started.html", "api/models.html"):
        page = site / name
        assert "highlight" in page.read_text(encoding="utf-8"), f"{name} has no code block"
        scripts = [url for url in _loaded(page) if url.split("?")[0].endswith("copybutton.js")]
        assert scripts, f"{name} has no copy button"
        assert (page.parent / scripts[0].split("?")[0]).is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", _results_files())
def test_results_pages_are_built(site, name):
    page = site / "results" / f"{Path(name).stem}.html"
    assert page.is_file(), f"{name} has no page in the built site"
    heading = (RESULTS / name).read_text(encoding="utf-8").lstrip("# \n").splitlines()[0]
    shown = re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8"))
    words = re.sub(r"[`*]", "", heading).split()[:3]
    assert " ".join(words) in re.sub(r"\s+", " ", shown), f"{page} does not show {name}"
