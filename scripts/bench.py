"""The benchmark suite: edgesplit's performance targets, measured on this machine.

    python scripts/bench.py [--device cpu|gpu] [--only PART ...]

Every ratio is measured side by side in one process on the same scenarios. Parts:

  fig3        the full Fig. 3 sweep (40,000 solves) through the CLI, compilation
              included, with its peak resident memory (target: under 30 s)
  baselines   JAX against a NumPy implementation vectorised across the MDs of one
              scenario (scripts/numpy_baseline.py, target 50x) and the plain-Python
              reference (edgesplit.reference, target 10,000x), same answers asserted
  memory      peak resident memory of a 100,000-topology sweep streaming to its store
              (target: under 1.5 GiB)
  compile     one compilation per sweep: compile seconds and the jit cache size after
              several chunks (also asserted in tests/test_sweep.py)
  scaling     solves per second against MDs (10-500), ESs (2-32) and split points
  exhaustive  the exhaustive best response against the exact one
  precision   float32 against float64: speed and the largest outcome differences
  arithmetic  floating-point operations per solve and the fraction of this machine's
              measured peak they reach
  lanes       (GPU) solves per second of one batch of Fig. 3 games (its sweep's game
              settings) on different numbers of game lanes: the single-batch rate
  batches     (GPU) the Fig. 3 sweep through the CLI with --batch 1, 2, all chunks and
              the default, each cold and with its programs cached (targets on a GPU:
              < 8 s and < 2 s; the sweep's rate against the single-batch rate, >= 80%)
  million     (GPU) a million Fig. 3 solves through the sweep path (run_sweep: store,
              chunks, batches as edgesplit run chooses them), compile time apart, with
              the device's peak memory (target: under 30 s)
  leaders     Fig. 3 under the leader rules best_response (the first --leader-topologies
              topologies) and enumerate (proposed scheme, the first --enumerate-topologies),
              through the CLI, compilation included (targets: 1,000 topologies in under
              60 s and 10 minutes)
  anatomy     where a Fig. 3 game's time goes, ms of core time a game by rate and scheme:
              Algorithm 1 on the game queue, and its certificate's table of offers, first
              passes and open moves settled in full
  markets     Algorithm 1's markets on Fig. 3 games by rate and scheme: markets a game,
              the share its first admission pass settles, the grid rows they visit, and
              the market passes a table of offers' first pass would leave

Writes results/bench/bench-DEVICE.json and .md: one report per run, holding the parts it ran
(--only or --preset: some parts). The report it replaces, an earlier run's, is kept under its
dated name, results/bench/DATE-DEVICE-COMMIT.json and .md. Fig. 3 solves below are 20 MDs, 2 ESs,
λ = 10 tasks/s, proposed scheme, float64, unless a part says otherwise.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Importing JAX starts no backend: main() chooses the platform before anything here
# touches one (nothing at module level does).
import jax
import jax.numpy as jnp
import numpy as np
import numpy_baseline  # a sibling: scripts/ is on sys.path when a script in it runs
from bench_scaling import commit, cpu_model

from edgesplit import reference
from edgesplit.config import GameSettings, Setup, price_levels
from edgesplit.game import grid, offers
from edgesplit.game.admission import admitting, open_market
from edgesplit.game.algorithm1 import Update, end_round, start, turn_markets, turn_outcome
from edgesplit.game.best_response import offload_terms
from edgesplit.game.market import market, next_pass, server_sales
from edgesplit.game.prices import prices_at
from edgesplit.io.sweep_file import read_sweep
from edgesplit.model.schemes import Scheme, scheme_options
from edgesplit.sweep import runner
from edgesplit.sweep.batch import GAMES_TOGETHER, batch_regret, solve_batch
from edgesplit.sweep.chunks import chunk_solver, default_cpu_devices, default_game_lanes
from edgesplit.sweep.compile_cache import ENVIRONMENT
from edgesplit.sweep.topology import sample_topology

ROOT = Path(__file__).resolve().parents[1]
PARTS = (
    "fig3",
    "baselines",
    "memory",
    "compile",
    "scaling",
    "exhaustive",
    "precision",
    "arithmetic",
    "lanes",
    "batches",
    "million",
    "leaders",
    "anatomy",
    "markets",
)
# Run by default with --device gpu only; the Fig. 3 sweep's targets (batches) before the
# longest part (million), so that a check cut short by its time limit still has them.
GPU_PARTS = ("lanes", "batches", "million")
# The prepared GPU check (scripts/gpu_check.sh): the GPU parts alone, in this order, in a
# new report (batches measures the Fig. 3 sweep that the part fig3 would).
PRESETS = {"gpu-check": GPU_PARTS}
FIG3 = Setup().replace(mean_arrival_rate=10.0)
GIB = 2**30


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--only", nargs="+", choices=PARTS, help="run only these parts")
    parser.add_argument("--preset", choices=PRESETS, help="run a preset's parts (as --only)")
    parser.add_argument(
        "--million-topologies", type=int, default=25_000,
        help="topologies of the million part (default 25,000: 10^6 solves)",
    )  # fmt: skip
    parser.add_argument(
        "--batch-topologies", type=int, nargs=2, default=(1000, 100), metavar=("N", "CHUNK"),
        help="topologies and chunk of the batches part (default Fig. 3's: 1000 100)",
    )  # fmt: skip
    parser.add_argument(
        "--leader-topologies", type=int, default=100,
        help="topologies of the best_response part (default 100)",
    )  # fmt: skip
    parser.add_argument(
        "--enumerate-topologies", type=int, default=10,
        help="topologies of the enumerate part, proposed scheme (default 10; the target's: 1000)",
    )  # fmt: skip
    return parser.parse_args(argv)


def choose_platform(device: str) -> str:
    """Make JAX run on ``device`` ("cpu" or "gpu"), before it starts a backend; the CLI
    runs below inherit the choice. Returns the platform JAX then runs on."""
    platforms = "cuda" if device == "gpu" else "cpu"
    os.environ["JAX_PLATFORMS"] = platforms  # for the CLI runs
    jax.config.update("jax_platforms", platforms)  # JAX read the variable at import
    # The CLI runs below share the GPU with this process: none may take 75% of it up front.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    jax.config.update("jax_enable_x64", True)
    return jax.devices()[0].platform


def current_platform() -> str:
    """The platform JAX runs on (after :func:`choose_platform`)."""
    return jax.devices()[0].platform


def solver(setup: Setup, settings=GameSettings(), dtype=jnp.float64, lanes: int | None = None):
    """A jitted (first topology index, count-shaped array, scheme) -> (topologies,
    solutions, rounds played after the skipped opening rounds), the batch solved as
    sweeps solve it (topologies drawn in float64, then cast to ``dtype``; as many game
    lanes as a sweep's chunk of this size gets on this platform, unless ``lanes``).
    Setups that differ only in their numbers (their price grids as many levels, to which
    the settings are fitted) share one compiled program."""
    levels = price_levels(setup.max_price, setup.price_step)
    program = _solver_program(
        settings.fit_levels(levels, setup.num_servers), jnp.dtype(dtype), lanes,
        setup.num_devices, setup.num_servers,
    )  # fmt: skip
    return lambda first, count_like, scheme: program(first, count_like, scheme, setup)


@functools.cache
def _solver_program(settings, dtype, lanes, num_devices, num_servers):
    @jax.jit
    def run(first, count_like, scheme, setup):
        indices = first + jnp.arange(count_like.shape[0])
        topologies = jax.vmap(
            lambda i: sample_topology(
                jax.random.fold_in(jax.random.key(0), i),
                setup,
                num_devices,
                num_servers,
                jnp.float64,
            )
        )(indices)
        scenarios = jax.tree.map(
            lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
            topologies.scenario,
        )
        count = count_like.shape[0]
        solutions = solve_batch(
            scenarios, scheme, settings, lanes or default_game_lanes(current_platform(), count)
        )
        options = jax.vmap(lambda sc: scheme_options(sc, scheme))(scenarios)
        skipped = jax.vmap(lambda sc, op: start(sc, op, settings).rounds)(scenarios, options)
        return topologies, solutions, solutions.rounds - skipped

    return run


def timed(run, count: int, scheme=Scheme.PROPOSED):
    """(seconds with compilation, seconds again on new topologies of the same shapes,
    the second call's results)."""
    shape, scheme = jnp.zeros(count), jnp.int32(scheme)
    begin = time.perf_counter()
    jax.block_until_ready(run(0, shape, scheme))
    first = time.perf_counter() - begin
    begin = time.perf_counter()
    results = jax.block_until_ready(run(count, shape, scheme))
    return first, time.perf_counter() - begin, results


def leaders(out: dict, scratch: Path, topologies: int, enumerated: int) -> None:
    """Fig. 3 under best_response and enumerate, each a sweep through the CLI with an empty
    compile cache."""
    base = (ROOT / "sweeps" / "fig3.toml").read_text()
    figures = {}
    for rule, count, schemes in (
        ("best_response", topologies, None),
        ("enumerate", enumerated, '["proposed"]'),
    ):
        text = (
            base.replace("topologies = 1000", f"topologies = {count}").replace(
                "chunk = 100", f"chunk = {min(count, 100)}"
            )
            + f'\n[game]\nleader = "{rule}"\n'
        )
        if schemes:
            text = text.replace('schemes = ["proposed", "edge_only", "heuristic", "user_only"]',
                                f"schemes = {schemes}")  # fmt: skip
        sweep = scratch / f"fig3-{rule}.toml"
        sweep.write_text(text)
        seconds, peak = cli("run", str(sweep), "--out", str(scratch / f"{rule}.zarr"), "--quiet",
                            compile_cache=scratch / f"xla-{rule}")  # fmt: skip
        games = count * 10 * (1 if schemes else 3)
        figures[rule] = {"topologies": count, "games": games, "seconds": seconds,
                         "peak_rss_gib": peak}  # fmt: skip
        say(
            out,
            f"leaders: Fig. 3 with leader = {rule}, {count} topologies ({games} games that "
            f"play), {seconds:.1f} s with compilation, peak RSS {peak:.2f} GiB",
        )
    rule = figures["best_response"]
    target(
        out, "Fig. 3 with leader = best_response (1,000 topologies)", "< 60 s",
        f"{rule['seconds']:.1f} s for {rule['topologies']} topologies", rule["topologies"] >= 1000
        and rule["seconds"] < 60,
    )  # fmt: skip
    rule = figures["enumerate"]
    target(
        out, "Fig. 3 proposed with leader = enumerate (10,000 games)", "< 10 min",
        f"{rule['seconds']:.1f} s for {rule['games']} games", rule["games"] >= 10_000
        and rule["seconds"] < 600,
    )  # fmt: skip
    out["leaders"] = figures


def anatomy(out: dict, games: int = 200, rates=(2.0, 6.0, 10.0, 14.0, 18.0)) -> None:
    """Where a Fig. 3 game's time goes, in ms of core time a game (process time, compiled,
    ``games`` games a point, :data:`~edgesplit.sweep.batch.GAMES_TOGETHER` at a time as the
    certificate groups them): Algorithm 1 on the game queue without the certificate, and
    the certificate at its outcome split into the table of offers, the first passes of
    every move from it, and the moves they leave open settled in full (the certificate
    less the passes); with the table's rows made and the open moves a game."""
    game = fig3_game()
    no_certificate = game.replace(grid_certificate=False)
    movers = jnp.arange(FIG3.num_servers)

    def grouped(work):
        return jax.jit(
            lambda *at: jax.lax.map(lambda one: work(*one), at, batch_size=GAMES_TOGETHER)
        )

    def table(scenario, options, *_):
        made = offers.offer_table(scenario, options, game)
        return made.first_row, jnp.sum(made.most_paid) + jnp.sum(made.offers.crbs)

    def passes(scenario, options, price_crb, price_rrb, utility):
        tables, here = grid.moves_from(scenario, options, game, price_crb, price_rrb)
        at = (tables, here, price_crb, price_rrb, movers, utility)
        return grid.open_moves(scenario, options, game, *at).count

    parts = {
        "table": grouped(table),
        "passes": grouped(passes),
        "certificate": jax.jit(lambda sc, op, *at: batch_regret(sc, op, game, *at)),
    }
    rows = []
    for rate in rates:
        run = solver(FIG3.replace(mean_arrival_rate=rate), no_certificate)
        for scheme in (Scheme.PROPOSED, Scheme.EDGE_ONLY, Scheme.HEURISTIC):
            _, _, (topologies, solutions, _) = timed(run, games, scheme)
            scenarios = topologies.scenario
            options = jax.vmap(lambda sc, s=scheme: scheme_options(sc, jnp.int32(s)))(scenarios)
            at = (scenarios, options, solutions.price_crb, solutions.price_rrb,
                  solutions.server_utility)  # fmt: skip
            core, results = {}, {}
            for name, work in parts.items():
                jax.block_until_ready(work(*at))  # compiled
                begin = time.process_time()
                results[name] = jax.block_until_ready(work(*at))
                core[name] = (time.process_time() - begin) / games * 1e3
            begin = time.process_time()
            jax.block_until_ready(run(games, jnp.zeros(games), jnp.int32(scheme)))
            rows.append({
                "rate": rate, "scheme": Scheme(scheme).label,
                "game_ms": (time.process_time() - begin) / games * 1e3,
                "table_ms": core["table"], "passes_ms": core["passes"] - core["table"],
                "settle_ms": core["certificate"] - core["passes"],
                "certificate_ms": core["certificate"],
                "rows": float(np.mean(game.price_levels - np.asarray(results["table"][0]))),
                "open_moves": float(np.mean(results["passes"])),
            })  # fmt: skip
            say(
                out,
                "anatomy: λ = {rate:g}, {scheme}: game {game_ms:.2f}, certificate "
                "{certificate_ms:.2f} = table {table_ms:.2f} ({rows:.0f} rows) + first passes "
                "{passes_ms:.2f} + open moves {settle_ms:.2f} ({open_moves:.1f}) ms of core "
                "time a game".format(**rows[-1]),
            )
    out["anatomy"] = {"games": games, "rows": rows}


def market_census(scenario, options, settings: GameSettings):
    """Algorithm 1 played on one game as :meth:`~edgesplit.game.leaders.LeaderRule.play`
    plays it, counting what the game queue settles: the markets of each turn that the turn
    before did not play (the queue reuses those), how many of them their first admission
    pass settles, their admission passes, and the grid levels any market visits (the rows
    of a table of offers its first passes would read). Returns (rounds played after the
    fast-forward, markets, settled by the first pass, passes, levels visited)."""
    servers, update = scenario.servers, Update(settings.update)
    terms = offload_terms(scenario)
    markets_a_turn = 1 + update.movers(servers.num_servers, 0).shape[0] * len(settings.moves)

    def settled(price_crb, price_rrb):
        return jax.lax.while_loop(
            functools.partial(admitting, scenario),
            functools.partial(next_pass, scenario, options, settings, terms, price_crb, price_rrb),
            open_market(scenario),
        )

    def turn(index, carry):
        steps, previous, counts, visited = carry
        movers = update.movers(servers.num_servers, index)
        tried = turn_markets(servers, settings, steps, movers)
        prices = jax.vmap(functools.partial(prices_at, servers))(tried)
        admission = jax.vmap(settled)(*prices)
        sales = jax.vmap(functools.partial(server_sales, scenario))
        utility, crbs, rrbs = sales(admission.choice, *prices)
        fresh = ~jnp.any(jnp.all(tried[:, None] == previous[None], axis=(2, 3)), axis=1)
        counts = counts + jnp.stack([
            jnp.sum(fresh), jnp.sum(fresh & (admission.passes <= 1)),
            jnp.sum(jnp.where(fresh, admission.passes, 0)),
        ]).astype(jnp.int32)  # fmt: skip
        visited = visited.at[tried.reshape(-1)].set(True)
        steps = turn_outcome(servers, settings, steps, movers, utility, crbs + rrbs)
        return steps, tried, counts, visited

    def round_(carry):
        state, previous, counts, visited = carry
        steps, previous, counts, visited = jax.lax.fori_loop(
            0, update.turns(servers.num_servers), turn, (state.steps, previous, counts, visited)
        )
        return end_round(settings, state, steps), previous, counts, visited

    first = start(scenario, options, settings)
    state, _, counts, visited = jax.lax.while_loop(
        lambda carry: carry[0].running,
        round_,
        (
            first,
            jnp.full((markets_a_turn, servers.num_servers, 2), -1, jnp.int32),
            jnp.zeros(3, jnp.int32),
            jnp.zeros(settings.price_levels, bool),
        ),
    )
    return state.rounds - first.rounds, *counts, jnp.sum(visited, dtype=jnp.int32)


PASSES_TIMED = 50
"""Market passes a game makes in the timing of one (:func:`markets`)."""


def markets(out: dict, games: int = 200, rates=(2.0, 6.0, 10.0, 14.0, 18.0)) -> None:
    """Algorithm 1's markets on Fig. 3 games (:func:`market_census`), by rate and scheme:
    rounds played, markets the game queue settles a game, the share its first admission
    pass settles, passes a market, the grid rows the markets visit against the rows the
    certificate's table of offers makes; and the market passes a game needs settled
    directly against those a table's first pass would leave, with the measured core time
    of one market pass and of one table row (the cost of the passes a table replaces, and
    of the rows that replace them)."""
    game = fig3_game()
    census = jax.jit(
        lambda sc, op: jax.lax.map(
            lambda one: market_census(*one, game), (sc, op), batch_size=GAMES_TOGETHER
        )
    )
    table = jax.jit(
        lambda sc, op: jax.lax.map(
            lambda one: offers.offer_table(*one, game).first_row,
            (sc, op),
            batch_size=GAMES_TOGETHER,
        )
    )

    def repeated_passes(scenario, option, terms, price_crb, price_rrb):
        """:data:`PASSES_TIMED` first passes at prices a little apart (so that none is
        hoisted out of the loop), the price-free terms made once, as the queue makes them."""

        def one(index, total):
            lower = price_crb - index * 1e-9
            admission = next_pass(
                scenario, option, game, terms, lower, price_rrb, open_market(scenario)
            )
            return total + jnp.sum(admission.choice.utility)

        return jax.lax.fori_loop(0, PASSES_TIMED, one, 0.0)

    timed_passes = jax.jit(jax.vmap(repeated_passes))
    rows = []
    for rate in rates:
        setup = FIG3.replace(mean_arrival_rate=rate)
        keys = jax.random.split(jax.random.key(5), games)
        scenarios = jax.vmap(lambda key, s=setup: sample_topology(key, s).scenario)(keys)
        for scheme in (Scheme.PROPOSED, Scheme.EDGE_ONLY, Scheme.HEURISTIC):
            options = jax.vmap(lambda sc, s=scheme: scheme_options(sc, jnp.int32(s)))(scenarios)
            played, count, first, passes, visited = (
                np.asarray(x) for x in census(scenarios, options)
            )
            # One pass of a market a quarter down the grid (60 of its 201 levels).
            prices = jax.vmap(lambda sc: prices_at(sc.servers, jnp.full((2, 2), 60)))(scenarios)
            core, results = {}, {}
            for name, work, at in (
                ("row", table, (scenarios, options)),
                (
                    "pass",
                    timed_passes,
                    (scenarios, options, jax.vmap(offload_terms)(scenarios), *prices),
                ),
            ):
                jax.block_until_ready(work(*at))  # compiled
                begin = time.process_time()
                results[name] = jax.block_until_ready(work(*at))
                core[name] = (time.process_time() - begin) / games * 1e6
            core["pass"] /= PASSES_TIMED
            made_rows = game.price_levels - np.asarray(results["row"])
            rows.append({
                "rate": rate, "scheme": Scheme(scheme).label,
                "rounds_played": float(played.mean()), "markets": float(count.mean()),
                "first_pass_settles": float(first.sum() / max(count.sum(), 1)),
                "passes_a_market": float(passes.sum() / max(count.sum(), 1)),
                "rows_visited": float(visited.mean()), "rows_made": float(made_rows.mean()),
                "passes_direct": float(passes.mean()),
                "passes_after_table": float((passes - count).mean()),
                "pass_us": core["pass"], "row_us": core["row"] / max(made_rows.mean(), 1.0),
            })  # fmt: skip
            say(
                out,
                "markets: λ = {rate:g}, {scheme}: {rounds_played:.1f} rounds played, "
                "{markets:.1f} markets a game, {first_pass_settles:.1%} settled by their first "
                "pass, {passes_a_market:.2f} passes a market; rows visited {rows_visited:.1f} "
                "of {rows_made:.1f} made; market passes a game {passes_direct:.1f} settled "
                "directly, {passes_after_table:.1f} after a table's first pass; one pass "
                "{pass_us:.1f} µs, one table row {row_us:.1f} µs of core time".format(**rows[-1]),
            )
    out["markets"] = {"games": games, "rows": rows}


def say(out: dict, line: str) -> None:
    """Print a part's result and keep it for the Markdown report."""
    print(line, flush=True)
    out.setdefault("lines", []).append(line)


def target(out: dict, what: str, wanted: str, measured: str, met: bool) -> None:
    """Record one of the issue's targets for the report's table (in place of an earlier
    measurement of it)."""
    targets = [t for t in out.get("targets", []) if t["target"] != what]
    met = bool(met)
    out["targets"] = [
        *targets,
        {"target": what, "wanted": wanted, "measured": measured, "met": met},
    ]


def cli(*arguments, compile_cache: Path | None = None) -> tuple[float, float]:
    """Run ``edgesplit ARGUMENTS``: (wall seconds, peak resident memory in GiB). Its
    compile cache is ``compile_cache``, or none."""
    env = {**os.environ, ENVIRONMENT: str(compile_cache) if compile_cache else "off"}
    begin = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "edgesplit", *arguments], cwd=ROOT, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"edgesplit {' '.join(arguments)} failed ({status})")
    return time.perf_counter() - begin, usage.ru_maxrss * 1024 / GIB  # ru_maxrss: KiB


