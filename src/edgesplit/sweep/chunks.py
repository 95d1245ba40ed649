"""Solve a sweep a batch of chunks at a time: two compiled calls per batch.

A chunk is ``sweep.chunk`` topologies × every grid point × every scheme: the unit of
the store (its Zarr chunks, what is recorded as done and resumed). A batch is a few
chunks, sampled by one jit-compiled call and solved by another, whose shapes never
change: the last batch is padded with extra topologies whose results are dropped, and
axes that change array sizes (the numbers of devices and servers) are padded to their
largest value with masks. The topologies of a batch are spread over every local
device; on each, a scheme's games share a few lanes, a lane taking the next game when
its own ends.
Topology t always uses the key ``fold_in(key(seed), t)``, so a result does not
depend on the chunk size or on which process solved it, and every scheme and grid
point sees the same topologies (common random numbers).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from edgesplit.config import Setup
from edgesplit.errors import InputError
from edgesplit.game.solve import Solution
from edgesplit.sweep.batch import solve_batch
from edgesplit.sweep.schema import POINT, SCHEMA, VARIABLES
from edgesplit.sweep.spec import Sweep
from edgesplit.sweep.topology import Topology, sample_topology


def stored_variables(topologies: Topology, solutions: Solution) -> dict[str, jax.Array]:
    """The schema's variables (:mod:`edgesplit.sweep.schema`), each with its dims (the
    axes as one dim of grid points), from topologies with leaves (point, topology, ...)
    and their solutions, leaves (scheme, point, topology, ...)."""
    scenario, devices = topologies.scenario, solutions.devices
    active = scenario.devices.active
    present = lambda x, fill: jnp.where(active, x, fill)  # noqa: E731
    serving = lambda x, fill: jnp.where(scenario.servers.active, x, fill)  # noqa: E731
    variables = dict(
        association=present(devices.server, -1),
        split=present(devices.split, -1),
        crbs_bought=present(devices.crbs, 0),
        rrbs_bought=present(devices.rrbs, 0),
        device_utility=present(devices.utility, jnp.nan),
        cycle_device_utility=present(solutions.cycle_device_utility, jnp.nan),
        delay=present(devices.delay, jnp.nan),
        arrival_rate=jnp.where(active, scenario.devices.arrival_rate, jnp.nan),
        device_active=active,
        model=topologies.model[0],  # drawn from the key alone: equal at every point
        price_crb=serving(solutions.price_crb, jnp.nan),
        price_rrb=serving(solutions.price_rrb, jnp.nan),
        server_utility=serving(solutions.server_utility, jnp.nan),
        cycle_server_utility=serving(solutions.cycle_server_utility, jnp.nan),
        crbs_sold=serving(solutions.crbs_sold, 0),
        rrbs_sold=serving(solutions.rrbs_sold, 0),
        server_active=scenario.servers.active,
        rounds=solutions.rounds,
        status=solutions.status,
        converged=solutions.converged,
        cycle_length=solutions.cycle_length,
        equilibria=solutions.equilibria,
        server_regret=serving(solutions.server_regret, jnp.nan),
        certificate=solutions.certificate,
        local_certificate=solutions.local_certificate,
    )
    for name, value in variables.items():  # at trace time: the program keeps the schema
        assert value.ndim == len(SCHEMA[name].dims_for((POINT,))), name
    assert variables.keys() == SCHEMA.keys()
    return variables


def grid_setup(sweep: Sweep) -> Setup:
    """The setup at every grid point: each numeric field an array (G,), axes varying
    fastest last (C order over ``sweep.axes``)."""
    dtype = jnp.dtype(sweep.precision)
    mesh = np.meshgrid(*sweep.axes.values(), indexing="ij") if sweep.axes else []
    swept = {name: values.ravel() for name, values in zip(sweep.axes, mesh, strict=True)}
    size = sweep.setup_points
    values = {}
    for f in fields(Setup):
        if f.metadata["static"]:
            continue
        column = swept.get(f.name, np.full(size, getattr(sweep.setup, f.name)))
        kind = jnp.int32 if f.metadata["bounds"].get("integer") else dtype
        values[f.name] = jnp.asarray(column, kind)
    return Setup(models=sweep.setup.models, **values)


@dataclass(frozen=True)
class ProgramMemory:
    """What a chunk's compiled programs hold on each device (XLA's memory analysis, in
    bytes), and the devices they run on."""

    per_device: int  # at once while solving: the sampled chunk, temporaries, results
    outputs: int  # of which the results (held until the host has written them)
    devices: int
    platform: str
    device_limit: int | None  # each device's own memory (accelerators), when known

    @classmethod
    def of(cls, sampling, solving, sharding: NamedSharding) -> ProgramMemory | None:
        """From the two compiled programs (sampling's results are solving's inputs)."""
        try:
            sample, solve = sampling.memory_analysis(), solving.memory_analysis()
            per_device = (
                sample.argument_size_in_bytes + sample.temp_size_in_bytes
                + solve.argument_size_in_bytes + solve.output_size_in_bytes
                + solve.temp_size_in_bytes - solve.alias_size_in_bytes
            )  # fmt: skip
            outputs = solve.output_size_in_bytes
        except (AttributeError, NotImplementedError, TypeError, jax.errors.JaxRuntimeError):
            return None  # no analysis on this backend
        devices = list(sharding.mesh.devices.flat)
        limit = None
        if devices[0].platform != "cpu":
            stats = devices[0].memory_stats() or {}
            if "bytes_limit" in stats:
                limit = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return cls(int(per_device), int(outputs), len(devices), devices[0].platform, limit)


@dataclass(frozen=True)
class ChunkSolver:
    """Solves up to ``batch`` chunks of a sweep in one call.

    ``topologies_per_call`` topologies are solved per call: ``batch`` chunks' worth,
    rounded up to a multiple of the number of devices, at least two per device (XLA
    compiles a sharded batch of one differently, and its certificates then differ in
    the last bit); results past the batch's chunks are padding to drop.
    """

    sample: Callable  # jitted: topology indices (C,) -> Topology, leaves (C, G, ...)
    run: Callable  # jitted: (topologies, schemes) -> the stored variables, by name
    sweep: Sweep
    batch: int  # chunks per call
    topologies_per_call: int
    schemes: jax.Array
    sharding: NamedSharding  # of the sampled topologies: split over the devices

    def __call__(self, chunks: Sequence[int]) -> dict[str, jax.Array]:
        """Dispatch ``chunks`` (any chunk indices, at most ``batch``) to the devices;
        the results, not awaited, hold their topologies in that order."""
        return self.run(self.sample(self.indices(chunks)), self.schemes)

    def indices(self, chunks: Sequence[int]) -> np.ndarray:
        """The topology indices of a call: the chunks' topologies, then padding."""
        if not 0 < len(chunks) <= self.batch:
            raise ValueError(f"a call solves 1 to {self.batch} chunks, got {len(chunks)}")
        taken = np.concatenate([np.asarray(self.sweep.chunk_range(i)) for i in chunks])
        padding = np.arange(self.topologies_per_call - len(taken)) + taken[-1] + 1
        return np.concatenate([taken, padding])

    def compile(self) -> ProgramMemory | None:
        """Compile both programs now, as the first call would, and return the memory
        they need (None when XLA cannot say). XLA compiles the sampling program on a
        second thread while this one traces the solve program: it does not hold
        Python's lock, so the two overlap (about 1 s of a cold start). Both are traced
        on this thread, under its JAX settings."""
        indices = np.arange(self.topologies_per_call)
        with ThreadPoolExecutor(max_workers=1) as pool:
            sampling = pool.submit(self.sample.lower(indices).compile)
            solving = self.run.lower(self.sampled_like(indices), self.schemes).compile()
            return ProgramMemory.of(sampling.result(), solving, self.sharding)

    def sampled_like(self, indices):
        """The shapes, dtypes and sharding of ``sample(indices)``, to lower ``run`` for
        without sampling."""
        return jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self.sharding),
            jax.eval_shape(self.sample, indices),
        )


