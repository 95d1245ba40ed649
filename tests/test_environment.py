"""The machine gets in the way: a full disk, a read-only store, a folder that cannot be
made, too little memory, SIGTERM and Ctrl-C. Each is one line on stderr, nothing on
stdout, exit status 2 (or 130, 143), and a store left unchanged or resumable to the
uninterrupted run's."""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
import zarr.storage._local as zarr_local
from test_bad_input import fingerprint
from test_sweep import TINY

import edgesplit
from conftest import one_line
from edgesplit.cli import main
from edgesplit.errors import RunError
from edgesplit.io.sweep_file import parse_sweep
from edgesplit.sweep import runner
from edgesplit.sweep.chunks import ProgramMemory
from edgesplit.sweep.resources import (
    MEMORY_LIMIT,
    largest_batch,
    memory_limit,
    result_bytes,
    template_bytes,
)
from edgesplit.sweep.runner import run_sweep
from edgesplit.sweep.schema import SCHEMA

RECORDED = [*SCHEMA, "chunk_done"]


def read(store) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(store), mode="r")
    return {name: group[name][:] for name in RECORDED}


def assert_same(store, reference):
    got, expected = read(store), read(reference)
    for name in RECORDED:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The tests' tiny sweep file (3 chunks) and its uninterrupted store."""
    root = tmp_path_factory.mktemp("tiny")
    (root / "tiny.toml").write_text(TINY)
    run_sweep(parse_sweep(TINY), root / "reference.zarr", progress=False)
    return root / "tiny.toml", root / "reference.zarr"


def unfinished_copy(reference: Path, store: Path) -> Path:
    """A copy of the finished store with its last chunk not recorded: a run to resume."""
    shutil.copytree(reference, store)
    zarr.open_group(str(store), mode="r+")["chunk_done"][2] = False
    return store


def failing_put(monkeypatch, folder: str, nth: int, code: int) -> list[Path]:
    """Make the ``nth`` chunk file written into the array ``folder`` fail with ``code``;
    return the chunk files tried there."""
    put, tried = zarr_local._put, []

    def put_or_fail(path, value, exclusive=False):
        if path.parent.name == folder and not path.name.startswith("."):
            tried.append(path)
            if len(tried) == nth:
                raise OSError(code, os.strerror(code), str(path))
        return put(path, value, exclusive=exclusive)

    monkeypatch.setattr(zarr_local, "_put", put_or_fail)
    return tried


@pytest.mark.parametrize(
    "folder, code",
    [("delay", errno.ENOSPC), ("chunk_done", errno.EDQUOT), ("certificate", errno.EROFS)],
    ids=["disk full mid-chunk", "quota at the record", "read-only mid-chunk"],
)
def test_a_failed_chunk_write_is_one_line_and_resumes(
    tiny, tmp_path, monkeypatch, capsys, folder, code
):
    sweep_file, reference = tiny
    store = tmp_path / "store.zarr"
    tried = failing_put(monkeypatch, folder, 2, code)  # chunk 1's file
    assert main(["run", str(sweep_file), "--out", str(store), "--quiet"]) == 2
    line = one_line(capsys, f"edgesplit: error: {store}: writing chunk 1 failed: ")
    assert f"{os.strerror(code)} ({errno.errorcode[code]})" in line, line
    assert "1 of 3 chunks recorded" in line and "rerun the same command" in line, line
    assert len(tried) == 2
    assert list(read(store)["chunk_done"]) == [True, False, False]  # nothing recorded untrue

    monkeypatch.undo()
    assert main(["run", str(sweep_file), "--out", str(store), "--quiet"]) == 0
    assert_same(store, reference)


def test_a_full_disk_while_writing_the_template_leaves_no_store(
    tiny, tmp_path, capsys, monkeypatch
):
    sweep_file, _ = tiny
    store = tmp_path / "store.zarr"

    def full(path, value, exclusive=False):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(zarr_local, "_put", full)
    assert main(["init", str(sweep_file), "--out", str(store)]) == 2
    line = one_line(capsys, f"edgesplit: error: {store}: ")
    assert "No space left on device" in line, line
    assert list(tmp_path.iterdir()) == []  # no store, no staged template


