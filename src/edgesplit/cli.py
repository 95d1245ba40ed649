"""The ``edgesplit`` command line. Errors in user input, and a machine that cannot carry a
run, print one line and exit with status 2; SIGINT and SIGTERM stop any command with one
line (status 130, 143); a closed or failing stdout is one line too (status 2)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import warnings

from edgesplit.errors import InputError, RunError
from edgesplit.sweep.interrupts import checkpoint, interrupts_raise


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
    # Strict JSON: solution_to_json gives null, never NaN or Infinity, for what is undefined.
    _emit(json.dumps(solution_to_json(solution), indent=2, allow_nan=False) + "\n")
    return 0


def _sweep_with_overrides(args):
    from edgesplit.config import MAX_TOPOLOGIES
    from edgesplit.io.sweep_file import read_sweep
    from edgesplit.validation import number

    sweep = read_sweep(args.sweep)
    topologies = sweep.topologies
    if args.topologies is not None:
        topologies = number(
            args.topologies, "--topologies", at_least=1, at_most=MAX_TOPOLOGIES, integer=True
        )
    chunk = min(sweep.chunk, topologies) if args.chunk is None else args.chunk
    chunk = number(chunk, "--chunk", at_least=1, at_most=topologies, integer=True)
    return sweep.replace(topologies=topologies, chunk=chunk)


def _store_path(args, sweep) -> str:
    return f"results/{sweep.name}.zarr" if args.out is None else args.out


def _init(args) -> int:
    from edgesplit.sweep.resources import check_memory
    from edgesplit.sweep.store import open_or_create

    sweep = _sweep_with_overrides(args)
    out = _store_path(args, sweep)
    check_memory(sweep, solving=False)  # the template; workers may run elsewhere
    done, _ = open_or_create(out, sweep, allow_build=args.allow_other_build)
    # The workers' command, quoted to run as printed (with I/N filled in).
    worker = ["edgesplit", "run", args.sweep, "--out", out]
    for flag, value in (("--topologies", args.topologies), ("--chunk", args.chunk)):
        worker += [] if value is None else [flag, str(value)]
    worker += ["--allow-other-build"] if args.allow_other_build else []
    print(
        f"{out}: {int(done.sum())} of {sweep.num_chunks} chunks done; "
        f"run workers with: {shlex.join(worker)} --worker I/N",
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
        solved = run_sweep(
            sweep, out, progress=not args.quiet, share=share,
            allow_build=args.allow_other_build, batch=args.batch,
        )  # fmt: skip
    finally:
        if distributed:
            cluster.leave()
    who = "" if share.count == 1 else f"worker {share}: "
    done = int(chunks_done(out).sum())
    status = "complete" if done == sweep.num_chunks else f"{done} of {sweep.num_chunks} chunks done"
    print(
        f"{out}: {who}{solved} chunk(s) solved, store {status}; "
        f"open with edgesplit.open_store({out!r})",
        file=sys.stderr,
    )
    return 0


def _verify(args) -> int:
    """Exit 0 when the store's metadata and coordinates and every recorded chunk read
    back as recorded, else 1, with a line per damage on stdout; ``--repair`` un-records
    the damaged chunks so a rerun solves them again, and re-makes damaged metadata from
    the store's record of its sweep (:func:`~edgesplit.sweep.store.remake`)."""
    from pathlib import Path

    from edgesplit.sweep.integrity import damaged_chunks, metadata_damage, unrecord
    from edgesplit.sweep.store import RECOVER, chunks_done, metadata_problem, remake

    if not Path(args.store).exists():
        raise InputError(args.store, "no such store")
    problem = metadata_problem(args.store)
    if problem is not None:  # not an edgesplit store: nothing to verify
        raise InputError(args.store, problem)
    damage = metadata_damage(args.store)
    if damage is not None:  # the chunks cannot be read as their metadata says
        _emit(f"metadata: {damage}\n")
        if not args.repair:
            print(f"{args.store}: its metadata is damaged; {RECOVER}", file=sys.stderr)
            return 1
        kept, aside = remake(args.store)
        print(
            f"{args.store}: its metadata re-made from its record of the sweep, {kept} "
            f"verified chunk(s) kept; rerun the sweep to solve the rest; the damaged store "
            f"was moved to {aside}: delete it once the store is complete",
            file=sys.stderr,
        )
        return 1
    damaged = damaged_chunks(args.store)
    if damaged:
        _emit("".join(f"chunk {index}: {why}\n" for index, why in sorted(damaged.items())))
    recorded = int(chunks_done(args.store).sum())
    if damaged and args.repair:
        unrecord(args.store, sorted(damaged))
        print(
            f"{args.store}: {len(damaged)} damaged chunk(s) un-recorded; rerun the sweep "
            "to solve them again",
            file=sys.stderr,
        )
    else:
        print(
            f"{args.store}: {recorded - len(damaged)} of {recorded} recorded chunks verified",
            file=sys.stderr,
        )
    return 1 if damaged else 0