def chunk_program(sweep: Sweep, game_lanes: int) -> tuple[Callable, Callable, jax.Array]:
    """The chunk's two functions, not yet compiled or sharded: topology indices (C,) ->
    Topology (leaves (C, G, ...)), and (topologies, schemes) -> the stored variables
    (:func:`stored_variables`); and the
    schemes to pass the second. Each scheme's C × G games share ``game_lanes`` lanes
    (:func:`~edgesplit.sweep.batch.solve_batch`)."""
    setups = grid_setup(sweep)
    # Traced, not constants: XLA would otherwise constant-fold the scheme masks (slowly).
    schemes = jnp.asarray([int(s) for s in sweep.schemes], jnp.int32)
    dtype = jnp.dtype(sweep.precision)
    root = jax.random.key(sweep.seed)
    max_devices, max_servers = sweep.max_devices, sweep.max_servers

    def topology_at_every_point(index):
        key = jax.random.fold_in(root, index)
        return jax.vmap(lambda setup: sample_topology(key, setup, max_devices, max_servers, dtype))(
            setups
        )

    def sample_chunk(indices):
        return jax.vmap(topology_at_every_point)(indices)  # leaves (C, G, ...)

    def solve_chunk(topologies, schemes) -> dict[str, jax.Array]:
        lead = topologies.model.shape[:2]
        flat = jax.tree.map(lambda x: x.reshape(-1, *x.shape[2:]), topologies.scenario)
        # One game queue per scheme, one after the other: user-only plays no game, and a
        # scheme's games should not wait for another's. A loop, not K copies of the
        # queue: the program compiles once whatever the number of schemes. Each point of
        # the game axes has settings, and so a program part, of its own.
        solutions = [
            jax.lax.map(partial(solve_batch, flat, settings=game, lanes=game_lanes), schemes)
            for game in sweep.games
        ]  # leaves (K, C·G, ...) each
        # The schema's order: (scheme, point, topology, ...), game points outermost.
        solutions = jax.tree.map(
            lambda *x: jnp.concatenate(
                [jnp.swapaxes(y.reshape(y.shape[0], *lead, *y.shape[2:]), 1, 2) for y in x], axis=1
            ),
            *solutions,
        )
        topologies = jax.tree.map(
            lambda x: jnp.concatenate([jnp.swapaxes(x, 0, 1)] * len(sweep.games)), topologies
        )
        return stored_variables(topologies, solutions)

    return sample_chunk, solve_chunk, schemes