def fig3(out: dict, scratch: Path, device: str) -> None:
    # Cold: an empty compile cache, as on a fresh machine. Then the same sweep again,
    # into a new store, its programs loaded from that cache (a rerun, or a resume).
    cache = scratch / "xla"
    seconds, peak = cli(
        "run", "sweeps/fig3.toml", "--out", str(scratch / "fig3.zarr"), "--quiet",
        compile_cache=cache,
    )  # fmt: skip
    rerun, rerun_peak = cli(
        "run", "sweeps/fig3.toml", "--out", str(scratch / "fig3-rerun.zarr"), "--quiet",
        compile_cache=cache,
    )  # fmt: skip
    target(
        out,
        "Fig. 3 sweep, 40,000 solves, the grid certificate on every solve, compile included",
        "< 30 s",
        f"{seconds:.1f} s",
        seconds < 30,
    )
    devices = default_cpu_devices() if device == "cpu" else jax.local_device_count()
    out["fig3"] = {
        "devices": devices,
        "solves": 40_000,
        "seconds": seconds,
        "solves_per_s": 40_000 / seconds,
        "peak_rss_gib": peak,
        "rerun_seconds": rerun,
        "rerun_peak_rss_gib": rerun_peak,
    }
    say(
        out,
        f"fig3: 40,000 solves on {devices} devices in {seconds:.1f} s with compilation "
        f"({40_000 / seconds:.0f}/s), "
        f"peak RSS {peak:.2f} GiB; again with the compiled programs cached: {rerun:.1f} s "
        f"({40_000 / rerun:.0f}/s), peak RSS {rerun_peak:.2f} GiB",
    )


