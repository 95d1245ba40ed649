"""One sweep across the processes of a JAX job (``jax.distributed``).

Each process solves its share of the chunks on its own local devices and writes them
into the shared store; the processes exchange nothing but the start-up handshake, so
no collective crosses the network and a slow process delays no other.
"""

from __future__ import annotations

from edgesplit.errors import InputError
from edgesplit.sweep.runner import Share


def join(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> Share:
    """Start JAX's distributed runtime and return this process's share of the chunks.

    With no arguments JAX detects the cluster (Slurm, Open MPI, ...); otherwise all
    three say where the coordinator (process 0) listens, how many processes there
    are and which one this is.
    """
    import jax

    where = {}  # nothing given: JAX detects the cluster
    if any(v is not None for v in (coordinator, num_processes, process_id)):
        if None in (coordinator, num_processes, process_id):
            raise InputError(
                "--coordinator", "needs --num-processes and --process-id with it (or none)"
            )
        if num_processes < 1 or not 0 <= process_id < num_processes:
            raise InputError(
                "--process-id", f"needs 0 <= I < N = {num_processes}, got {process_id}"
            )
        where = dict(
            coordinator_address=coordinator, num_processes=num_processes, process_id=process_id
        )
    try:
        jax.distributed.initialize(**where)
    except (RuntimeError, ValueError) as err:
        problem = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError("--distributed", f"cannot join the JAX job: {problem}") from None
    return Share(jax.process_index(), jax.process_count())


def leave() -> None:
    import jax

    jax.distributed.shutdown()
