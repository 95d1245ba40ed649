"""Run a sweep: into its store (or one worker's share of it), resuming where an earlier
run stopped; or in memory, for a notebook."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import xarray as xr

from edgesplit.errors import InputError, RunError
from edgesplit.sweep.chunks import ChunkSolver, ProgramMemory, chunk_solver
from edgesplit.sweep.faults import trace
from edgesplit.sweep.identity import build, sweep_attribute
from edgesplit.sweep.integrity import checksum, damaged_chunks
from edgesplit.sweep.interrupts import checkpoint, signals_deferred
from edgesplit.sweep.resources import (
    check_memory,
    check_programs,
    check_writable,
    largest_batch,
    os_failures,
    stops_cleanly,
)
from edgesplit.sweep.spec import Sweep
from edgesplit.sweep.store import (
    as_stored,
    chunk_region,
    chunks_done,
    open_or_create,
    open_store,
    template,
    to_store_layout,
    with_equilibrium,
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


def run(
    sweep: Sweep,
    out: str | Path | None = None,
    *,
    progress: bool = False,
    batch: int | None = None,
) -> xr.Dataset:
    """Run ``sweep`` and return its results as a Dataset with the store's schema.

    With ``out``, the results go to the store there (created, or resumed as
    ``edgesplit run`` would) and the opened store is returned. Without it the sweep is
    solved in memory, every chunk held at once: for sweeps that fit in memory.
    ``batch``: chunks per compiled call, as ``edgesplit run --batch`` (default: chosen
    per device, :func:`batch_solver`); it changes the speed, never the results.
    """
    if out is not None:
        run_sweep(sweep, out, progress=progress, batch=batch)
        return open_store(out)
    _check_batch(batch)
    check_memory(sweep, in_memory=True)
    # Deep: dask computes the template's equal zero arrays once, shared between variables.
    dataset = template(sweep).load().copy(deep=True)
    todo = list(range(sweep.num_chunks))
    with _progress_bar(sweep, len(todo), len(todo), progress) as bar:
        for index, arrays in _solved_chunks(sweep, todo, bar, in_memory=True, batch=batch):
            for name, value in arrays.items():
                dataset[name].values[chunk_region(name, sweep, index)] = value
            dataset["chunk_checksum"].values[index] = checksum(as_stored(sweep, arrays))
            dataset["chunk_build"].values[index] = build()
            dataset["chunk_done"].values[index] = True
    dataset.attrs["finished_topologies"] = sweep.topologies  # as open_store says
    return with_equilibrium(dataset)


@stops_cleanly
def run_sweep(
    sweep: Sweep,
    path: str | Path,
    *,
    progress: bool = True,
    share: Share = Share(),
    allow_build: bool = False,
    batch: int | None = None,
) -> int:
    """Solve every chunk of ``share`` the store does not record as done; return how many
    were solved. Workers with disjoint shares may run at the same time on one store.

    The chunks recorded as done are first checked cheaply (their checksums and files
    present; ``edgesplit verify`` reads them back): one that is not is an InputError.
    ``allow_build`` lets another edgesplit build add results to the store. ``batch``:
    chunks per compiled call (default: chosen per device, :func:`batch_solver`); each
    chunk is written and recorded on its own whatever the batch.

    Nothing is built before the sweep is checked to fit in memory, nothing compiles
    before the store is checked to be writable; an OSError (a full disk, a read-only
    store) is a RunError and Ctrl-C an :class:`~edgesplit.errors.Interrupted`, both
    saying how many chunks are recorded (the store stays intact and resumable). A store
    this run made is removed again when the run is refused before it records a chunk."""
    _check_batch(batch)
    check_memory(sweep)
    done, created = open_or_create(path, sweep, allow_build=allow_build, workers=share.count)
    try:
        return _run_chunks(sweep, path, done, progress=progress, share=share, batch=batch)
    except (InputError, RunError):
        # A refused run leaves no store behind that it made and recorded nothing in
        # (one made for a chunk too large would then refuse the chunk advised).
        if created and share.count == 1 and not chunks_done(path).any():
            shutil.rmtree(path, ignore_errors=True)
        raise


def _run_chunks(
    sweep: Sweep, path: str | Path, done: np.ndarray, *, progress: bool, share: Share,
    batch: int | None,
) -> int:  # fmt: skip
    """:func:`run_sweep`'s work once the store is there: ``done`` says which chunks are."""
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
        for index, arrays in _solved_chunks(sweep, todo, bar, batch=batch):
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


def _check_batch(batch) -> None:
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise InputError("--batch", f"must be a whole number of chunks, 1 or more, got {batch!r}")