def unbatched(tree, index: int):
    return jax.tree.map(lambda x: np.asarray(x)[index], tree)


def baselines(out: dict, count: int = 1000, numpy_games: int = 8, python_games: int = 2) -> None:
    _, steady, (topologies, solutions, played) = timed(solver(FIG3), count)
    jax_rate = count / steady
    # NumPy plays every round; the engine skips the opening rounds where nobody buys.
    plain = GameSettings().replace(fast_forward=False)
    _, steady_plain, (_, same, _) = timed(solver(FIG3, settings=plain), count)
    for field in ("rounds", "status", "price_crb"):
        np.testing.assert_array_equal(getattr(same, field), getattr(solutions, field))

    problems = [
        numpy_baseline.as_problem(unbatched(topologies, i), FIG3) for i in range(numpy_games)
    ]
    begin = time.perf_counter()
    for i, problem in enumerate(problems):
        steps, rounds, status = numpy_baseline.play(problem, reference.PROPOSED)
        numpy_baseline.final_market(problem, steps, reference.PROPOSED)
        assert (rounds, status) == (int(solutions.rounds[i]), int(solutions.status[i])), i
        prices = reference.prices_at(problem, steps)[0]
        np.testing.assert_allclose(prices, solutions.price_crb[i], rtol=0, atol=1e-12)
    numpy_rate = numpy_games / (time.perf_counter() - begin)

    # A Fig. 3 solve takes hours in plain Python: time one best-response pass over every
    # device and multiply by the passes the solve needs at the least (one per market,
    # rounds x (2S + 1)), a lower bound on its time.
    lower_bounds = []
    for i, problem in enumerate(problems[:python_games]):
        price = [float(solutions.price_crb[i][0])] * FIG3.num_servers
        crbs = [s["crbs"] for s in problem["servers"]]
        rrbs = [s["rrbs"] for s in problem["servers"]]
        begin = time.perf_counter()
        for m in range(FIG3.num_devices):
            reference.best_response(problem, m, price, price, crbs, rrbs, reference.PROPOSED)
        passes = int(solutions.rounds[i]) * (2 * FIG3.num_servers + 1)
        lower_bounds.append((time.perf_counter() - begin) * passes)
    python_rate = 1 / np.mean(lower_bounds)

    # Measured directly where Python finishes: 4 MDs, 6 CRBs, 16 RRBs, Δ = 0.1.
    small = FIG3.replace(num_devices=4, crbs=6, rrbs=16, max_price=2.0, price_step=0.1)
    _, small_steady, (small_topologies, small_solutions, _) = timed(solver(small), 200)
    begin = time.perf_counter()
    for i in range(3):
        problem = numpy_baseline.as_problem(unbatched(small_topologies, i), small)
        _, rounds, status = reference.play(problem, reference.PROPOSED)
        assert (rounds, status) == (int(small_solutions.rounds[i]), int(small_solutions.status[i]))
    small_python = 3 / (time.perf_counter() - begin)

    out["baselines"] = {
        "games": count,
        "jax_solves_per_s": jax_rate,
        "jax_no_fast_forward_solves_per_s": count / steady_plain,
        "numpy_games": numpy_games,
        "numpy_solves_per_s": numpy_rate,
        "vs_numpy": jax_rate / numpy_rate,
        "vs_numpy_no_fast_forward": count / steady_plain / numpy_rate,
        "python_games": python_games,
        "python_solves_per_s_at_most": python_rate,
        "vs_python_at_least": jax_rate / python_rate,
        "reduced_jax_solves_per_s": 200 / small_steady,
        "reduced_python_solves_per_s": small_python,
        "vs_python_reduced": 200 / small_steady / small_python,
        "rounds_mean": float(np.mean(solutions.rounds)),
        "played_rounds_mean": float(np.mean(played)),
        "converged": float(np.mean(solutions.converged)),
    }
    b = out["baselines"]
    target(
        out,
        "solves/s vs plain Python",
        ">= 10,000x",
        f">= {b['vs_python_at_least']:,.0f}x",
        b["vs_python_at_least"] >= 1e4,
    )
    target(
        out,
        "solves/s vs NumPy (vectorised over MDs)",
        ">= 50x",
        f"{b['vs_numpy']:.0f}x ({b['vs_numpy_no_fast_forward']:.0f}x without the fast-forward)",
        b["vs_numpy"] >= 50,
    )
    say(
        out,
        f"baselines: JAX {jax_rate:.0f} solves/s ({b['jax_no_fast_forward_solves_per_s']:.0f} "
        f"without the fast-forward); NumPy {numpy_rate:.2f}/s: {b['vs_numpy']:.0f}x "
        f"({b['vs_numpy_no_fast_forward']:.0f}x); Python <= {python_rate:.1e}/s: "
        f">= {b['vs_python_at_least']:,.0f}x; reduced instance {b['vs_python_reduced']:,.0f}x",
    )


