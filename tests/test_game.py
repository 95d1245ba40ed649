"""Admission and Algorithm 1 against the plain-Python reference, and solved-game properties."""

from __future__ import annotations

import dataclasses
import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import draw_topology, random_problem
from edgesplit import reference
from edgesplit.config import GameSettings
from edgesplit.game.admission import respond_with_admission
from edgesplit.game.algorithm1 import Status
from edgesplit.game.best_response import IDLE, Choice
from edgesplit.game.certificate import device_gains, moved_prices, server_gains
from edgesplit.game.market import market, markets_at
from edgesplit.game.prices import prices_at
from edgesplit.game.solve import solve, solve_at_prices
from edgesplit.io.scenario_file import parse_scenario
from edgesplit.model.scenario import pad_scenario, stack, unstack
from edgesplit.model.schemes import Scheme, scheme_options
from edgesplit.sweep.batch import solve_batch


def picks_of(solution, index=None):
    """The devices' choices as reference Picks."""
    take = (lambda x: np.asarray(x)) if index is None else (lambda x: np.asarray(x)[index])
    d = {k: take(v) for k, v in vars(solution.devices).items()}
    return [
        reference.Pick(
            utility=float(d["utility"][m]),
            server=None if d["server"][m] == IDLE else int(d["server"][m]),
            split=None if d["split"][m] == IDLE else int(d["split"][m]),
            crbs=int(d["crbs"][m]),
            rrbs=int(d["rrbs"][m]),
        )
        for m in range(len(d["server"]))
    ]


def assert_same_picks(got, expected, where):
    for m, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert (g.server, g.split, g.crbs, g.rrbs) == (e.server, e.split, e.crbs, e.rrbs), (
            f"{where} device {m}"
        )
        assert g.utility == pytest.approx(e.utility, rel=1e-9, abs=1e-12), f"{where} device {m}"


LEVELS = 82  # price levels enough for every random_problem here: 4.0 / 0.05 + 2
CERTIFIED = GameSettings(price_levels=LEVELS)
MARKET_ONLY = GameSettings(grid_certificate=False)  # for tests that check no regret


def test_admission_equals_the_reference(rng):
    """Crowded servers: many devices, few blocks, cheap prices."""
    for case in range(40):
        problem = random_problem(rng, 8, 2, max_crbs=6, max_rrbs=6)
        parsed = parse_scenario(problem)
        scheme = int(rng.integers(0, 3))
        scenario = pad_scenario(parsed.scenario, 8, 2, 5)
        got = solve_at_prices(scenario, scheme, parsed.price_crb, parsed.price_rrb, MARKET_ONLY)
        expected = reference.market(
            problem, parsed.price_crb.tolist(), parsed.price_rrb.tolist(), scheme
        )
        assert_same_picks(picks_of(got), expected, f"case {case}")


SETTINGS = [
    MARKET_ONLY,
    MARKET_ONLY.replace(update="sequential"),
    MARKET_ONLY.replace(joint_price=False),
    MARKET_ONLY.replace(update="sequential", joint_price=False, min_gain=0.01),
]


@pytest.mark.parametrize(
    "settings", SETTINGS, ids=["simultaneous", "sequential", "separate", "seq-separate"]
)
def test_price_game_equals_the_reference(rng, settings):
    statuses = set()
    for case in range(12):
        num_servers = int(rng.integers(1, 4))
        problem = random_problem(rng, int(rng.integers(2, 5)), num_servers, max_crbs=4, max_rrbs=4)
        # Padded to one shape: one compilation, and padding must not change the game.
        scenario = pad_scenario(parse_scenario(problem).scenario, 4, 3, 5)
        scheme = case % len(Scheme)
        got = solve(scenario, scheme, settings)
        steps, rounds, status = reference.play(
            problem, scheme, settings.update, settings.joint_price, settings.max_rounds,
            settings.min_gain, settings.cycle_window,
        )  # fmt: skip
        where = f"case {case} scheme {Scheme(scheme).label}"
        assert (int(got.rounds), int(got.status)) == (rounds, status), where
        price_crb, price_rrb = reference.prices_at(problem, steps)
        # Same grid point; the last bit may differ (XLA fuses max - k·Δ into one FMA).
        np.testing.assert_allclose(
            got.price_crb[:num_servers], price_crb, rtol=1e-12, err_msg=where
        )
        np.testing.assert_allclose(
            got.price_rrb[:num_servers], price_rrb, rtol=1e-12, err_msg=where
        )
        expected = reference.market(problem, price_crb, price_rrb, scheme)
        assert_same_picks(picks_of(got)[: len(expected)], expected, where)
        assert all(p.split is None for p in picks_of(got)[len(expected) :]), where
        statuses.add(status)
    assert Status.CONVERGED in statuses


