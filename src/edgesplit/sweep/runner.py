"""Run a sweep (or one worker's share of it) into its store, resuming where an earlier
run stopped."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from edgesplit.errors import InputError
from edgesplit.sweep.chunks import chunk_solver
from edgesplit.sweep.faults import trace
from edgesplit.sweep.spec import Sweep
from edgesplit.sweep.store import open_or_create, to_store_layout, write_chunk


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


def run_sweep(
    sweep: Sweep, path: str | Path, *, progress: bool = True, share: Share = Share()
) -> int:
    """Solve every chunk of ``share`` the store does not record as done; return how many
    were solved. Workers with disjoint shares may run at the same time on one store."""
    from tqdm import tqdm

    done = open_or_create(path, sweep)
    mine = share.chunks(sweep.num_chunks)
    todo = [i for i in mine if not done[i]]
    if not todo:
        return 0
    solver = chunk_solver(sweep)
    desc = sweep.name if share.count == 1 else f"{sweep.name} [{share}]"
    bar = tqdm(
        total=len(mine), initial=len(mine) - len(todo), unit="chunk", disable=not progress,
        desc=desc, dynamic_ncols=True,
    )  # fmt: skip

    def record(index: int, result, since: float) -> float:
        """Write a solved chunk; return when it was recorded."""
        count = len(sweep.chunk_range(index))
        write_chunk(path, sweep, index, to_store_layout(sweep, result, count))
        now = time.perf_counter()
        bar.set_postfix(solves_per_s=f"{sweep.solves_per_chunk / (now - since):.0f}")
        bar.update()
        return now

    with bar:
        bar.set_postfix_str("compiling")
        solver.compile()
        recorded, previous = time.perf_counter(), None
        for index in todo:
            trace("solve", index)
            # Dispatched, not awaited: the devices solve this chunk while the one before
            # it is written. The shapes never change, so nothing compiles again.
            current = index, solver(sweep.chunk_range(index).start)
            if previous is not None:
                recorded = record(*previous, recorded)
            previous = current
        record(*previous, recorded)
    return len(todo)