def memory(out: dict, scratch: Path, topologies: int = 100_000) -> None:
    # The heuristic's games are the shortest; the chunk program is the same for every
    # scheme (the scheme is an argument, not a constant), so its memory is too.
    sweep = scratch / "memory.toml"
    sweep.write_text(
        'name = "memory"\nschemes = ["heuristic"]\n'
        f"topologies = {topologies}\nseed = 5\nchunk = 1000\n"
        "[setup]\nmean_arrival_rate = 10\n"
    )
    store = scratch / "memory.zarr"
    _, small_peak = cli(
        "run", str(sweep), "--out", str(store) + "1k", "--quiet", "--topologies", "1000"
    )
    seconds, peak = cli("run", str(sweep), "--out", str(store), "--quiet")
    target(
        out, f"peak RSS, {topologies:,}-topology sweep", "< 1.5 GiB", f"{peak:.2f} GiB", peak < 1.5
    )
    out["memory"] = {
        "topologies": topologies,
        "chunk": 1000,
        "seconds": seconds,
        "peak_rss_gib": peak,
        "peak_rss_gib_1000_topologies": small_peak,
    }
    say(
        out,
        f"memory: {topologies:,} topologies in {seconds:.0f} s, peak RSS {peak:.2f} GiB "
        f"(1,000 topologies: {small_peak:.2f} GiB)",
    )


