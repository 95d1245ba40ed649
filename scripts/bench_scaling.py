"""Scale-out overhead: solves per second of one sweep on 1, 2 and 4 devices, and as 2
worker processes, each measured end to end through the command line (process start,
compilation, solving, store writes); and, on 4 devices, one chunk (after compilation)
sharded with shard_map against automatic partitioning of the same vmapped program.

    python scripts/bench_scaling.py [--sweep sweeps/quick.toml] [--topologies 400] [--chunk 100]

On a CPU host the devices are slices of the same cores
(``--xla_force_host_platform_device_count``), so this shows what sharding and worker
processes cost, not a speed-up; on a multi-GPU machine run it as is. Writes
results/bench/scaling.json and scaling.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE_CHUNK = 16  # topologies in the chunk of the partitioning comparison


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgesplit", *args]


def timed(commands: list[list[str]], env: dict) -> float:
    """Wall seconds from starting every command at once until the last one ends."""
    began = time.perf_counter()
    procs = [
        subprocess.Popen(c, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"bench_scaling: a run failed: {err.strip().splitlines()[-1]}")
    return time.perf_counter() - began


def commit() -> str:
    """The edgesplit commit a report names: ``git rev-parse --short HEAD``, or
    ``EDGESPLIT_COMMIT`` for a copy of the tree whose .git is missing or stale (a device
    machine's)."""
    return (
        os.environ.get("EDGESPLIT_COMMIT")
        or subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True, capture_output=True
        ).stdout.strip()
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def partition_probe(sweep) -> dict[str, float]:
    """Seconds to solve one chunk's sampled topologies on every local device, compiled
    beforehand: edgesplit's default (shard_map, a game queue per device), shard_map
    with plain vmapped game loops, and jit's automatic partitioning of the same
    vmapped loops."""
    import jax
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from edgesplit.sweep.chunks import chunk_program, chunk_solver

    jax.config.update("jax_enable_x64", True)
    devices = jax.local_devices()
    solver = chunk_solver(sweep)
    indices = np.arange(solver.topologies_per_call)
    games = len(indices) * math.prod(sweep.grid_shape)
    # As many lanes as games: no lane ever takes a second game, i.e. vmapped loops.
    vmapped = chunk_solver(sweep, game_lanes=games // len(devices)).run
    _, solve, schemes = chunk_program(sweep, game_lanes=games)
    mesh = jax.sharding.Mesh(np.array(devices), ("topology",))
    automatic = jax.jit(
        solve, in_shardings=(NamedSharding(mesh, P("topology")), NamedSharding(mesh, P()))
    )
    topologies = solver.sample(indices)
    seconds = {}
    for name, run in [
        ("shard_map, game queues", solver.run),
        ("shard_map, vmapped loops", vmapped),
        ("automatic partitioning, vmapped loops", automatic),
    ]:
        jax.block_until_ready(run(topologies, schemes))  # compile
        began = time.perf_counter()
        jax.block_until_ready(run(topologies, schemes))
        seconds[name] = time.perf_counter() - began
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default=str(ROOT / "sweeps" / "quick.toml"))
    parser.add_argument("--topologies", type=int, default=400)
    parser.add_argument("--chunk", type=int, default=100)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    from edgesplit.io.sweep_file import read_sweep

    sweep = read_sweep(args.sweep).replace(topologies=args.topologies, chunk=args.chunk)
    if args.probe:  # the child process of the partitioning comparison
        print(json.dumps(partition_probe(sweep)))
        return
    solves = sweep.topologies * sweep.solves_per_chunk // sweep.chunk
    sizes = ["--topologies", str(args.topologies), "--chunk", str(args.chunk)]
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for label, devices, workers in [
            ("1 device", 1, 1),
            ("2 devices", 2, 1),
            ("4 devices", 4, 1),
            ("2 worker processes, 1 device each", 1, 2),
        ]:
            store = str(Path(scratch) / "store.zarr")
            shutil.rmtree(store, ignore_errors=True)
            env = {
                **os.environ,
                "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
            }
            run = cli("run", args.sweep, "--out", store, "--quiet", *sizes)
            if workers == 1:
                seconds = timed([run], env)
            else:
                seconds = timed([cli("init", args.sweep, "--out", store, *sizes)], env)
                seconds += timed(
                    [[*run, "--worker", f"{i}/{workers}"] for i in range(workers)], env
                )
            rows.append({"setup": label, "seconds": seconds, "solves_per_s": solves / seconds})
            print(f"{label:36s} {seconds:7.1f} s  {solves / seconds:7.1f} solves/s", flush=True)

    # A smaller chunk for the comparison: vmapped loops under automatic partitioning
    # are slow enough that a full chunk would take minutes.
    probe_sizes = ["--topologies", str(PROBE_CHUNK), "--chunk", str(PROBE_CHUNK)]
    probe = subprocess.run(
        [sys.executable, __file__, "--probe", "--sweep", args.sweep, *probe_sizes],
        env={**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    partition = json.loads(probe.stdout.strip().splitlines()[-1])
    print(f"one chunk on 4 devices: {partition}", flush=True)

    base = rows[0]["solves_per_s"]
    out = ROOT / "results" / "bench"
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "sweep": Path(args.sweep).name,
        "solves": solves,
        "chunk": args.chunk,
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit(),
    }
    (out / "scaling.json").write_text(
        json.dumps({**meta, "rows": rows, "one_chunk_on_4_devices_s": partition}, indent=2) + "\n"
    )
    lines = [
        f"Scale-out overhead: {solves} solves of {meta['sweep']} (chunk {args.chunk}), "
        f"end to end through the CLI, on {meta['machine']}, {meta['date']}, edgesplit "
        f"{meta['commit']}. Produced by `python scripts/bench_scaling.py`.",
        "",
        "| setup | wall (s) | solves/s | vs 1 device |",
        "|---|---|---|---|",
        *(
            f"| {r['setup']} | {r['seconds']:.1f} | {r['solves_per_s']:.1f} | "
            f"{r['solves_per_s'] / base:.2f}× |"
            for r in rows
        ),
        "",
        f"One chunk of {PROBE_CHUNK} topologies "
        f"({sweep.replace(chunk=PROBE_CHUNK).solves_per_chunk} solves) on 4 devices, "
        "after compilation:",
        "",
        "| partitioning | seconds |",
        "|---|---|",
        *(f"| {name} | {seconds:.2f} |" for name, seconds in partition.items()),
    ]
    (out / "scaling.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