def test_round_limit_and_cycles_are_reported(rng):
    """A game cut short reports the limit; the reference sees the same."""
    problem = random_problem(
        rng, 4, 2, max_crbs=4, max_rrbs=4, max_price=(2.0, 2.0), price_step=(0.1, 0.1)
    )
    parsed = parse_scenario(problem)
    got = solve(parsed.scenario, Scheme.PROPOSED, MARKET_ONLY.replace(max_rounds=3))
    assert int(got.status) == Status.ROUND_LIMIT and int(got.rounds) == 3
    assert not bool(got.converged)
    assert reference.play(problem, 0, max_rounds=3)[1:] == (3, Status.ROUND_LIMIT)


def random_batch(rng, count):
    """``count`` random problems where capacities bind, their scenarios at one shape
    (6 devices, 3 servers, 5 layers) and a scheme each."""
    problems = [
        random_problem(
            rng, 6, 3, max_crbs=12, max_rrbs=12, max_price=(1.0, 4.0), price_step=(0.05, 0.3)
        )
        for _ in range(count)
    ]
    scenarios = stack([pad_scenario(parse_scenario(p).scenario, 6, 3, 5) for p in problems])
    return problems, scenarios, np.arange(count, dtype=np.int32) % len(Scheme)


BATCH = 8  # games a call of solve_each: one program for every batch the tests solve


@functools.cache
def vmapped_solve(settings=CERTIFIED):
    return jax.jit(jax.vmap(lambda sc, k: solve(sc, k, settings)))