def compile_once(out: dict) -> None:
    sweep = read_sweep(ROOT / "sweeps/fig3.toml")
    chunks = chunk_solver(sweep)
    begin = time.perf_counter()
    chunks.compile()
    compiling = time.perf_counter() - begin
    times = []
    for start_index in (0, sweep.chunk, 2 * sweep.chunk):
        begin = time.perf_counter()
        jax.block_until_ready(chunks(start_index))
        times.append(time.perf_counter() - begin)
    # Two programs, each compiled once: sampling the topologies, and solving them.
    compiled = chunks.sample._cache_size() + chunks.run._cache_size()
    assert compiled == 2, compiled
    target(out, "compilations per sweep", "2 (sample, solve)", str(compiled), compiled == 2)
    out["compile"] = {
        "compile_s": compiling,
        "chunk_s": float(np.mean(times)),
        "cache_size": compiled,
    }
    say(
        out,
        f"compile: Fig. 3's programs in {compiling:.1f} s, then {np.mean(times):.1f} s a chunk "
        f"on one device, compiling nothing more ({compiled} programs for 3 chunks)",
    )


def scaling(out: dict, games: int = 64) -> None:
    cases = [("devices", m, FIG3.replace(num_devices=m)) for m in (10, 20, 50, 100, 200, 500)]
    cases += [("servers", s, FIG3.replace(num_servers=s)) for s in (2, 4, 8, 16, 32)]
    cases += [
        ("model", name, FIG3.replace(models=(name,))) for name in ("face", "asr", "alexnet", "vgg")
    ]
    rows = []
    for axis, value, setup in cases:
        _, steady, (topologies, _, played) = timed(solver(setup), games)
        splits = topologies.scenario.devices.device_cycles.shape[-1]
        m, s = setup.num_devices, setup.num_servers
        rounds = float(np.sum(played))
        # Work per round in the model: 2S + 1 markets of M x S x A offload options.
        elements = rounds * (2 * s + 1) * m * s * splits
        rows.append(
            {
                "axis": axis,
                "value": value,
                "devices": m,
                "servers": s,
                "splits": splits,
                "solves_per_s": games / steady,
                "played_rounds_mean": rounds / games,
                "ns_per_option": steady / elements * 1e9 if elements else None,
            }
        )
        say(
            out,
            f"scaling: {axis} = {value}: {games / steady:.1f} solves/s, "
            f"{rounds / games:.1f} rounds, {rows[-1]['ns_per_option'] or 0:.2f} ns per option",
        )
    out["scaling"] = {"games": games, "rows": rows}