def _summarize(args) -> int:
    from edgesplit.analysis.statistics import compare, summary
    from edgesplit.analysis.tables import TableFormat, comparison_tables, summary_table
    from edgesplit.sweep.store import open_store

    form = (
        TableFormat.CSV if args.csv else TableFormat.MARKDOWN if args.markdown else TableFormat.TEXT
    )
    ds = open_store(args.store)
    if args.baseline is None:
        for flag in ("along", "variable", "bootstrap"):
            if getattr(args, flag) is not None:
                raise InputError(f"--{flag}", "compares schemes or rules: give --baseline too")
        _emit(summary_table(summary(ds, args.confidence), form))
        return 0
    # Any --bootstrap N reaches compare, which refuses too few (0 included).
    interval = (
        {} if args.bootstrap is None else {"method": "bootstrap", "resamples": args.bootstrap}
    )
    results = [
        compare(
            ds, variable, args.baseline, along=args.along or "scheme",
            confidence=args.confidence, seed=args.seed, **interval,
        )
        for variable in args.variable or ["device_utility", "server_utility"]
    ]  # fmt: skip
    _emit(comparison_tables(results, form))
    return 0


def _plot(args) -> int:
    from edgesplit.analysis.plots import plot, save_figure

    figure = plot(
        args.store, baseline=args.baseline, along=args.along or "scheme",
        confidence=args.confidence, **_selection(args.sel),
    )  # fmt: skip
    checkpoint()  # a signal while drawing: the last figure stays
    save_figure(figure, args.output)
    return 0


def _trace(args) -> int:
    from edgesplit.analysis.plots import save_figure, trace_figure
    from edgesplit.analysis.trace import trace
    from edgesplit.io.scenario_file import read_scenario

    parsed = read_scenario(args.scenario)
    traced = trace(parsed.scenario, args.scheme, parsed.settings)
    if args.output:
        figure = trace_figure(traced)
        checkpoint()
        save_figure(figure, args.output)
    if args.json:
        _emit(json.dumps(traced.to_json(), indent=1, allow_nan=False) + "\n")
    else:
        _emit(traced.table())
    return 0


def _export(args) -> int:
    from edgesplit.analysis.export import scenario_of, write_scenario

    document = scenario_of(args.store, args.topology, **_selection(args.sel))
    checkpoint()
    write_scenario(document, args.output)
    return 0


def _selection(pairs: list[str] | None) -> dict[str, str]:
    """``--sel DIM=VALUE`` options as a dict, each dim once."""
    selection = {}
    for pair in pairs or []:
        dim, equals, value = (part.strip() for part in pair.partition("="))
        if not (equals and dim and value):
            raise InputError("--sel", f"must be DIM=VALUE, got {pair!r}")
        if dim in selection:
            raise InputError(f"--sel {dim}", "is given twice")
        selection[dim] = value
    return selection


def _defaults(args) -> int:
    from edgesplit.config import defaults_markdown

    _emit(defaults_markdown() + "\n")
    return 0


SCHEMES = ["proposed", "edge_only", "heuristic", "user_only"]  # Scheme's labels (tested)


def _confidence_argument(command) -> None:
    command.add_argument(
        "--confidence", type=float, default=0.95, metavar="C",
        help="confidence level of the intervals (default 0.95)",
    )  # fmt: skip


DESCRIPTION = (
    "Joint DNN partitioning and resource pricing at the network edge: solve the "
    "multi-leader multi-follower Stackelberg game of Cheng, Gazda and Liu for one scenario, "
    "or for sweeps of many random topologies into resumable Zarr stores."
)
EPILOG = (
    "Run 'edgesplit COMMAND --help' for a command's options. Bad input, or a machine that "
    "cannot carry a run, is one line on stderr and exit status 2; SIGINT and SIGTERM stop a "
    "run between chunks (130, 143), and the same command resumes it."
)


