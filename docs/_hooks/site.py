"""mkdocs hooks: what the site takes from the code and the repository at build time.

* Tables that have one declaration in the code are generated, never copied: a page
  holding a marker gets the table in its place (the defaults from
  :func:`edgesplit.config.defaults_markdown`, the stored variables from
  :data:`edgesplit.sweep.schema.VARIABLES`); so does the tutorial page, from the
  notebook the tests run (``examples/tutorial.py``).
* Files the pages link to outside ``docs/`` (figures and tables in ``results/``, the
  examples, the sweep files, the cluster scripts) are added to the site under their
  repository paths, so a link such as ``results/fig3.png`` works in the site and a
  link to a file that does not exist fails the strict build.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, InclusionLevel

ROOT = Path(__file__).resolve().parents[2]
# The repository folders the site carries, and which of their files.
CARRIED = {
    "results": ("*.png", "*.md", "*.json"),
    "examples": ("*",),
    "sweeps": ("*.toml",),
    "scripts": ("*.sh", "slurm/*"),
}


def defaults_table() -> str:
    from edgesplit.config import defaults_markdown

    return defaults_markdown()


def schema_table() -> str:
    """The stored variables as a Markdown table: name, dims, dtype, units, meaning."""
    from edgesplit.sweep.schema import AXES, VARIABLES

    def dims(variable) -> str:
        return ", ".join("axes" if dim == AXES else dim for dim in variable.dims)

    lines = ["| variable | dims | dtype | units | meaning |", "|---|---|---|---|---|"]
    lines += [
        f"| `{v.name}` | {dims(v)} | {v.dtype} | {v.units} | {v.long_name} |" for v in VARIABLES
    ]
    return "\n".join(lines)


def tutorial() -> str:
    """examples/tutorial.py, a notebook in jupytext's percent format, as Markdown: its
    Markdown cells as text, its code cells as Python blocks (not run: the test suite
    runs the notebook, tests/test_examples.py)."""
    cells, text = [], (ROOT / "examples" / "tutorial.py").read_text()
    for cell in text.split("\n# %%")[1:]:  # the first part is jupytext's header
        head, _, body = cell.partition("\n")
        if head.strip() == "[markdown]":
            lines = [line.removeprefix("#").removeprefix(" ") for line in body.splitlines()]
            cells.append("\n".join(lines).strip())
        elif body.strip():
            cells.append(f"```python\n{body.strip()}\n```")
    return "\n\n".join(cells)


MARKERS = {
    "<!-- generated: edgesplit.config.defaults_markdown() -->": defaults_table,
    "<!-- generated: edgesplit.sweep.schema.VARIABLES -->": schema_table,
    "<!-- generated: examples/tutorial.py -->": tutorial,
}


def on_page_markdown(markdown: str, **kwargs) -> str:
    for marker, table in MARKERS.items():
        if marker in markdown:
            markdown = markdown.replace(marker, table())
    return markdown


def on_files(files, config, **kwargs):
    for folder, patterns in CARRIED.items():
        for pattern in patterns:
            for path in sorted((ROOT / folder).rglob(pattern)):
                if path.is_file() and "__pycache__" not in path.parts:
                    uri = path.relative_to(ROOT).as_posix()
                    if files.get_file_from_path(uri) is None:
                        files.append(
                            File(
                                uri,
                                src_dir=str(ROOT),
                                dest_dir=config["site_dir"],
                                use_directory_urls=config["use_directory_urls"],
                                inclusion=InclusionLevel.NOT_IN_NAV,
                            )
                        )
    return files