def exhaustive(out: dict, games: int = 200) -> None:
    # Smaller capacities keep the exhaustive (y, z) grid within memory.
    setup = FIG3.replace(crbs=8, rrbs=16)
    grids = GameSettings().replace(best_response="exhaustive", crb_grid=8, rrb_grid=16)
    _, exact_s, (_, exact, _) = timed(solver(setup), games)
    _, grid_s, (_, grid, _) = timed(solver(setup, settings=grids), games)
    same = all(
        np.array_equal(getattr(exact, f), getattr(grid, f))
        for f in ("rounds", "status", "price_crb")
    ) and np.array_equal(exact.devices.crbs, grid.devices.crbs)
    out["exhaustive"] = {
        "games": games,
        "crbs": 8,
        "rrbs": 16,
        "exact_solves_per_s": games / exact_s,
        "exhaustive_solves_per_s": games / grid_s,
        "speedup": grid_s / exact_s,
        "same_outcomes": bool(same),
    }
    say(
        out,
        f"exhaustive: exact {games / exact_s:.0f}/s, exhaustive {games / grid_s:.1f}/s "
        f"({grid_s / exact_s:.0f}x slower), same outcomes: {same}",
    )


def precision(out: dict, games: int = 200, rates=(2.0, 6.0, 10.0, 14.0, 20.0)) -> None:
    """The same topologies solved in float64 and in float32, at several Fig. 3 arrival
    rates under every scheme that plays a game."""
    seconds = {"float64": 0.0, "float32": 0.0}
    same_game, same_choice, price_gap, utility_gap = [], [], 0.0, 0.0
    for rate in rates:
        setup = FIG3.replace(mean_arrival_rate=rate)
        double_run, single_run = solver(setup), solver(setup, dtype=jnp.float32)
        for scheme in (Scheme.PROPOSED, Scheme.EDGE_ONLY, Scheme.HEURISTIC):
            _, double_s, (_, double, _) = timed(double_run, games, scheme)
            _, single_s, (_, single, _) = timed(single_run, games, scheme)
            seconds["float64"] += double_s
            seconds["float32"] += single_s
            same_game.append(
                (np.asarray(double.rounds) == single.rounds)
                & (np.asarray(double.status) == single.status)
            )
            same_choice.append(
                np.all(np.asarray(double.devices.server) == single.devices.server, axis=1)
                & np.all(np.asarray(double.devices.split) == single.devices.split, axis=1)
                & np.all(np.asarray(double.devices.crbs) == single.devices.crbs, axis=1)
                & np.all(np.asarray(double.devices.rrbs) == single.devices.rrbs, axis=1)
            )
            price_gap = max(price_gap, float(np.max(np.abs(double.price_crb - single.price_crb))))
            mean = lambda s: np.mean(np.asarray(s.devices.utility, np.float64), axis=1)  # noqa: E731
            utility_gap = max(utility_gap, float(np.max(np.abs(mean(double) - mean(single)))))
    out["precision"] = {
        "games": games * len(rates) * 3,
        "rates": list(rates),
        "speedup": seconds["float64"] / seconds["float32"],
        "same_rounds_and_status": float(np.mean(np.concatenate(same_game))),
        "same_choices": float(np.mean(np.concatenate(same_choice))),
        "largest_price_difference": price_gap,
        "largest_mean_md_utility_difference": utility_gap,
    }
    p = out["precision"]
    say(
        out,
        f"precision: float32 {p['speedup']:.2f}x float64's speed over {p['games']} games; "
        f"same rounds and status {p['same_rounds_and_status']:.2%}, same choices "
        f"{p['same_choices']:.2%}; prices differ by up to {price_gap:.3g}, mean MD utility "
        f"by up to {utility_gap:.3g}",
    )