# The games of one scheme's queue, per device, that a batch chosen for an accelerator
# holds at most: it bounds the work a crash loses and the results held on the host.
# Measured on an H200 (results/bench/bench-gpu.md), one queue solved 35,200 games/s at
# 2,000 games and 47,800/s at 10,000; scripts/gpu_check.sh measures past that.
ACCELERATOR_GAMES = 100_000


def balanced(batch: int, chunks: int) -> int:
    """Chunks per call for ``chunks`` chunks at most ``batch`` a call, in as few calls
    and with as little padding as can be: 9 chunks at most 8 a call go 5 + 4, not 8 + 1."""
    calls = -(-chunks // max(min(batch, chunks), 1))
    return -(-chunks // calls)


def batch_solver(
    sweep: Sweep, chunks: int, batch: int | None = None, *, in_memory: bool = False
) -> tuple[ChunkSolver, ProgramMemory | None]:
    """The solver for ``chunks`` chunks to do, compiled, and its programs' memory.

    ``batch`` chunks per call when given. Otherwise one on CPU (where larger batches
    are no faster, the documentation's Performance page), and on an accelerator as many as hold
    :data:`ACCELERATOR_GAMES` games per device and scheme, or fewer to fit the
    device's and the host's memory: the programs are compiled for that batch and, when
    XLA's memory analysis of them says they do not fit, compiled again for the batch
    that does (memory grows about in proportion to it). Either way the calls are
    :func:`balanced`."""
    devices = jax.local_devices()
    if batch is not None or devices[0].platform == "cpu":
        return _compiled(sweep, balanced(batch or 1, chunks))
    games = sweep.chunk * sweep.setup_points / len(devices)  # of a scheme's queue, a chunk
    batch = max(int(ACCELERATOR_GAMES // games), 1)
    for _ in range(3):
        solver = chunk_solver(sweep, batch=balanced(batch, chunks))
        memory = solver.compile()
        fit = largest_batch(sweep, memory, solver.batch, in_memory=in_memory)
        if fit >= solver.batch or solver.batch == 1:
            break
        batch = max(fit, 1)
    return solver, memory


_COMPILED: dict[tuple, tuple[ChunkSolver, ProgramMemory | None]] = {}
_COMPILED_KEPT = 4


def _compiled(sweep: Sweep, batch: int) -> tuple[ChunkSolver, ProgramMemory | None]:
    """:func:`~edgesplit.sweep.chunks.chunk_solver` for ``batch`` chunks a call, compiled,
    and its programs' memory; the last few are kept, so that a sweep run again in this
    process (a notebook's cell, a resumed run) neither traces nor compiles again. They
    are known by everything they depend on: the resolved sweep, the batch, the devices
    and JAX's float width."""
    key = (sweep_attribute(sweep), batch, tuple(jax.local_devices()), jax.config.jax_enable_x64)
    if key not in _COMPILED:
        solver = chunk_solver(sweep, batch=batch)
        _COMPILED[key] = (solver, solver.compile())
        while len(_COMPILED) > _COMPILED_KEPT:
            del _COMPILED[next(iter(_COMPILED))]  # the oldest
    return _COMPILED[key]


def _solved_chunks(
    sweep: Sweep, todo: list[int], bar, *, in_memory: bool = False, batch: int | None = None
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Each chunk of ``todo`` solved, as (index, the store's arrays), in order, a batch
    of chunks per compiled call (:func:`batch_solver`); the bar advances as each is
    taken (written) by the caller. The compiled programs are checked to fit in memory
    (with the whole Dataset when ``in_memory``) before the first call."""
    bar.set_postfix_str("compiling")
    checkpoint()
    solver, memory = batch_solver(sweep, len(todo), batch, in_memory=in_memory)
    check_programs(sweep, memory, in_memory=in_memory, batch=solver.batch)
    batches = [todo[i : i + solver.batch] for i in range(0, len(todo), solver.batch)]
    taken, pending = time.perf_counter(), None
    for chunks in [*batches, None]:
        dispatched = None
        if chunks is not None:
            checkpoint()  # a signal Python dropped (see resources.interrupts_raise) stops here
            for index in chunks:
                trace("solve", index)
            # Dispatched, not awaited: the devices solve this batch while the caller
            # writes the one before it. The shapes never change: nothing compiles again.
            dispatched = chunks, solver(chunks)
        if pending is not None:
            done, result = pending
            host = jax.device_get(result)  # one transfer per batch
            now = time.perf_counter()
            bar.set_postfix(
                solves_per_s=f"{len(done) * sweep.solves_per_chunk / (now - taken):.0f}"
            )
            taken, offset = now, 0
            for index in done:
                count = len(sweep.chunk_range(index))
                yield index, to_store_layout(sweep, host, slice(offset, offset + count))
                bar.update()
                offset += count
        pending = dispatched
