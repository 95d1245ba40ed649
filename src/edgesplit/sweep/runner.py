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
from edgesplit.sweep.spec import Sweep
from edgesplit.sweep.store import (
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
    # Deep: dask computes the template's equal zero arrays once, shared between variables.
    dataset = template(sweep).load().copy(deep=True)
    todo = range(sweep.num_chunks)
    with _progress_bar(sweep, len(todo), len(todo), progress) as bar:
        for index, arrays in _solved_chunks(sweep, todo, bar):
            for name, value in arrays.items():
                dataset[name].values[chunk_region(name, sweep, index)] = value
            dataset["chunk_done"].values[index] = True
    return dataset


def run_sweep(
    sweep: Sweep, path: str | Path, *, progress: bool = True, share: Share = Share()
) -> int:
    """Solve every chunk of ``share`` the store does not record as done; return how many
    were solved. Workers with disjoint shares may run at the same time on one store."""
    done = open_or_create(path, sweep)
    mine = share.chunks(sweep.num_chunks)
    todo = [i for i in mine if not done[i]]
    if not todo:
        return 0
    desc = sweep.name if share.count == 1 else f"{sweep.name} [{share}]"
    with _progress_bar(sweep, len(mine), len(todo), progress, desc) as bar:
        for index, arrays in _solved_chunks(sweep, todo, bar):
            write_chunk(path, sweep, index, arrays)
    return len(todo)


def _progress_bar(sweep: Sweep, total: int, todo: int, shown: bool, desc: str | None = None):
    from tqdm import tqdm

    return tqdm(
        total=total, initial=total - todo, unit="chunk", disable=not shown,
        desc=desc or sweep.name, dynamic_ncols=True,
    )  # fmt: skip


def _solved_chunks(sweep: Sweep, todo, bar) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Each chunk of ``todo`` solved, as (index, the store's arrays), in order; the bar
    advances as each is taken (written) by the caller."""
    solver = chunk_solver(sweep)
    bar.set_postfix_str("compiling")
    solver.compile()
    taken, previous = time.perf_counter(), None

    def stored(index: int, result):
        return index, to_store_layout(sweep, result, len(sweep.chunk_range(index)))

    for index in todo:
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