def arithmetic(out: dict) -> None:
    """Operations XLA counts in one market evaluation (one admission pass: its loop body
    is counted once), times the markets Algorithm 1 as written evaluates in a solve
    (every round's 2S + 1, then the final market and the certificate's moves). The
    rate is an effective one: the game queue skips the markets a lane has played."""
    topology = sample_topology(jax.random.key(0), FIG3, FIG3.num_devices, FIG3.num_servers)
    scenario = topology.scenario
    options = scheme_options(scenario, jnp.int32(Scheme.PROPOSED))
    prices = scenario.servers.max_price / 2
    cost = (
        jax.jit(lambda sc, op, p: market(sc, op, GameSettings(), p, p))
        .lower(scenario, options, prices)
        .compile()
        .cost_analysis()
    )
    cost = cost[0] if isinstance(cost, list) else cost
    per_market = cost["flops"] + cost.get("transcendentals", 0.0)
    rate = out.get("baselines", {}).get("jax_solves_per_s")
    played = out.get("baselines", {}).get("played_rounds_mean")
    if rate is None:
        raise SystemExit("arithmetic needs the baselines part (run both)")
    s = FIG3.num_servers
    # Played rounds, then the settling market and the certificate's 2S + 1.
    markets = played * (2 * s + 1) + 2 * s + 2
    achieved = per_market * markets * rate

    n = 2048
    a = jax.random.normal(jax.random.key(1), (n, n), jnp.float64)
    matmul = jax.jit(lambda x: x @ x)
    jax.block_until_ready(matmul(a))
    begin = time.perf_counter()
    for _ in range(5):
        jax.block_until_ready(matmul(a))
    peak = 5 * 2 * n**3 / (time.perf_counter() - begin)
    out["arithmetic"] = {
        "flops_per_market": per_market,
        "markets_per_solve": markets,
        "flops_per_solve": per_market * markets,
        "achieved_flops_per_s": achieved,
        "peak_flops_per_s_float64_matmul": peak,
        "fraction_of_peak": achieved / peak,
    }
    say(
        out,
        f"arithmetic: {per_market:,.0f} flops a market x {markets:.0f} markets = "
        f"{per_market * markets:.2e} a solve; {achieved / 1e9:.2f} GFLOP/s of a measured "
        f"{peak / 1e9:.1f} (float64 matmul): {achieved / peak:.1%} of peak, effective "
        "(Algorithm 1's markets as written; the queue skips those a lane has played)",
    )


def fig3_game() -> GameSettings:
    """Fig. 3's game settings as its sweep file gives them (price levels fitted)."""
    return read_sweep(ROOT / "sweeps/fig3.toml").game


def peak_device_gib() -> float | None:
    """The most memory this process has held on its first device (None on CPU)."""
    stats = jax.devices()[0].memory_stats() or {}
    return stats["peak_bytes_in_use"] / GIB if "peak_bytes_in_use" in stats else None


def million(out: dict, scratch: Path, topologies: int = 25_000) -> None:
    """A million Fig. 3 solves through the sweep path (the Fig. 3 sweep with 25,000
    topologies: store, chunks, batches as ``edgesplit run`` chooses them), in this
    process, with the device's peak memory."""
    sweep = read_sweep(ROOT / "sweeps/fig3.toml").replace(topologies=topologies)
    solves = sweep.solves_per_chunk * sweep.num_chunks
    chosen, choose = [], runner.batch_solver

    def spy(*args, **kwargs):  # the batch the runner chooses, and its compile time
        begin = time.perf_counter()
        solver, memory = choose(*args, **kwargs)
        chosen.append((solver, time.perf_counter() - begin))
        return solver, memory

    runner.batch_solver = spy
    try:
        begin = time.perf_counter()
        runner.run_sweep(sweep, scratch / "million.zarr", progress=False)
        seconds = time.perf_counter() - begin
    finally:
        runner.batch_solver = choose
    ((solver, compiling),) = chosen
    solving = seconds - compiling
    peak = peak_device_gib()
    target(
        out, "1,000,000 Fig. 3 solves through the sweep path", "< 30 s",
        f"{seconds:.1f} s for {solves:,} solves ({compiling:.1f} s of it compiling)",
        solves >= 1_000_000 and seconds < 30,
    )  # fmt: skip
    out["million"] = {
        "solves": solves,
        "topologies": topologies,
        "chunks": sweep.num_chunks,
        "chunks_per_call": solver.batch,
        "seconds": seconds,
        "compile_s": compiling,
        "solves_per_s_after_compile": solves / solving,
        "peak_device_gib": peak,
    }
    single = max((r["solves_per_s"] for r in out.get("lanes", {}).get("rows", [])), default=None)
    if single:  # the lanes part's proposed games at λ = 10, against the whole sweep's mix
        out["million"]["fraction_of_single_batch"] = solves / solving / single
    say(
        out,
        f"million: {solves:,} solves through the sweep path in {seconds:.1f} s, of which "
        f"{compiling:.1f} s compiling ({solves / solving:,.0f}/s after it), "
        f"{solver.batch} chunks of {sweep.chunk} topologies per call, peak device memory "
        + (f"{peak:.2f} GiB" if peak is not None else "n/a (CPU)"),
    )