def solve_each(scenarios, schemes, settings=CERTIFIED):
    """vmap(solve) over the games, ``BATCH`` at a time (the last batch filled with
    copies of the last game)."""
    count = len(schemes)
    order = np.minimum(np.arange(-(-count // BATCH) * BATCH), count - 1)
    parts = [
        vmapped_solve(settings)(*jax.tree.map(lambda x, i=i: x[order[i : i + BATCH]],
                                              (scenarios, np.asarray(schemes))))
        for i in range(0, len(order), BATCH)
    ]  # fmt: skip
    return jax.tree.map(lambda *x: np.concatenate(x)[:count], *parts)


def solved_batch(rng, count, settings=CERTIFIED):
    """:func:`random_batch`, its games solved by :func:`solve_each`."""
    problems, scenarios, schemes = random_batch(rng, count)
    return problems, scenarios, schemes, solve_each(scenarios, schemes, settings)


def test_solved_games_hold_their_properties(rng):
    problems, _, _, solutions = solved_batch(rng, 240)
    converged = np.asarray(solutions.converged)
    assert converged.mean() > 0.5
    for i, problem in enumerate(problems):
        where = f"game {i}"
        price_crb = np.asarray(solutions.price_crb[i]).tolist()
        price_rrb = np.asarray(solutions.price_rrb[i]).tolist()
        picks = picks_of(solutions, i)
        # Capacities never exceeded.
        _, crbs, rrbs = reference.server_utilities(problem, picks, price_crb, price_rrb)
        for s, server in enumerate(problem["servers"]):
            assert crbs[s] <= server["crbs"] and rrbs[s] <= server["rrbs"], where
        np.testing.assert_array_equal(solutions.crbs_sold[i], crbs, err_msg=where)
        np.testing.assert_array_equal(solutions.rrbs_sold[i], rrbs, err_msg=where)
        # Reported utilities are eqs. (10) and (11) recomputed from the reported choices.
        for m, pick in enumerate(picks):
            expected = reference.pick_utility(problem, m, pick, price_crb, price_rrb)
            assert pick.utility == pytest.approx(expected, rel=1e-9, abs=1e-12), (
                f"{where} device {m}"
            )
            assert pick.split is None or pick.utility > 0, where
        expected, _, _ = reference.server_utilities(problem, picks, price_crb, price_rrb)
        np.testing.assert_allclose(
            solutions.server_utility[i], expected, rtol=1e-9, atol=1e-12, err_msg=where
        )
    # Devices never gain by deviating alone (the admission rule); servers gain at most
    # min_gain by a step when the game converged.
    assert np.all(np.asarray(solutions.device_violation) <= 1e-9)
    min_gain = GameSettings().min_gain
    assert np.all(np.asarray(solutions.local_certificate)[converged] <= min_gain + 1e-9)
    # The local certificate is not vacuous: some unconverged games have a profitable step;
    # and the whole grid holds more than the steps.
    assert np.any(np.asarray(solutions.local_server_violation)[~converged] > min_gain)
    assert np.all(solutions.certificate >= solutions.local_certificate - 1e-9)


@jax.jit
def judge_zero_price_choices(scenario, price_crb, price_rrb):
    options = scheme_options(scenario, Scheme.PROPOSED)
    settings = GameSettings()
    zero = jnp.zeros_like(price_crb)
    choice = market(scenario, options, settings, zero, zero)
    return (
        choice,
        device_gains(scenario, options, price_crb, price_rrb, choice),
        server_gains(
            scenario.servers,
            options,
            markets_at(
                scenario, options, settings,
                *moved_prices(scenario.servers, settings, price_crb, price_rrb),
            )[1],
        ),
    )  # fmt: skip


def test_certificate_equals_the_reference_deviations(rng):
    """Each part of the certificate against deviations computed by the Python loops.

    The choices are the market's at zero prices, judged at the file's prices, so
    devices do have profitable deviations."""
    for case in range(10):
        problem = random_problem(rng, 5, 2, max_crbs=5, max_rrbs=5)
        parsed = parse_scenario(problem)
        scenario = pad_scenario(parsed.scenario, 5, 2, 5)
        price_crb, price_rrb = jnp.asarray(parsed.price_crb), jnp.asarray(parsed.price_rrb)
        choice, got_devices, got_servers = judge_zero_price_choices(scenario, price_crb, price_rrb)

        prices = (parsed.price_crb.tolist(), parsed.price_rrb.tolist())
        picks = picks_of(type("S", (), {"devices": choice})())
        _, crbs, rrbs = reference.server_utilities(problem, picks, *prices)
        for m, pick in enumerate(picks):
            crbs_left = [sv["crbs"] - crbs[s] for s, sv in enumerate(problem["servers"])]
            rrbs_left = [sv["rrbs"] - rrbs[s] for s, sv in enumerate(problem["servers"])]
            if pick.server is not None:
                crbs_left[pick.server] += pick.crbs
                rrbs_left[pick.server] += pick.rrbs
            best = reference.best_response(problem, m, *prices, crbs_left, rrbs_left, 0)
            now = reference.pick_utility(problem, m, pick, *prices)
            assert float(got_devices[m]) == pytest.approx(max(best.utility - now, 0.0), abs=1e-9), (
                case
            )

        current, _, _ = reference.server_utilities(
            problem, reference.market(problem, *prices, 0), *prices
        )
        for s, server in enumerate(problem["servers"]):
            gains = [0.0]
            for sign in (1, -1):
                moved = [list(prices[0]), list(prices[1])]
                for kind in (0, 1):
                    moved[kind][s] = min(
                        max(moved[kind][s] + sign * server["price_step"], 0.0), server["max_price"]
                    )
                after, _, _ = reference.server_utilities(
                    problem, reference.market(problem, *moved, 0), *moved
                )
                gains.append(after[s] - current[s])
            assert float(got_servers[s]) == pytest.approx(max(gains), abs=1e-9), case


SLOTTED = ("server_regret", "cycle_device_utility", "cycle_server_utility")


def unslotted(solution):
    return dataclasses.replace(solution, **dict.fromkeys(SLOTTED))


def test_vmap_equals_a_loop_and_does_not_recompile(rng):
    _, scenarios, schemes, solutions = solved_batch(rng, 16)
    for i, one_scenario in enumerate(unstack(scenarios)):
        one = solve(one_scenario, int(schemes[i]), CERTIFIED)
        batched = unstack(solutions)[i]
        # The grid regret's and the cycle means' markets settle on slots that a vmap
        # fuses differently: equal to rounding; everything else bit for bit.
        for name in SLOTTED:
            np.testing.assert_allclose(getattr(one, name), getattr(batched, name), rtol=1e-12)
        jax.tree.map(np.testing.assert_array_equal, unslotted(one), unslotted(batched))

    batched = vmapped_solve()
    batched(*jax.tree.map(lambda x: x[:BATCH], (scenarios, schemes)))
    compiled = batched._cache_size()
    _, other, _ = random_batch(np.random.default_rng(7), BATCH)
    batched(other, schemes[::-1][:BATCH].copy())
    assert batched._cache_size() == compiled == 1
    size = solve._cache_size()
    solve(jax.tree.map(lambda x: x[3], other), 1, CERTIFIED)
    solve(jax.tree.map(lambda x: x[5], other), 2, CERTIFIED)
    assert solve._cache_size() == size


SEQUENTIAL_SHORT = GameSettings(
    update="sequential", joint_price=False, max_rounds=40, grid_certificate=False
)


@pytest.mark.parametrize(
    "settings",
    [
        GameSettings(grid_certificate=False),
        SEQUENTIAL_SHORT,
    ],
    ids=["default", "sequential-separate-short"],
)
def test_a_game_queue_plays_every_game_as_vmap_does(rng, settings):
    # The game queue alone (tests/test_leaders.py checks the batches' grid certificate).
    """solve_batch (lanes taking the next game when theirs ends) plays every game as
    vmap(solve) does, with one lane, a few, or one per game: the same rounds, status and
    choices (server, split, blocks), bit for bit; prices, utilities and delays to
    rounding, since the two programs settle the games in differently fused XLA code (a
    fused multiply-add in one and not the other moves the last bit)."""
    problems, scenarios, _ = random_batch(rng, 24)
    for scheme in Scheme:
        expected = solve_each(scenarios, np.full(len(problems), scheme), settings)
        assert len(set(np.asarray(expected.rounds).tolist())) > 1 or scheme == Scheme.USER_ONLY
        for lanes in (1, 5, 24):
            got = solve_batch(scenarios, int(scheme), settings, lanes)
            jax.tree.map(same_to_rounding, got, expected)


def test_a_games_results_do_not_depend_on_the_batch_around_it(rng):
    """A game solved in a batch of 24 and in a batch of a few of them (neither a whole
    number of the groups its cycle means are settled in) gives the same results bit for
    bit, its utilities averaged over a cycle included: every group is a full one."""
    # The batch of the game queue's test (tests above), so that the two share a program.
    _, scenarios, _ = random_batch(rng, 24)
    settings = GameSettings(grid_certificate=False)
    whole = solve_batch(scenarios, int(Scheme.PROPOSED), settings, 5)
    cycles = np.flatnonzero(np.asarray(whole.cycle_length) > 1)
    assert cycles.size >= 2, "no cycles to average over: the check would have no teeth"
    picked = np.sort(np.concatenate([cycles[:3], np.setdiff1d(np.arange(24), cycles)[:2]]))
    part = solve_batch(
        jax.tree.map(lambda x: x[picked], scenarios), int(Scheme.PROPOSED), settings, 5
    )
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a)[picked], b), whole, part)


