"""The command line at its edges (issue 33, findings 5 to 7): a signal at any moment, a
closed or failing stdout, a refused run, odd paths, files and settings. Each is one
line on stderr and a non-zero exit, never a traceback; in process, no JAX compiled."""

from __future__ import annotations

import codecs
import json
import os
import sys
from pathlib import Path

import pytest
from test_bad_input import fingerprint
from test_scenario_file import EXAMPLE
from test_sweep import TINY

import edgesplit.config
import edgesplit.io.scenario_file
import edgesplit.sweep.store
from conftest import one_line
from edgesplit.cli import main
from edgesplit.errors import RunError
from edgesplit.io.scenario_file import read_scenario
from edgesplit.sweep import runner
from edgesplit.sweep.resources import MEMORY_LIMIT

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def sweep_file(tmp_path) -> Path:
    (tmp_path / "tiny.toml").write_text(TINY)
    return tmp_path / "tiny.toml"


# Each command, and the function its first step calls (where a signal is made to land
# inside an import).
FIRST_STEPS = {
    "defaults": (edgesplit.config, "defaults_markdown"),
    "solve": (edgesplit.io.scenario_file, "read_scenario"),
    "summarize": (edgesplit.sweep.store, "open_store"),
}


@pytest.mark.parametrize("command", FIRST_STEPS)
def test_a_signal_inside_an_import_stops_the_command(command, tmp_path, monkeypatch, capsys):
    """Finding 5: SIGTERM landing while a command imports what it needs (which holds
    the signal until the import returns) stops the command with status 143 and one
    line: no output, not a success."""
    signal_on_import = "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n"
    (tmp_path / "sigterm_now.py").write_text(signal_on_import)
    monkeypatch.syspath_prepend(tmp_path)
    module, name = FIRST_STEPS[command]
    first_step = getattr(module, name)

    def importing_first(*args, **kwargs):
        import sigterm_now  # noqa: F401

        return first_step(*args, **kwargs)

    monkeypatch.setattr(module, name, importing_first)
    monkeypatch.delitem(sys.modules, "sigterm_now", raising=False)
    argv = {"defaults": [], "solve": [str(tmp_path / "s.json")], "summarize": [str(tmp_path)]}
    assert main([command, *argv[command]]) == 143
    one_line(capsys, "edgesplit: interrupted by SIGTERM")


def test_a_closed_or_failing_stdout_is_reported(monkeypatch, capsys):
    """Finding 5: output that cannot be written is one line and status 2, not a
    silent success."""
    monkeypatch.setattr(sys, "stdout", None)  # as Python starts with stdout closed
    assert main(["defaults"]) == 2
    one_line(capsys, "edgesplit: error: stdout: is closed; nothing was written")
    with open("/dev/full", "w") as full:
        monkeypatch.setattr(sys, "stdout", full)
        assert main(["defaults"]) == 2
    one_line(capsys, "edgesplit: error: stdout: writing failed: No space left on device")


def test_a_refused_run_leaves_no_store(sweep_file, tmp_path, monkeypatch, capsys):
    """Finding 6: a run refused after its store was made (here, by the check of its
    compiled programs' memory) removes the store it made, so that the advice it gives
    can be followed; a store that was there before is kept as it was."""

    def too_large(*args, **kwargs):
        raise RunError("chunk", "a chunk of 2 topologies needs about 9 GiB; use chunk = 1 or less")

    monkeypatch.setattr(runner, "batch_solver", too_large)
    store = tmp_path / "new.zarr"
    assert main(["run", str(sweep_file), "--out", str(store), "--quiet"]) == 2
    one_line(capsys, "edgesplit: error: chunk: a chunk of 2 topologies")
    assert not store.exists()
    assert main(["init", str(sweep_file), "--out", str(store)]) == 0
    capsys.readouterr()
    before = fingerprint(store)
    assert main(["run", str(sweep_file), "--out", str(store), "--quiet"]) == 2
    one_line(capsys, "edgesplit: error: chunk: ")
    assert fingerprint(store) == before


def test_files_with_a_byte_order_mark_are_read(tmp_path, capsys):
    """Finding 6: a sweep, a profile or a scenario saved with a UTF-8 byte-order mark
    reads as the file without it."""
    bom = codecs.BOM_UTF8
    profile = (ROOT / "src/edgesplit/data/imc.csv").read_bytes()
    (tmp_path / "mine.csv").write_bytes(bom + profile)
    text = TINY.replace("[setup]\n", '[setup]\nmodels = ["mine.csv", "asr"]\n')
    (tmp_path / "tiny.toml").write_bytes(bom + text.encode())
    store = tmp_path / "tiny.zarr"
    assert main(["init", str(tmp_path / "tiny.toml"), "--out", str(store)]) == 0
    one_line(capsys, f"{store}: 0 of 3 chunks done")
    (tmp_path / "plain.csv").write_bytes(profile)
    (tmp_path / "plain.toml").write_text(text.replace("mine.csv", "plain.csv"))
    # The same store: the same contents, whatever the profile's name.
    assert main(["init", str(tmp_path / "plain.toml"), "--out", str(store)]) == 0
    capsys.readouterr()
    (tmp_path / "scenario.json").write_bytes(bom + json.dumps(EXAMPLE).encode())
    assert read_scenario(tmp_path / "scenario.json").device_models[0] == "alexnet"


def test_odd_paths_names_and_settings_are_one_line(sweep_file, tmp_path, monkeypatch, capsys):
    """Finding 7: a symbolic link loop as --out, a NUL character in a sweep's name, an
    EDGESPLIT_MEMORY_LIMIT of 400 digits: one line, status 2, nothing written."""
    loop = tmp_path / "loop"
    os.symlink(loop, loop)
    assert main(["init", str(sweep_file), "--out", str(loop)]) == 2
    one_line(capsys, f"edgesplit: error: {loop}: is a loop of symbolic links")

    (tmp_path / "nul.toml").write_text('name = "a\\u0000b"\n' + TINY.replace('name = "tiny"\n', ""))
    monkeypatch.chdir(tmp_path)  # the default store, results/NAME.zarr, would go here
    assert main(["init", "nul.toml"]) == 2
    one_line(capsys, "edgesplit: error: name: must be a non-empty string without '/' or control")

    monkeypatch.setenv(MEMORY_LIMIT, "9" * 400)
    store = tmp_path / "tiny.zarr"
    assert main(["run", str(sweep_file), "--out", str(store), "--quiet"]) == 2
    one_line(capsys, f"edgesplit: error: {MEMORY_LIMIT}: must be at most 1.0 EiB (or off)")
    assert not store.exists() and not (tmp_path / "results").exists()