@pytest.mark.parametrize("how", ["permissions", "read-only filesystem"])
def test_a_read_only_store_is_refused_before_compiling(tiny, tmp_path, capsys, monkeypatch, how):
    """Simulated (os.access says no, or creating a file fails with EROFS), so that it
    also holds when the tests run as root."""
    sweep_file, reference = tiny
    store = unfinished_copy(reference, tmp_path / "store.zarr")
    before = fingerprint(store)
    access, open_ = os.access, os.open

    def inside(path) -> bool:
        return any(Path(path) == s or s in Path(path).parents for s in (store, reference))

    def read_only(path, mode, *args, **kwargs):
        return False if inside(path) and mode & os.W_OK else access(path, mode, *args, **kwargs)

    def read_only_filesystem(path, flags, *args, **kwargs):
        if inside(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return open_(path, flags, *args, **kwargs)

    def no_compiling(*args, **kwargs):
        raise AssertionError("compiled before checking that the store is writable")

    if how == "permissions":
        monkeypatch.setattr(os, "access", read_only)
    else:
        monkeypatch.setattr(os, "open", read_only_filesystem)
    monkeypatch.setattr(runner, "chunk_solver", no_compiling)
    start = time.perf_counter()
    assert main(["run", str(sweep_file), "--out", str(store), "--quiet"]) == 2
    assert time.perf_counter() - start < 10
    line = one_line(capsys, f"edgesplit: error: {store}: the store is not writable")
    assert "nothing was changed" in line, line
    if how != "permissions":
        assert "Read-only file system (EROFS)" in line, line
    assert fingerprint(store) == before
    # A finished store needs no writing: a rerun is fine even when it is read-only.
    assert main(["run", str(sweep_file), "--out", str(reference), "--quiet"]) == 0


def test_a_store_folder_that_cannot_be_made(tiny, tmp_path, capsys, monkeypatch):
    sweep_file, _ = tiny
    store = tmp_path / "not allowed" / "store.zarr"
    mkdir = Path.mkdir

    def forbidden(self, *args, **kwargs):
        if self == store.parent:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", forbidden)
    assert main(["run", str(sweep_file), "--out", str(store), "--quiet"]) == 2
    line = one_line(capsys, f"edgesplit: error: {store}: ")
    assert "Permission denied" in line, line
    assert list(tmp_path.iterdir()) == []


def test_an_unusable_compile_cache_is_one_line(tiny, tmp_path):
    sweep_file, _ = tiny
    (tmp_path / "a-file").write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "edgesplit", "run", str(sweep_file), "--out",
         str(tmp_path / "store.zarr")],
        env={**os.environ, "EDGESPLIT_COMPILE_CACHE": str(tmp_path / "a-file" / "cache")},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"edgesplit: error: {tmp_path / 'a-file' / 'cache'}: ")
    assert "EDGESPLIT_COMPILE_CACHE" in result.stderr and not (tmp_path / "store.zarr").exists()


def test_a_billion_topologies_are_refused_before_allocating(tiny, tmp_path, capsys):
    sweep_file, _ = tiny
    huge = tmp_path / "huge.toml"
    huge.write_text(TINY.replace("topologies = 6", "topologies = 1000000000"))
    store = tmp_path / "huge.zarr"
    for command in ("run", "init"):
        start = time.perf_counter()
        assert main([command, str(huge), "--out", str(store)]) == 2
        assert time.perf_counter() - start < 10
        line = one_line(capsys, "edgesplit: error: topologies: 1000000000 topologies ")
        assert "TiB" in line and "fewer topologies" in line, line
    assert main(["run", str(sweep_file), "--out", str(store), "--topologies", "1000000000"]) == 2
    one_line(capsys, "edgesplit: error: topologies: ")
    assert not store.exists()
    with pytest.raises(RunError, match=r"^topologies: .* to hold in memory"):
        edgesplit.run(parse_sweep(TINY).replace(topologies=10**9))


def million_point_grid(topologies: int) -> str:
    rates = ", ".join(f"{1 + i / 100:g}" for i in range(1000))
    rewards = ", ".join(f"{0.5 + i / 1000:g}" for i in range(1000))
    return (
        TINY.replace("topologies = 6", f"topologies = {topologies}")
        .replace("chunk = 2", f"chunk = {topologies}")
        .replace("mean_arrival_rate = [4.0, 13.0]", f"mean_arrival_rate = [{rates}]")
        + f"reward = [{rewards}]\n"
    )