def parser() -> argparse.ArgumentParser:
    from edgesplit import __version__

    top = argparse.ArgumentParser(prog="edgesplit", description=DESCRIPTION, epilog=EPILOG)
    top.add_argument("--version", action="version", version=f"edgesplit {__version__}")
    commands = top.add_subparsers(dest="command", required=True)

    solve = commands.add_parser("solve", help="solve one scenario file and print JSON")
    solve.add_argument("scenario", help="scenario JSON file")
    solve.add_argument("--scheme", default="proposed", choices=SCHEMES)
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
        command.add_argument(
            "--allow-other-build", action="store_true",
            help="add results to a store made by another edgesplit version or commit "
            "(each chunk records the build that wrote it)",
        )  # fmt: skip

    init = commands.add_parser("init", help="write a sweep's empty store (before workers start)")
    sweep_arguments(init)
    init.set_defaults(run=_init)

    run = commands.add_parser("run", help="run a sweep file into a Zarr store (resumes)")
    sweep_arguments(run)
    run.add_argument("--quiet", action="store_true", help="no progress bar")
    run.add_argument(
        "--batch", type=int, metavar="N",
        help="chunks per compiled call (default: 1 on CPU; on a GPU as many as fit, "
        "up to 100,000 games per scheme); the store and its results do not change",
    )  # fmt: skip
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

    verify = commands.add_parser(
        "verify", help="check every recorded chunk of a store against its checksum"
    )
    verify.add_argument("store")
    verify.add_argument(
        "--repair", action="store_true",
        help="un-record the damaged chunks, so that a rerun of the sweep solves them again; "
        "re-make damaged metadata from the store's record of its sweep",
    )  # fmt: skip
    verify.set_defaults(run=_verify)

    summarize = commands.add_parser(
        "summarize",
        help="a store's means and shares with confidence intervals, or paired comparisons",
    )
    summarize.add_argument("store")
    form = summarize.add_mutually_exclusive_group()
    form.add_argument("--markdown", action="store_true", help="print a Markdown table")
    form.add_argument(
        "--csv", action="store_true", help="print CSV, every column at full precision"
    )
    summarize.add_argument(
        "--baseline", metavar="LABEL",
        help="compare every other scheme (or label of --along) with this one, paired over "
        "the topologies: mean difference, interval, n, p-value",
    )  # fmt: skip
    summarize.add_argument(
        "--along", metavar="DIM",
        help="the dim whose labels are compared (default scheme; or leader, update, "
        "joint_price, a swept parameter)",
    )  # fmt: skip
    summarize.add_argument(
        "--variable", action="append", metavar="NAME",
        help="a stored variable to compare (repeatable; default device_utility and "
        "server_utility)",
    )  # fmt: skip
    summarize.add_argument(
        "--bootstrap", type=int, metavar="N",
        help="percentile bootstrap intervals from N resamples instead of Student t",
    )  # fmt: skip
    summarize.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0)")
    _confidence_argument(summarize)
    summarize.set_defaults(run=_summarize)

    plot = commands.add_parser(
        "plot", help="draw a store's figure: utilities, equilibrium share, regret, differences"
    )
    plot.add_argument("store")
    plot.add_argument("-o", "--output", required=True, help="image file (PNG, PDF, SVG)")
    plot.add_argument(
        "--sel", action="append", metavar="DIM=VALUE",
        help="draw the store at this label of DIM (repeatable), leaving one swept parameter",
    )  # fmt: skip
    plot.add_argument(
        "--baseline", metavar="LABEL",
        help="add panels of the paired differences from this scheme (or label of --along)",
    )  # fmt: skip
    plot.add_argument("--along", metavar="DIM", help="the dim --baseline labels (default scheme)")
    _confidence_argument(plot)
    plot.set_defaults(run=_plot)

    trace = commands.add_parser(
        "trace", help="play one scenario file's game round by round and print every state"
    )
    trace.add_argument("scenario", help="scenario JSON file")
    trace.add_argument("--scheme", default="proposed", choices=SCHEMES)
    trace.add_argument("--json", action="store_true", help="print the states as JSON")
    trace.add_argument("-o", "--output", help="also draw the game into this image file")
    trace.set_defaults(run=_trace)

    export = commands.add_parser(
        "export", help="write one topology of a store, at one grid point, as a scenario file"
    )
    export.add_argument("store")
    export.add_argument("--topology", type=int, required=True, help="the topology's index")
    export.add_argument(
        "--sel", action="append", metavar="DIM=VALUE",
        help="the grid point: a label of each swept dim with several (repeatable)",
    )  # fmt: skip
    export.add_argument("-o", "--output", required=True, help="scenario JSON file to write")
    export.set_defaults(run=_export)

    defaults = commands.add_parser("defaults", help="print every default parameter and its source")
    defaults.set_defaults(run=_defaults)
    return top


