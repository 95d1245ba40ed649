"""The public Python API: its names import, a sweep in memory equals its store, and the
layers import only what lies below them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from test_sweep import TINY, assert_same_store

import edgesplit
from edgesplit.io.sweep_file import parse_sweep

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "edgesplit"


def test_public_names_are_importable():
    """Every name of ``edgesplit.__all__`` imports (docs/api.md documents each one:
    tests/test_docs.py); an unknown name is an AttributeError."""
    for name in edgesplit.__all__:
        assert callable(getattr(edgesplit, name)) or name == "__version__"
    with pytest.raises(AttributeError):
        edgesplit.no_such_name  # noqa: B018


def test_run_in_memory_equals_the_store(tmp_path):
    sweep = parse_sweep(TINY)
    in_memory = edgesplit.run(sweep)
    stored = edgesplit.run(sweep, tmp_path / "tiny.zarr")
    assert set(in_memory.data_vars) == set(stored.data_vars)
    for name in in_memory.data_vars:
        assert in_memory[name].dims == stored[name].dims, name
        assert in_memory[name].dtype == stored[name].dtype, name
    assert_same_store(
        {name: in_memory[name].values for name in in_memory.data_vars},
        {name: stored[name].values for name in stored.data_vars},
    )
    for coord in in_memory.coords:
        np.testing.assert_array_equal(in_memory[coord].values, stored[coord].values)
    assert in_memory.attrs == stored.attrs


def test_float64_sweep_needs_jax_64_bit_mode():
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(edgesplit.InputError, match=r"^precision: float64 needs JAX's 64-bit"):
            edgesplit.run(parse_sweep(TINY))
    finally:
        jax.config.update("jax_enable_x64", True)


def test_import_starts_no_jax():
    """``import edgesplit`` imports its names on first use, so the command line starts
    fast and a notebook's JAX settings stay its own."""
    probe = "import sys, edgesplit; print(sorted({'jax', 'xarray', 'zarr'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# What each layer may not import: a kernel knows nothing of batches, files or stores.
UPPER = ("edgesplit.analysis", "edgesplit.cli")
FORBIDDEN = {
    "model": ("edgesplit.game", "edgesplit.sweep", "edgesplit.io", *UPPER),
    "game": ("edgesplit.sweep", "edgesplit.io", *UPPER),
    "sweep": ("edgesplit.io", *UPPER),
    "io": UPPER,
    "analysis": ("edgesplit.cli",),
}
THIRD_PARTY_IO = ("xarray", "zarr", "tqdm", "dask", "matplotlib")


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at its top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers_import_only_what_lies_below(layer):
    forbidden = FORBIDDEN[layer] + (THIRD_PARTY_IO if layer in ("model", "game") else ())
    files = sorted((PACKAGE / layer).glob("*.py"))
    assert files
    for path in files:
        for module in imported_modules(path):
            assert not module.startswith(forbidden), f"{path.name} imports {module}"


def test_the_layering_check_sees_imports():
    """The check above parses imports, top-level and inside functions, as they are."""
    names = imported_modules(PACKAGE / "sweep" / "runner.py")
    assert "tqdm" in names and "edgesplit.sweep.store" in names


def test_kernels_load_without_the_file_and_store_layers():
    """Importing every module of model/ and game/ (and what they import in turn) loads
    no module of sweep/, io/, nor xarray, zarr or tqdm."""
    modules = [
        f"edgesplit.{layer}.{path.stem}"
        for layer in ("model", "game")
        for path in sorted((PACKAGE / layer).glob("*.py"))
        if path.stem != "__init__"
    ]
    probe = (
        f"import importlib, sys; [importlib.import_module(m) for m in {modules!r}]; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('xarray', 'zarr', 'tqdm', 'dask', 'matplotlib') or "
        "m.startswith(('edgesplit.sweep', 'edgesplit.io', 'edgesplit.analysis'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_reference_is_independent():
    """The plain-Python oracle imports the standard library only: no kernel, no NumPy."""
    assert imported_modules(PACKAGE / "reference.py") <= {
        "__future__", "__future__.annotations", "math", "dataclasses", "dataclasses.dataclass"
    }  # fmt: skip