def test_a_million_point_grid_is_refused(tmp_path, capsys, monkeypatch):
    sweep = tmp_path / "grid.toml"
    store = tmp_path / "grid.zarr"
    # On this machine's own memory: ten thousand topologies per chunk need terabytes
    # (one topology, 2.3 GB: on a machine with less available, the grid is named).
    sweep.write_text(million_point_grid(10_000))
    assert main(["run", str(sweep), "--out", str(store), "--quiet"]) == 2
    line = one_line(capsys)
    assert line.startswith(
        (
            "edgesplit: error: chunk: a chunk of 10000 topologies × 1000000 ",
            "edgesplit: error: axes: ",
        )
    ), line
    assert "TiB of memory" in line or line.startswith("edgesplit: error: axes: "), line
    # Under a limit that not even one topology fits: the grid is too large.
    monkeypatch.setenv(MEMORY_LIMIT, "1G")
    sweep.write_text(million_point_grid(1))
    assert main(["run", str(sweep), "--out", str(store), "--quiet"]) == 2
    line = one_line(capsys, "edgesplit: error: axes: one topology at each of 1000000 grid points")
    assert f"allowed by {MEMORY_LIMIT}" in line and "fewer axis values" in line, line
    assert not store.exists()


def test_a_memory_limit_refuses_a_tiny_sweep_naming_chunk(tiny, tmp_path, capsys, monkeypatch):
    sweep_file, _ = tiny
    store = tmp_path / "store.zarr"
    trace = tmp_path / "trace.log"
    monkeypatch.setenv("EDGESPLIT_TRACE", str(trace))
    # Before anything is built: 300 topologies' results in a megabyte.
    monkeypatch.setenv(MEMORY_LIMIT, "1M")
    args = ["run", str(sweep_file), "--out", str(store), "--quiet"]
    assert main([*args, "--topologies", "600", "--chunk", "300"]) == 2
    line = one_line(capsys, "edgesplit: error: chunk: a chunk of 300 topologies × 2 grid points ")
    assert f"allowed by {MEMORY_LIMIT}" in line and "use chunk = " in line, line
    assert not store.exists()

    # After compiling, before solving: the programs' own memory (XLA's analysis) does
    # not fit, though the results alone would.
    sweep = parse_sweep(TINY)
    _, memory = runner.batch_solver(sweep, sweep.num_chunks)  # as the run compiles it
    assert memory is not None and memory.per_device > 0
    results = result_bytes(sweep, sweep.chunk)
    held = template_bytes(sweep)
    need = held + memory.devices * (memory.per_device + memory.outputs) + results
    limit = int(held + 0.75 * (need - held))
    assert held + 3 * results < limit  # the cheap check passes
    monkeypatch.setenv(MEMORY_LIMIT, str(limit))
    assert main(args) == 2
    line = one_line(capsys, "edgesplit: error: chunk: a chunk of 2 topologies × 2 grid points ")
    assert "with the compiled chunk programs" in line and "use chunk = 1 or less" in line, line
    assert "solve" not in (trace.read_text() if trace.exists() else "")
    assert not store.exists()  # the refused run removed the store it made
    monkeypatch.setenv(MEMORY_LIMIT, "off")
    assert main(args) == 0


