"""The documentation stays true: the site builds with ``mkdocs build --strict``, every
Python snippet of the README, the pages and the package docstring runs as written, the
generated tables are the code's, the API reference has every public name, and the tests
the pages cite exist."""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

import edgesplit
from edgesplit.cli import DESCRIPTION, main
from edgesplit.config import GameSettings, Setup, defaults_markdown
from edgesplit.sweep.schema import SCHEMA

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
PYTHON_SNIPPET = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)


def python_snippets(text: str) -> list[str]:
    return PYTHON_SNIPPET.findall(text)


def texts_with_snippets() -> dict[str, str]:
    """Every text whose Python snippets a reader may run, by where it is."""
    return {
        "README.md": (ROOT / "README.md").read_text(),
        **{f"docs/{page.name}": page.read_text() for page in PAGES},
        "the package docstring": edgesplit.__doc__,
    }


def test_snippets_run(monkeypatch):
    """Each text's snippets run in order in one namespace, from the repository root, as a
    reader would paste them; a failing one names its text and number in the traceback."""
    monkeypatch.chdir(ROOT)
    names = {}
    for where, text in texts_with_snippets().items():
        namespace = {"__name__": "__main__"}
        for number, code in enumerate(python_snippets(text), 1):
            exec(compile(code, f"{where}, python snippet {number}", "exec"), namespace)
        names[where] = namespace
    # The extraction finds what is there (a pattern that matched nothing would pass).
    counts = {where: len(python_snippets(text)) for where, text in texts_with_snippets().items()}
    assert counts["README.md"] == 1 and counts["the package docstring"] == 1, counts
    assert counts["docs/getting-started.md"] >= 2, counts
    # What the README's and the docstring's examples say they make.
    ds = names["README.md"]["ds"]
    assert isinstance(ds, xr.Dataset) and set(SCHEMA) <= set(ds.data_vars)
    assert ds.sizes["topology"] == 4 and bool(ds.chunk_done.all())
    assert not np.isnan(names["README.md"]["gain"].difference.values).any()
    docstring = names["the package docstring"]
    assert isinstance(docstring["ds"], xr.Dataset)
    assert isinstance(docstring["solution"], edgesplit.Solution)


def test_site_builds(tmp_path):
    """``mkdocs build --strict`` (a broken link, anchor or page, or a docstring that does
    not render, is a warning and fails it); the pages it makes hold what they promise."""
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    defaults = (site / "defaults" / "index.html").read_text()
    for field in dataclasses.fields(Setup) + dataclasses.fields(GameSettings):
        assert f"<code>{field.name}</code>" in defaults, field.name
    api = (site / "api" / "index.html").read_text()
    for name in public_names():
        path = f"{getattr(edgesplit, name).__module__}.{name}"
        assert f'id="{path}"' in api, f"{name} is not rendered in the API reference"
    assert (site / "results" / "fig3.png").exists()
    assert (site / "examples" / "capacity.json").exists()


def public_names() -> list[str]:
    return [name for name in edgesplit.__all__ if name != "__version__"]


def test_the_api_reference_has_every_public_name():
    """docs/api.md has one ``::: MODULE.NAME`` line per name of ``edgesplit.__all__``."""
    lines = set((DOCS / "api.md").read_text().splitlines())
    for name in public_names():
        path = f"{getattr(edgesplit, name).__module__}.{name}"
        assert f"::: {path}" in lines, f"docs/api.md lacks the line '::: {path}'"


def docs_hook(name: str):
    """A module of docs/_hooks/, as mkdocs and griffe load it (from its path)."""
    spec = importlib.util.spec_from_file_location(name, DOCS / "_hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_tables_are_the_codes():
    hooks = docs_hook("site")
    defaults = hooks.on_page_markdown((DOCS / "defaults.md").read_text())
    assert defaults_markdown() in defaults
    stores = hooks.on_page_markdown((DOCS / "sweeps.md").read_text())
    for variable in SCHEMA.values():
        assert f"| `{variable.name}` |" in stores and variable.long_name in stores, variable.name


def test_the_docstrings_rest_becomes_markdown():
    markdown = docs_hook("rest_roles").markdown
    text = "See :func:`~edgesplit.game.solve.solve`, :mod:`edgesplit.game`.\n\nFormat::\n\n    x\n"
    assert markdown(text) == "See `solve`, `edgesplit.game`.\n\nFormat:\n\n    x\n"
    assert markdown("Sweep files.\n\n::\n\n    x\n") == "Sweep files.\n\n\n    x\n"


def test_cited_tests_exist():
    """Every ``tests/FILE.py::NAME`` the pages cite is a test function of that file."""
    cited = set()
    for page in [*PAGES, ROOT / "README.md"]:
        cited |= set(re.findall(r"(tests/test_\w+\.py)::(test_\w+)", page.read_text()))
    assert len(cited) > 20
    for file, name in sorted(cited):
        tree = ast.parse((ROOT / file).read_text())
        functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert name in functions, f"{file}::{name} is cited but does not exist"


def test_one_version_everywhere(capsys):
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    changelog = re.search(r"^## \[(.+?)\]", (ROOT / "CHANGELOG.md").read_text(), flags=re.M)
    assert str(citation["version"]) == changelog[1] == version
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"edgesplit {version}\n"


def test_help_is_plain_text(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert " ".join(DESCRIPTION.split()) in " ".join(out.split())  # whole, not cut
    assert "``" not in out and ":func:" not in out