def default_game_lanes(platform: str, games: int) -> int:
    """Lanes per device for a chunk's ``games`` games of one scheme.

    On CPU a lane costs about the same however many run together (measured: 4 to 64
    lanes within noise on 200-1,000 Fig. 3 games), so few lanes waste least on the
    longest games; 16. Accelerators need width to be busy: a quarter of the games.
    Measured once on an H200, 2,000 Fig. 3 games: 125, 500 and 1,000 lanes solved
    35,200, 32,800 and 27,200 games/s; 10,000 games on 2,500 lanes, 47,800/s.
    """
    return 16 if platform == "cpu" else max(games // 4, 1)  # play_queue caps it at games


def default_cpu_devices() -> int:
    """CPU devices the command line splits the host into for a sweep: one per core this
    process may run on.

    Each device plays its game queues on a thread of its own; on one device the other
    cores only share its largest kernels. Measured on 2 cores: a cold Fig. 3 sweep in
    28.0-29.1 s on 2 devices against 30.7-32.1 s on 1.
    """
    try:
        return len(os.sched_getaffinity(0))  # the cores a scheduler (Slurm, taskset) gave us
    except AttributeError:  # no affinity on macOS and Windows
        return os.cpu_count() or 1


def chunk_solver(
    sweep: Sweep,
    devices: Sequence[jax.Device] | None = None,
    game_lanes: int | None = None,
    batch: int = 1,
) -> ChunkSolver:
    """The two programs that solve ``batch`` chunks per call, sharded over ``devices``
    (default: all local ones); each compiles once, on first use.

    Topologies are split across devices with ``shard_map``: each device plays its own
    game queues, so no device waits on another's longest game (a vmapped
    ``while_loop`` under automatic partitioning would, jax-ml/jax#20968).
    ``game_lanes`` (default :func:`default_game_lanes`) changes the speed, never the
    results.
    """
    if sweep.precision == "float64" and not jax.config.jax_enable_x64:
        raise InputError(
            "precision",
            "float64 needs JAX's 64-bit mode: call jax.config.update('jax_enable_x64', True) "
            "first (the command line does)",
        )
    devices = list(devices or jax.local_devices())
    per_device = max(-(-batch * sweep.chunk // len(devices)), 2 if len(devices) > 1 else 1)
    if game_lanes is None:
        game_lanes = default_game_lanes(devices[0].platform, per_device * sweep.setup_points)
    sample, solve, schemes = chunk_program(sweep, game_lanes)
    mesh = jax.sharding.Mesh(np.array(devices), ("topology",))
    sharded = partial(
        jax.shard_map,
        mesh=mesh,
        check_vma=False,  # no collectives: each device's game loops are its own
    )
    return ChunkSolver(
        # Sampling takes a few ms of a chunk, so on CPU LLVM's cheaper optimisation level
        # suits it: it compiles in about half the time, to the same bits (the Fig. 3
        # store is identical, variable by variable).
        sample=jax.jit(
            sharded(sample, in_specs=P("topology"), out_specs=P("topology")),
            compiler_options=(
                {"xla_backend_optimization_level": 1} if devices[0].platform == "cpu" else None
            ),
        ),
        run=jax.jit(sharded(solve, in_specs=(P("topology"), P()), out_specs=_topology_specs())),
        sweep=sweep,
        batch=batch,
        topologies_per_call=per_device * len(devices),
        schemes=schemes,
        sharding=NamedSharding(mesh, P("topology")),
    )


def _topology_specs() -> dict[str, P]:
    """Each stored variable's sharding: split over the devices along its topology dim."""
    return {
        v.name: P(*("topology" if d == "topology" else None for d in v.dims_for((POINT,))))
        for v in VARIABLES
    }