def _emit(text: str) -> None:
    """Write a command's output to stdout, unless a signal came first (it stops the
    command instead); a closed stdout, or one that fails, is a RunError."""
    checkpoint()
    if sys.stdout is None:  # started with stdout closed
        raise RunError("stdout", "is closed; nothing was written")
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as err:
        _stdout_to_devnull()  # nothing more to lose at exit, nor a second report
        if isinstance(err, BrokenPipeError):
            raise
        from edgesplit.sweep.resources import describe

        raise RunError("stdout", f"writing failed: {describe(err, where=False)}") from None


def _stdout_to_devnull() -> None:
    with contextlib.suppress(Exception):  # no file descriptor (a test's capture)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    """Run the command; every failure is one line on stderr. Exit status 0, 2 for bad
    input or a machine that cannot carry the run (full disk, read-only store, too
    little memory, a closed or failing stdout), 128 + the signal when SIGINT (130) or
    SIGTERM (143) stops it, from the first instruction on, and 141 (SIGPIPE) when the
    reader of stdout is gone (``| head``)."""
    with interrupts_raise(), warnings.catch_warnings():
        warnings.showwarning = _warning_in_one_line
        try:
            args = parser().parse_args(argv)
            import jax

            from edgesplit.sweep.compile_cache import enable_compile_cache

            # Single solves and their reference checks run in float64.
            jax.config.update("jax_enable_x64", True)
            if args.command in ("run", "solve", "trace", "export"):  # the commands that compile
                enable_compile_cache()
            checkpoint()  # a signal that came during the imports
            status = args.run(args)
            checkpoint()  # one Python dropped: not a success
            return status
        except (InputError, RunError) as err:
            return _fail(str(err))
        except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (an Interrupted)
            return _interrupted(stop)
        except BrokenPipeError:  # output piped into `head` and the like: quietly
            _stdout_to_devnull()
            return 128 + signal.SIGPIPE
        except OSError as err:  # not met by the run's own checks
            from edgesplit.sweep.resources import describe

            return _fail(f"{err.filename or 'edgesplit'}: {describe(err, where=False)}")
        except MemoryError:
            return _fail("chunk: out of memory; use a smaller chunk (or fewer topologies)")
        except Exception as err:
            from edgesplit.sweep.interrupts import received

            if received() is not None:  # the interruption, as a library re-raised it
                return _interrupted(err)
            if "RESOURCE_EXHAUSTED" not in str(err):  # XLA out of a device's memory
                raise
            return _fail(
                "chunk: a device ran out of memory (RESOURCE_EXHAUSTED); use a smaller "
                "--batch or chunk"
            )


def _warning_in_one_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning (say, JAX failing to write its compile cache on a full disk) as one
    line, not two with source."""
    text = " ".join(str(message).split())
    print(f"edgesplit: warning: {category.__name__}: {text}", file=file or sys.stderr)


def _fail(line: str) -> int:
    print(f"edgesplit: error: {line}", file=sys.stderr)
    return 2


def _interrupted(stop: BaseException) -> int:
    """One line, ``edgesplit: interrupted by SIGTERM: 3 of 8 chunks recorded in ...``;
    the exit status 128 + the signal."""
    from edgesplit.sweep.interrupts import received

    signum = getattr(stop, "signum", None) or received() or signal.SIGINT
    progress = getattr(stop, "progress", "")
    name = signal.Signals(signum).name
    print(f"edgesplit: interrupted by {name}{': ' if progress else ''}{progress}", file=sys.stderr)
    return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