def test_a_game_queue_program_does_not_grow_with_its_batch(rng):
    """The queue's program for 5,000 games is the one for 50 but for its shapes, so its
    compile time does not follow the batch (it did while the queue's results started as
    a stack of one copy per game: a 10,000-game batch took 74 s to compile on an H200)."""
    scenario = pad_scenario(parse_scenario(random_problem(rng, 6, 3)).scenario, 6, 3, 5)
    play = jax.jit(lambda scenarios: solve_batch(scenarios, Scheme.PROPOSED, CERTIFIED, 16))

    def program(count):
        batch = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct((count, *jnp.shape(x)), jnp.result_type(x)), scenario
        )
        return re.sub(r"\d+", "N", play.lower(batch).as_text())  # shapes and constants aside

    assert program(50) == program(5000)


def same_to_rounding(actual, expected):
    """Integers exactly; floats to 1e-12 (relative, and absolute near 0)."""
    if np.issubdtype(np.asarray(expected).dtype, np.integer):
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12)


def test_prices_stay_on_the_grid_and_in_range(rng):
    _, scenarios, _, solutions = solved_batch(rng, 40)
    top = np.asarray(scenarios.servers.max_price)
    for price in (np.asarray(solutions.price_crb), np.asarray(solutions.price_rrb)):
        assert np.all((price >= 0) & (price <= top))
    steps = np.rint(
        (top - np.asarray(solutions.price_crb)) / np.asarray(scenarios.servers.price_step)
    )
    steps = np.stack([steps, steps], axis=-1).astype(np.int32)
    grid_crb, _ = jax.vmap(prices_at)(scenarios.servers, steps)
    np.testing.assert_allclose(np.asarray(solutions.price_crb), grid_crb, rtol=0, atol=1e-12)


