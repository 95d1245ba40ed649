"""A real `edgesplit run` SIGKILLed again and again and resumed: nothing lost, no lies."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from edgesplit.io.sweep_file import parse_sweep
from edgesplit.sweep.runner import run_sweep
from edgesplit.sweep.schema import SCHEMA
from edgesplit.sweep.store import dims_of

SWEEP = """
name = "crash"
schemes = ["proposed", "user_only", "heuristic"]
topologies = 24
seed = 7
chunk = 1

[setup]
num_devices = 5
num_servers = 2
crbs = 6
rrbs = 30
price_step = 0.25

[game]
# The store and run tests need no grid certificate (tests/test_leaders.py checks it).
grid_certificate = false

[axes]
mean_arrival_rate = [4.0, 13.0]
"""

# Points where the run kills itself: while the template is not yet in place, half-way
# through writing a chunk, after writing it but before recording it, just after.
FAILPOINTS = ["chunk-half-written", "chunk-written", "chunk-recorded"]
# Every kind of kill, each at least once, random kills between: a process start each.
KILL_PLAN = [
    ("failpoint", "template-staged"), ("random", None), ("random", None),
    ("failpoint", "chunk-half-written:1"), ("random", None),
    ("failpoint", "chunk-written:2"), ("random", None),
    ("failpoint", "chunk-recorded:1"), ("random", None),
    ("failpoint", "chunk-half-written:2"),
]  # fmt: skip


@pytest.fixture(scope="module")
def env():
    # One device, as the in-process reference runs: a chunk of one topology split over
    # several devices compiles other shapes, which XLA may round differently. Each run
    # loads the first one's compiled program from the tests' cache (conftest.py): a
    # resume costs seconds, not a compile.
    return {**os.environ, "JAX_NUM_CPU_DEVICES": "1"}


def start(sweep_file, store, env, *options, **extra):
    """``edgesplit run`` with ``options``, its environment ``env`` and ``extra``."""
    command = [
        sys.executable,
        "-m",
        "edgesplit",
        "run",
        str(sweep_file),
        "--out",
        str(store),
        "--quiet",
        *options,
    ]
    return subprocess.Popen(
        command, env={**env, **extra}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def read(store) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(store), mode="r")
    return {name: group[name][:] for name in [*SCHEMA, "chunk_done"]}


def assert_recorded_chunks_hold_results(store, expected, sweep):
    """Every chunk recorded as done holds exactly the uninterrupted run's numbers."""
    got = read(store)
    for index in np.flatnonzero(got["chunk_done"]):
        for name in SCHEMA:
            axis = dims_of(name, sweep).index("topology")
            take = lambda a, i=index, ax=axis: np.take(a, [i], axis=ax)  # noqa: E731
            np.testing.assert_array_equal(
                take(got[name]), take(expected[name]), err_msg=f"{name} chunk {index}"
            )


