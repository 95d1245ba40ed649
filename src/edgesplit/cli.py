"""The ``edgesplit`` command line. Errors in user input print one line and exit with status 2."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

from edgesplit.errors import InputError


def _solve(args) -> int:
    from edgesplit.game.solve import solve, solve_at_prices
    from edgesplit.io.scenario_file import fixed_prices, read_scenario, solution_to_json
    from edgesplit.model.schemes import Scheme

    parsed = read_scenario(args.scenario)
    scheme = Scheme.parse(args.scheme)
    if args.fixed_prices:
        price_crb, price_rrb = fixed_prices(parsed)
        solution = solve_at_prices(parsed.scenario, scheme, price_crb, price_rrb, parsed.settings)
    else:
        solution = solve(parsed.scenario, scheme, parsed.settings)
    json.dump(solution_to_json(solution), sys.stdout, indent=2)
    print()
    return 0


def _sweep_with_overrides(args):
    from edgesplit.io.sweep_file import read_sweep
    from edgesplit.validation import number

    sweep = read_sweep(args.sweep)
    topologies = sweep.topologies
    if args.topologies is not None:
        topologies = number(args.topologies, "--topologies", at_least=1, integer=True)
    chunk = min(sweep.chunk, topologies) if args.chunk is None else args.chunk
    chunk = number(chunk, "--chunk", at_least=1, at_most=topologies, integer=True)
    return sweep.replace(topologies=topologies, chunk=chunk)


def _store_path(args, sweep) -> str:
    return args.out or f"results/{sweep.name}.zarr"


def _init(args) -> int:
    from edgesplit.sweep.store import open_or_create

    sweep = _sweep_with_overrides(args)
    out = _store_path(args, sweep)
    done = open_or_create(out, sweep)
    print(
        f"{out}: {int(done.sum())} of {sweep.num_chunks} chunks done; "
        f"run workers with: edgesplit run {args.sweep} --out {out} --worker I/N",
        file=sys.stderr,
    )
    return 0


def _one_cpu_device_per_core() -> None:
    """Split the host's CPU into :func:`~edgesplit.sweep.chunks.default_cpu_devices` devices,
    unless the count is given (``JAX_NUM_CPU_DEVICES``, or ``XLA_FLAGS`` with
    ``--xla_force_host_platform_device_count``) or JAX has already started."""
    import jax

    from edgesplit.sweep.chunks import default_cpu_devices

    given = "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
    if given or jax.config.jax_num_cpu_devices >= 0:
        return
    with contextlib.suppress(RuntimeError):  # JAX already runs here (called as a library)
        jax.config.update("jax_num_cpu_devices", default_cpu_devices())


def _run(args) -> int:
    from edgesplit.sweep import cluster
    from edgesplit.sweep.runner import Share, run_sweep
    from edgesplit.sweep.store import chunks_done

    _one_cpu_device_per_core()  # before anything starts a JAX backend
    explicit = (args.coordinator, args.num_processes, args.process_id)
    distributed = args.distributed or any(v is not None for v in explicit)
    if distributed and args.worker:
        raise InputError("--worker", "cannot be combined with --distributed")
    if not distributed:
        share = Share.parse(args.worker) if args.worker else Share()
    else:  # before anything touches a JAX backend, as jax.distributed requires
        share = cluster.join(*explicit)
    try:
        sweep = _sweep_with_overrides(args)
        out = _store_path(args, sweep)
        solved = run_sweep(sweep, out, progress=not args.quiet, share=share)
    finally:
        if distributed:
            cluster.leave()
    who = "" if share.count == 1 else f"worker {share}: "
    done = int(chunks_done(out).sum())
    status = "complete" if done == sweep.num_chunks else f"{done} of {sweep.num_chunks} chunks done"
    print(
        f"{out}: {who}{solved} chunk(s) solved, store {status}; "
        f"open with xarray.open_zarr({out!r})",
        file=sys.stderr,
    )
    return 0


def _summarize(args) -> int:
    from edgesplit.io.analysis import summary_table
    from edgesplit.sweep.store import open_store

    print(summary_table(open_store(args.store), markdown=args.markdown), end="")
    return 0


def _plot(args) -> int:
    from edgesplit.io.plotting import plot_store
    from edgesplit.sweep.store import open_store

    plot_store(open_store(args.store), args.output)
    return 0


def _defaults(args) -> int:
    from edgesplit.config import defaults_markdown

    print(defaults_markdown())
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="edgesplit", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)

    solve = commands.add_parser("solve", help="solve one scenario file and print JSON")
    solve.add_argument("scenario", help="scenario JSON file")
    solve.add_argument(
        "--scheme", default="proposed", choices=["proposed", "edge_only", "heuristic", "user_only"]
    )
    solve.add_argument(
        "--fixed-prices", action="store_true",
        help="skip the price game: devices respond to the prices in the file",
    )  # fmt: skip
    solve.set_defaults(run=_solve)

    def sweep_arguments(command):
        command.add_argument("sweep", help="sweep TOML file")
        command.add_argument("--out", help="store path (default: results/NAME.zarr)")
        command.add_argument("--topologies", type=int, help="override the sweep's topology count")
        command.add_argument("--chunk", type=int, help="override the sweep's chunk size")

    init = commands.add_parser("init", help="write a sweep's empty store (before workers start)")
    sweep_arguments(init)
    init.set_defaults(run=_init)

    run = commands.add_parser("run", help="run a sweep file into a Zarr store (resumes)")
    sweep_arguments(run)
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--worker", metavar="I/N",
        help="solve only worker I's share of the chunks (I = 0..N-1); workers may run at once",
    )  # fmt: skip
    cluster = run.add_argument_group(
        "one JAX job across processes (each solves its share on its local devices)"
    )
    cluster.add_argument(
        "--distributed", action="store_true",
        help="join with jax.distributed.initialize(), detecting Slurm, Open MPI, ...",
    )  # fmt: skip
    cluster.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address")
    cluster.add_argument("--num-processes", type=int, metavar="N", help="processes in the job")
    cluster.add_argument("--process-id", type=int, metavar="I", help="this process, 0..N-1")
    run.set_defaults(run=_run)

    summarize = commands.add_parser("summarize", help="mean utilities with 95%% CIs of a store")
    summarize.add_argument("store")
    summarize.add_argument("--markdown", action="store_true", help="print a Markdown table")
    summarize.set_defaults(run=_summarize)

    plot = commands.add_parser("plot", help="draw the paper's figure for a store")
    plot.add_argument("store")
    plot.add_argument("-o", "--output", required=True, help="image file (PNG, PDF, SVG)")
    plot.set_defaults(run=_plot)

    defaults = commands.add_parser("defaults", help="print every default parameter and its source")
    defaults.set_defaults(run=_defaults)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    import jax

    from edgesplit.sweep.compile_cache import enable_compile_cache

    # Single solves and their reference checks run in float64.
    jax.config.update("jax_enable_x64", True)
    enable_compile_cache()
    try:
        return args.run(args)
    except InputError as err:
        print(f"edgesplit: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        return 0


if __name__ == "__main__":
    sys.exit(main())