def test_fast_forward_is_exact(rng):
    """Skipping the opening no-buyer rounds gives bit-for-bit the game played through them."""
    from edgesplit.config import Setup
    from edgesplit.game.fast_forward import rounds_without_buyers

    _, random_scenarios, random_schemes = random_batch(rng, 24)
    setup = Setup().replace(mean_arrival_rate=11.0)
    fig3 = jax.vmap(lambda key: draw_topology(key, setup))(jax.vmap(jax.random.key)(jnp.arange(6)))
    # Random games (capacities bind) under the other update and price rules, some cut
    # short by the round limit (a game queue test's settings: one program for both);
    # Fig. 3's under the default ones. The game alone: the grid certificate would only
    # repeat its markets (slowly).
    cases = [
        (random_scenarios, random_schemes, SEQUENTIAL_SHORT),
        (fig3, np.arange(6, dtype=np.int32) % 4, GameSettings(grid_certificate=False)),
    ]
    for scenarios, schemes, settings in cases:
        solved = {}
        for fast_forward in (True, False):
            st = settings.replace(fast_forward=fast_forward)
            solved[fast_forward] = solve_each(scenarios, schemes, st)
        jax.tree.map(np.testing.assert_array_equal, solved[True], solved[False])
        skipped = jax.jit(
            jax.vmap(
                lambda sc, k, st=settings: rounds_without_buyers(sc, scheme_options(sc, k), st)
            )
        )(scenarios, schemes)
        plays = np.asarray(schemes) != Scheme.USER_ONLY  # user-only plays no game
        skipped = np.asarray(skipped)[plays]
        assert np.all(skipped <= np.asarray(solved[True].rounds)[plays])
        assert np.any(skipped > 0)
    # On the Fig. 3 setup most of the game is the opening descent.
    assert skipped.max() > 50


def test_a_request_that_never_fits_cannot_hang_the_market(rng):
    """Admission ends within M passes even when a request breaks the kernel's contract
    (asks for more than is left, so it is never admitted): those devices stay idle."""
    scenario = parse_scenario(random_problem(rng, 4, 2)).scenario
    count = scenario.devices.num_devices
    price = jnp.ones(scenario.servers.num_servers)

    def asks_too_much(crbs_left, rrbs_left):
        return Choice(
            server=jnp.zeros(count, jnp.int32),
            split=jnp.zeros(count, jnp.int32),
            crbs=jnp.full(count, crbs_left[0] + 1, jnp.int32),
            rrbs=jnp.ones(count, jnp.int32),
            utility=jnp.ones(count),
            delay=jnp.ones(count),
        )

    choice = jax.jit(lambda: respond_with_admission(scenario, price, price, asks_too_much))()
    np.testing.assert_array_equal(choice.server, IDLE)
    np.testing.assert_array_equal(choice.crbs, 0)