def test_repeated_kills_lose_nothing(tmp_path, env):
    """SIGKILLed at every kind of moment (:data:`KILL_PLAN`): before the template is in
    place, at random while starting, compiling and writing, half-way through a chunk,
    between writing and recording it, just after; every recorded chunk holds the
    uninterrupted run's numbers after each kill, and the last run resumes to its store."""
    sweep = parse_sweep(SWEEP)
    sweep_file = tmp_path / "crash.toml"
    sweep_file.write_text(SWEEP)
    reference = tmp_path / "reference.zarr"
    run_sweep(sweep, reference, progress=False)
    expected = read(reference)
    start(sweep_file, tmp_path / "warm.zarr", env).wait()  # fills the compilation cache

    store = tmp_path / "crash.zarr"
    trace = tmp_path / "trace.log"
    chooser = random.Random(11)
    kinds = []
    for kind, point in KILL_PLAN:
        if kind == "failpoint":
            process = start(
                sweep_file, store, env, EDGESPLIT_TRACE=str(trace), EDGESPLIT_FAILPOINT=point
            )
            process.wait(timeout=300)
        else:
            process = start(sweep_file, store, env, EDGESPLIT_TRACE=str(trace))
            time.sleep(chooser.uniform(0.2, 2.5))
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=300)
        assert process.returncode in (0, -signal.SIGKILL), process.stderr.read()
        assert process.returncode != 0, "the sweep finished before enough kills; make it longer"
        kinds.append(point or "random")
        if store.exists():
            assert_recorded_chunks_hold_results(store, expected, sweep)

    final = start(sweep_file, store, env, EDGESPLIT_TRACE=str(trace))
    assert final.wait(timeout=300) == 0, final.stderr.read()
    got = read(store)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert xr.open_zarr(store).attrs == xr.open_zarr(reference).attrs

    # No chunk was solved again once it was recorded as done.
    recorded = set()
    for line in trace.read_text().splitlines():
        event, index = line.split()
        if event == "solve":
            assert int(index) not in recorded, f"chunk {index} solved again after it was recorded"
        else:
            recorded.add(int(index))
    assert recorded == set(range(sweep.num_chunks))
    assert {kind.split(":")[0] for kind in kinds} == {"random", "template-staged", *FAILPOINTS}
    print(f"survived {len(kinds)} kills:", dict(Counter(kinds)))  # shown with pytest -s
    assert not list(tmp_path.glob(".crash.zarr.template-*")), (
        "a killed run's template was left behind"
    )


def test_two_runs_started_together_make_one_good_store(tmp_path, env):
    sweep_file = tmp_path / "crash.toml"
    sweep_file.write_text(SWEEP)
    reference = tmp_path / "reference.zarr"
    run_sweep(parse_sweep(SWEEP), reference, progress=False)
    store = tmp_path / "twice.zarr"
    first, second = start(sweep_file, store, env), start(sweep_file, store, env)
    for process in (first, second):
        assert process.wait(timeout=600) == 0, process.stderr.read()
    got, expected = read(store), read(reference)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_same_sweep_twice_gives_the_same_files(tmp_path):
    """Deterministic down to the bytes: the same sweep into two stores."""
    sweep = parse_sweep(SWEEP.replace("topologies = 24", "topologies = 4"))
    for name in ("a.zarr", "b.zarr"):
        run_sweep(sweep, tmp_path / name, progress=False)

    def files(root: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
        }

    a, b = files(tmp_path / "a.zarr"), files(tmp_path / "b.zarr")
    assert a.keys() == b.keys() and len(a) > 20
    assert [k for k in a if a[k] != b[k]] == []


def test_a_store_killed_in_one_batch_size_resumes_in_another(tmp_path, env):
    """Killed while a run of 4 chunks per call writes its second batch, resumed asking
    for 3 a call (the 4 chunks left go 2 + 2): the store equals the uninterrupted
    one-chunk-a-call run's, and the resumed run solves exactly the chunks not recorded."""
    text = SWEEP.replace("topologies = 24", "topologies = 10")
    sweep_file = tmp_path / "crash.toml"
    sweep_file.write_text(text)
    reference = tmp_path / "reference.zarr"
    assert start(sweep_file, reference, env, "--batch", "1").wait(timeout=300) == 0
    store = tmp_path / "batched.zarr"
    # The 6th chunk recorded: the second batch (chunks 4-7) half written.
    killed = start(sweep_file, store, env, "--batch", "4", EDGESPLIT_FAILPOINT="chunk-recorded:6")
    assert killed.wait(timeout=300) == -signal.SIGKILL, killed.stderr.read()
    assert list(read(store)["chunk_done"]) == [True] * 6 + [False] * 4
    trace = tmp_path / "trace.log"
    resumed = start(sweep_file, store, env, "--batch", "3", EDGESPLIT_TRACE=str(trace))
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    got, expected = read(store), read(reference)
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    solved = [line.split()[1] for line in trace.read_text().splitlines() if "solve" in line]
    assert solved == ["6", "7", "8", "9"]