def lanes(out: dict, platform: str, games: int | None = None) -> None:
    """One batch of Fig. 3 games (Fig. 3's game settings) on several numbers of game
    lanes, the default (:func:`~edgesplit.sweep.chunks.default_game_lanes`) among them:
    the single-batch throughput a sweep is compared with."""
    games = games or (1_000 if platform == "cpu" else 10_000)
    chosen = default_game_lanes(platform, games)
    game = fig3_game()
    rows = []
    for count in sorted({chosen, games // 8, games // 2}):
        _, steady, _ = timed(solver(FIG3, settings=game, lanes=count), games)
        rows.append({"lanes": count, "solves_per_s": games / steady})
    out["lanes"] = {"games": games, "default": chosen, "rows": rows}
    say(
        out,
        f"lanes: one batch of {games:,} proposed Fig. 3 games (λ = 10): "
        + ", ".join(f"{r['lanes']:,} lanes {r['solves_per_s']:,.0f}/s" for r in rows)
        + f" (default {chosen:,})",
    )


def batches(out: dict, scratch: Path, topologies: int, chunk: int) -> None:
    """The Fig. 3 sweep (``topologies`` of them in chunks of ``chunk``) through the CLI
    at several ``--batch`` sizes and the default, each run twice into new stores with
    one compile cache: the second, its programs cached, is the one compared."""
    sweep = scratch / "fig3-batches.toml"
    text = (ROOT / "sweeps/fig3.toml").read_text()
    sweep.write_text(
        text.replace("topologies = 1000", f"topologies = {topologies}").replace(
            "chunk = 100", f"chunk = {chunk}"
        )
    )
    chunks = -(-topologies // chunk)
    solves = topologies * 40
    rows = []
    for batch in [*sorted({1, 2, chunks}), None]:
        option = ["--batch", str(batch)] if batch else []
        times = [
            cli("run", str(sweep), "--out", str(scratch / f"batch-{batch}-{i}.zarr"), "--quiet",
                *option, compile_cache=scratch / f"xla-batch-{batch}")[0]
            for i in range(2)
        ]  # fmt: skip
        rows.append({"batch": batch or "default", "cold_s": times[0], "cached_s": times[1]})
    single = max((r["solves_per_s"] for r in out.get("lanes", {}).get("rows", [])), default=None)
    best = min(rows, key=lambda r: r["cached_s"])
    out["batches"] = {"topologies": topologies, "chunk": chunk, "rows": rows}
    say(
        out,
        f"batches: Fig. 3 with {topologies} topologies in {chunks} chunks of {chunk}, "
        "through the CLI, cold / programs cached: "
        + ", ".join(
            f"--batch {r['batch']} {r['cold_s']:.1f} / {r['cached_s']:.1f} s" for r in rows
        ),
    )
    if single and topologies == 1000:
        sweep_rate = solves / best["cached_s"]
        out["batches"]["fraction_of_single_batch"] = sweep_rate / single
        default = rows[-1]
        target(out, "Fig. 3 sweep, programs cached (GPU)", "< 2 s",
               f"{default['cached_s']:.1f} s", default["cached_s"] < 2)  # fmt: skip
        target(out, "Fig. 3 sweep, cold (GPU)", "< 8 s", f"{default['cold_s']:.1f} s",
               default["cold_s"] < 8)  # fmt: skip
        target(out, "sweep throughput / single-batch throughput", "≥ 80%",
               f"{sweep_rate / single:.0%} ({sweep_rate:,.0f} against {single:,.0f} solves/s)",
               sweep_rate / single >= 0.8)  # fmt: skip


def markdown(out: dict) -> str:
    lines = [f"# Benchmarks: {out['machine']}", ""]
    lines += [
        f"`{out.get('command', 'python scripts/bench.py')}`, {out['date']}, "
        f"edgesplit {out['commit']}. Ratios measured side by side in one process.",
        "",
    ]
    if "parts" in out:
        lines += [f"Parts run: {', '.join(out['parts'])}. Every figure below is from this run.", ""]
    lines += ["| target | wanted | measured | met |", "|---|---|---|---|"]
    lines += [
        f"| {t['target']} | {t['wanted']} | {t['measured']} | {'yes' if t['met'] else 'no'} |"
        for t in out.get("targets", [])
    ]
    if "scaling" in out:
        lines += [
            "",
            "Scaling (Fig. 3 setup, one parameter changed; "
            f"{out['scaling']['games']} games each; ns per option = seconds over "
            "played rounds x (2S + 1) x M x S x A):",
            "",
            "| changed | MDs | ESs | split points | solves/s | rounds played | ns per option |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in out["scaling"]["rows"]:
            lines.append(
                f"| {r['axis']} = {r['value']} | {r['devices']} | {r['servers']} | "
                f"{r['splits']} | {r['solves_per_s']:.1f} | {r['played_rounds_mean']:.1f} | "
                f"{r['ns_per_option'] or 0:.2f} |"
            )
    lines += ["", "Each part:", ""] + [f"- {line}" for line in out.get("lines", [])]
    lines += ["", "All figures:", "", "```json", json.dumps(out, indent=1), "```", ""]
    return "\n".join(lines)


def keep_previous(report: Path) -> None:
    """Move an earlier run's report to its dated name, so that every report is one run."""
    if report.with_suffix(".json").exists():
        earlier = json.loads(report.with_suffix(".json").read_text())
        stem = f"{earlier['date']}-{earlier['device']}-{earlier['commit']}"
        dated, count = report.parent / stem, 1
        while dated.with_suffix(".json").exists():  # another run of that day and commit
            count += 1
            dated = report.parent / f"{stem}-{count}"
        for suffix in (".json", ".md"):
            if report.with_suffix(suffix).exists():
                report.with_suffix(suffix).rename(dated.with_suffix(suffix))


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    if args.preset:
        args.only = list(PRESETS[args.preset])
    parts = args.only or [p for p in PARTS if p not in GPU_PARTS or args.device == "gpu"]
    platform = choose_platform(args.device)
    if args.device == "gpu" and platform != "gpu":
        raise SystemExit("--device gpu: JAX finds no GPU on this machine")
    device = jax.devices()[0]
    out = {
        "device": args.device,
        "machine": f"{cpu_model() if args.device == 'cpu' else device.device_kind}, "
        f"{os.cpu_count()} CPUs",
        "date": time.strftime("%Y-%m-%d"),
        "commit": commit(),
        "jax": jax.__version__,
        "command": shlex.join(
            ["python", "scripts/bench.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "parts": parts,
    }
    report = ROOT / "results" / "bench" / f"bench-{args.device}"
    report.parent.mkdir(parents=True, exist_ok=True)
    keep_previous(report)
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        run = {
            "fig3": lambda: fig3(out, scratch, args.device),
            "baselines": lambda: baselines(out),
            "memory": lambda: memory(out, scratch),
            "compile": lambda: compile_once(out),
            "scaling": lambda: scaling(out),
            "exhaustive": lambda: exhaustive(out),
            "precision": lambda: precision(out),
            "arithmetic": lambda: arithmetic(out),
            "lanes": lambda: lanes(out, platform),
            "million": lambda: million(out, scratch, args.million_topologies),
            "batches": lambda: batches(out, scratch, *args.batch_topologies),
            "leaders": lambda: leaders(
                out, scratch, args.leader_topologies, args.enumerate_topologies
            ),
            "anatomy": lambda: anatomy(out),
            "markets": lambda: markets(out),
        }
        assert run.keys() == set(PARTS)
        for part in parts:
            run[part]()
            # After every part, so that an interrupted run keeps what it measured.
            report.with_suffix(".json").write_text(json.dumps(out, indent=1) + "\n")
            report.with_suffix(".md").write_text(markdown(out))
    print(f"written: {report}.json and .md")


if __name__ == "__main__":
    main()