def test_a_batch_that_does_not_fit_is_refused_naming_batch(tiny, tmp_path, capsys, monkeypatch):
    """Under a limit that one chunk a call fits but not three, after compiling and
    before solving: ``--batch 3`` is refused naming ``--batch``, ``--batch 1`` runs."""
    sweep_file, _ = tiny
    sweep = parse_sweep(TINY)

    def need(batch):  # as the run compiles and counts it: the devices' programs and results
        _, memory = runner.batch_solver(sweep, sweep.num_chunks, batch)
        return (
            template_bytes(sweep)
            + memory.devices * (memory.per_device + memory.outputs)
            + result_bytes(sweep, batch * sweep.chunk)
        )

    one, three = need(1), need(3)
    assert one < three
    monkeypatch.setenv(MEMORY_LIMIT, str((one + three) // 2))
    store = tmp_path / "store.zarr"
    args = ["run", str(sweep_file), "--out", str(store), "--quiet"]
    assert main([*args, "--batch", "3"]) == 2
    line = one_line(capsys, "edgesplit: error: --batch: 3 chunks per call need about ")
    assert f"allowed by {MEMORY_LIMIT}" in line and "use --batch " in line, line
    assert not store.exists()  # the refused run removed the store it made
    assert main([*args, "--batch", "1"]) == 0


def test_an_accelerator_batch_leaves_a_fifth_of_its_memory(monkeypatch):
    """The batch chosen from XLA's analysis of the programs for a batch: memory grows in
    proportion to it, and 80% of a device's free memory is used."""
    monkeypatch.setenv(MEMORY_LIMIT, "off")
    sweep = parse_sweep(TINY)
    # 100 chunks a call need 70 + 30 kB a device; 80% of its 20 kB free holds 16 chunks.
    memory = ProgramMemory(70_000, 30_000, devices=1, platform="gpu", device_limit=20_000)
    assert largest_batch(sweep, memory, 100) == 16
    assert largest_batch(sweep, memory.__class__(700, 300, 1, "gpu", 20_000), 1) == 1
    assert largest_batch(sweep, None, 7) == 7  # no analysis: as asked


def test_the_memory_limit_override(monkeypatch):
    for given, expected in [("123", 123), ("2K", 2048), ("1.5G", 3 << 29), ("8 GiB", 8 << 30)]:
        monkeypatch.setenv(MEMORY_LIMIT, given)
        assert memory_limit() == (expected, f"allowed by {MEMORY_LIMIT}")
    monkeypatch.setenv(MEMORY_LIMIT, "off")
    assert memory_limit()[0] is None
    monkeypatch.setenv(MEMORY_LIMIT, "lots")
    with pytest.raises(edgesplit.InputError, match=f"^{MEMORY_LIMIT}: must be a number"):
        memory_limit()
    monkeypatch.delenv(MEMORY_LIMIT)
    available, source = memory_limit()
    assert available > 0 and ("available" in source or "cgroup" in source)


def test_init_prints_a_worker_command_that_runs_as_printed(tmp_path, capsys):
    folder = tmp_path / "my sweeps"
    folder.mkdir()
    sweep_file = folder / "tiny sweep.toml"
    sweep_file.write_text(TINY)
    store = tmp_path / "my stores" / "tiny's store.zarr"
    assert main(["init", str(sweep_file), "--out", str(store), "--topologies", "4"]) == 0
    line = one_line(capsys, f"{store}: 0 of 2 chunks done; run workers with: edgesplit run ")
    command = line.split("run workers with: ", 1)[1].strip()
    words = shlex.split(command.replace("I/N", "0/1"))
    assert words[0] == "edgesplit" and str(store) in words and str(sweep_file) in words
    assert main(words[1:]) == 0
    assert list(read(store)["chunk_done"]) == [True, True]


# Signals need a process of their own.

LONG = TINY.replace("topologies = 6", "topologies = 24").replace("chunk = 2", "chunk = 1")


@pytest.fixture(scope="module")
def long_sweep(tmp_path_factory):
    """A sweep of 24 one-topology chunks, its uninterrupted store (run as the tests'
    processes run), and their environment: one device, and the command lines' compile
    cache of the tests (conftest.py), kept between runs."""
    root = tmp_path_factory.mktemp("long")
    (root / "long.toml").write_text(LONG)
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "1"}
    reference = root / "reference.zarr"
    first = start(root / "long.toml", reference, env)
    assert first.wait(timeout=300) == 0, first.stderr.read()
    return root / "long.toml", reference, env


def start(sweep_file, store, env, **extra):
    # A child keeps an ignored SIGINT (pytest started by nohup, or as a shell's background
    # job) and starts a handled one at its default: handled here while the child starts,
    # the signal tests do not depend on the shell pytest was started from.
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "edgesplit", "run", str(sweep_file), "--out", str(store),
             "--quiet"],
            env={**env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "SIGTERM mid-write"])
def test_a_signal_stops_the_run_in_one_line_and_it_resumes(long_sweep, tmp_path, how):
    sweep_file, reference, env = long_sweep
    store, trace = tmp_path / "store.zarr", tmp_path / "trace.log"
    name = how.split()[0]
    if how.endswith("mid-write"):  # arrives with chunk 3 half written: held until recorded
        process = start(
            sweep_file, store, env, EDGESPLIT_TRACE=str(trace),
            EDGESPLIT_FAILPOINT=f"chunk-half-written:4:{name}",
        )  # fmt: skip
    else:  # from outside, once the first chunk is recorded
        process = start(sweep_file, store, env, EDGESPLIT_TRACE=str(trace))
        deadline = time.monotonic() + 300
        while "done 0" not in (trace.read_text() if trace.exists() else ""):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        process.send_signal(getattr(signal, name))
    out, err = process.communicate(timeout=300)
    assert process.returncode == 128 + getattr(signal, name), err
    assert out == "" and err.count("\n") == 1, err
    recorded = int(read(store)["chunk_done"].sum())
    assert err == (
        f"edgesplit: interrupted by {name}: {recorded} of 24 chunks recorded in {store}; "
        "rerun the same command to resume\n"
    )
    assert 1 <= recorded < 24
    if how.endswith("mid-write"):
        assert recorded == 4  # the chunk being written when the signal came is in
    assert trace.read_text().count("done") == recorded
    resumed = start(sweep_file, store, env)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert_same(store, reference)
