"""Run a sweep: into its store (or one worker's share of it), resuming where an earlier
run stopped; or in memory, for a notebook."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from edgesplit.errors import InputError
from edgesplit.sweep.chunks import chunk_solver
from edgesplit.sweep.faults import trace
from edgesplit.sweep.identity import build
from edgesplit.sweep.integrity import checksum, damaged_chunks
from edgesplit.sweep.interrupts import checkpoint, signals_deferred
from edgesplit.sweep.resources import (
    check_memory,
    check_programs,
    check_writable,
    os_failures,
    stops_cleanly,
)
from edgesplit.sweep.spec import Sweep
from edgesplit.sweep.store import (
    as_stored,
    chunk_region,
    open_or_create,
    open_store,
    template,
    to_store_layout,
    write_chunk,
)


@dataclass(frozen=True)
class Share:
    """Worker ``index`` of ``count`` takes chunks index, index + count, ...: the chunks of
    a sweep cost about the same, so round robin balances them."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str, field: str = "--worker") -> Share:
        """'I/N' with 0 <= I < N, as in ``--worker $SLURM_ARRAY_TASK_ID/$COUNT``."""
        index, slash, count = text.partition("/")
        if not (slash and index.strip().isdigit() and count.strip().isdigit()):
            raise InputError(field, f"must be I/N (worker I of N, counted from 0), got {text!r}")
        share = cls(int(index), int(count))
        if not 0 <= share.index < share.count:
            raise InputError(field, f"needs 0 <= I < N, got {text!r}")
        return share

    def chunks(self, num_chunks: int) -> range:
        return range(self.index, num_chunks, self.count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def run(sweep: Sweep, out: str | Path | None = None, *, progress: bool = False) -> xr.Dataset:
    """Run ``sweep`` and return its results as a Dataset with the store's schema.

    With ``out``, the results go to the store there (created, or resumed as
    ``edgesplit run`` would) and the opened store is returned. Without it the sweep is
    solved in memory, every chunk held at once: for sweeps that fit in memory.
    """
    if out is not None:
        run_sweep(sweep, out, progress=progress)
        return open_store(out)
    check_memory(sweep, in_memory=True)
    # Deep: dask computes the template's equal zero arrays once, shared between variables.
    dataset = template(sweep).load().copy(deep=True)
    todo = range(sweep.num_chunks)
    with _progress_bar(sweep, len(todo), len(todo), progress) as bar:
        for index, arrays in _solved_chunks(sweep, todo, bar, in_memory=True):
            for name, value in arrays.items():
                dataset[name].values[chunk_region(name, sweep, index)] = value
            dataset["chunk_checksum"].values[index] = checksum(as_stored(sweep, arrays))
            dataset["chunk_build"].values[index] = build()
            dataset["chunk_done"].values[index] = True
    dataset.attrs["finished_topologies"] = sweep.topologies  # as open_store says
    return dataset


@stops_cleanly
def run_sweep(
    sweep: Sweep,
    path: str | Path,
    *,
    progress: bool = True,
    share: Share = Share(),
    allow_build: bool = False,
) -> int:
    """Solve every chunk of ``share`` the store does not record as done; return how many
    were solved. Workers with disjoint shares may run at the same time on one store.

    The chunks recorded as done are first checked cheaply (their checksums and files
    present; ``edgesplit verify`` reads them back): one that is not is an InputError.
    ``allow_build`` lets another edgesplit build add results to the store.

    Nothing is built before the sweep is checked to fit in memory, nothing compiles
    before the store is checked to be writable; an OSError (a full disk, a read-only
    store) is a RunError and Ctrl-C an :class:`~edgesplit.errors.Interrupted`, both
    saying how many chunks are recorded (the store stays intact and resumable)."""
    check_memory(sweep)
    done = open_or_create(path, sweep, allow_build=allow_build, workers=share.count)
    damaged = damaged_chunks(path, full=False)
    if damaged:
        index, why = min(damaged.items())
        raise InputError(
            str(path), f"chunk {index} is recorded but {why}; run `edgesplit verify {path} "
            "--repair`, then rerun to solve it again",
        )  # fmt: skip
    mine = share.chunks(sweep.num_chunks)
    todo = [i for i in mine if not done[i]]
    if not todo:
        return 0
    check_writable(path)  # before compiling: a read-only store fails in a second
    desc = sweep.name if share.count == 1 else f"{sweep.name} [{share}]"
    with _progress_bar(sweep, len(mine), len(todo), progress, desc) as bar:
        for index, arrays in _solved_chunks(sweep, todo, bar):
            # A signal waits for the chunk's record; a failed write records nothing.
            with signals_deferred(), os_failures(path, f"writing chunk {index}", sweep):
                write_chunk(path, sweep, index, arrays)
    return len(todo)


def _progress_bar(sweep: Sweep, total: int, todo: int, shown: bool, desc: str | None = None):
    from tqdm import tqdm

    return tqdm(
        total=total, initial=total - todo, unit="chunk", disable=not shown,
        desc=desc or sweep.name, dynamic_ncols=True,
    )  # fmt: skip


def _solved_chunks(
    sweep: Sweep, todo, bar, *, in_memory: bool = False
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Each chunk of ``todo`` solved, as (index, the store's arrays), in order; the bar
    advances as each is taken (written) by the caller. The compiled programs are
    checked to fit in memory (with the whole Dataset when ``in_memory``) before the
    first chunk is solved."""
    solver = chunk_solver(sweep)
    bar.set_postfix_str("compiling")
    checkpoint()
    check_programs(sweep, solver.compile(), in_memory=in_memory)
    taken, previous = time.perf_counter(), None

    def stored(index: int, result):
        return index, to_store_layout(sweep, result, len(sweep.chunk_range(index)))

    for index in todo:
        checkpoint()  # a signal Python dropped (see resources.interrupts_raise) stops here
        trace("solve", index)
        # Dispatched, not awaited: the devices solve this chunk while the caller writes
        # the one before it. The shapes never change, so nothing compiles again.
        current = index, solver(sweep.chunk_range(index).start)
        if previous is not None:
            yield stored(*previous)
            taken = _advance(bar, sweep, taken)
        previous = current
    if previous is not None:
        yield stored(*previous)
        _advance(bar, sweep, taken)


def _advance(bar, sweep: Sweep, since: float) -> float:
    """Count a chunk done on the bar, with the rate since the last; return the time."""
    now = time.perf_counter()
    bar.set_postfix(solves_per_s=f"{sweep.solves_per_chunk / (now - since):.0f}")
    bar.update()
    return now
