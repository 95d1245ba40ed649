"""Run a sweep into its store, resuming where an earlier run stopped."""

from __future__ import annotations

import time
from pathlib import Path

from edgesplit.faults import trace
from edgesplit.store import open_or_create, to_store_layout, write_chunk
from edgesplit.sweep import chunk_solver
from edgesplit.sweep_file import Sweep


def run_sweep(sweep: Sweep, path: str | Path, *, progress: bool = True) -> int:
    """Solve every chunk the store does not record as done; return how many were solved."""
    import jax
    from tqdm import tqdm

    done = open_or_create(path, sweep)
    todo = [i for i in range(sweep.num_chunks) if not done[i]]
    if not todo:
        return 0
    solver = chunk_solver(sweep)
    bar = tqdm(
        total=sweep.num_chunks, initial=int(done.sum()), unit="chunk", disable=not progress,
        desc=sweep.name, dynamic_ncols=True,
    )  # fmt: skip
    with bar:
        for index in todo:
            start = index * sweep.chunk
            count = min(sweep.chunk, sweep.topologies - start)
            began = time.perf_counter()
            trace("solve", index)
            # Always the same number of lanes, so the compiled shapes never change.
            result = jax.block_until_ready(solver(start))
            write_chunk(path, sweep, index, to_store_layout(sweep, result, count))
            bar.set_postfix(
                solves_per_s=f"{sweep.solves_per_chunk / (time.perf_counter() - began):.0f}"
            )
            bar.update()
    return len(todo)
