"""The servers' side on the whole price grid against the plain-Python reference: the
regret of every solve, and the leader rules that use it."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import edgesplit
from conftest import tiny_problem
from edgesplit import reference
from edgesplit.analysis.statistics import summary
from edgesplit.analysis.tables import summary_table
from edgesplit.config import GameSettings
from edgesplit.game import grid, offers, profiles
from edgesplit.game.prices import top_step
from edgesplit.game.solve import solve, solve_at_prices
from edgesplit.io.scenario_file import parse_scenario
from edgesplit.io.sweep_file import parse_sweep
from edgesplit.model.scenario import pad_scenario, stack
from edgesplit.model.schemes import scheme_options
from edgesplit.sweep.batch import solve_batch

SCHEMES = (reference.PROPOSED, reference.EDGE_ONLY, reference.HEURISTIC)


def problem_with_grids(rng):
    """5 devices or fewer on two servers of 10-40 price levels each, both selling."""
    return tiny_problem(rng, num_devices=5, price_step=(0.1, 0.2), max_price=(2.0, 4.0))


def padded(problem):
    """The problem's scenario at one fixed shape, so that every case reuses one program."""
    parsed = parse_scenario(problem)
    return parsed, pad_scenario(parsed.scenario, 5, 2, 3)


LEVELS = 42  # enough for every grid of problem_with_grids: 4.0 / 0.1 + 2


@pytest.mark.parametrize("joint", [True, False], ids=["joint", "separate"])
def test_regret_equals_the_reference(rng, joint):
    """At the file's prices (off the grid) and at Algorithm 1's outcome, where capacities
    bind: every server's regret as the reference's loops over its grid."""
    settings = GameSettings(joint_price=joint, price_levels=LEVELS)
    regrets = []
    for case in range(20):
        problem = problem_with_grids(rng)
        parsed, scenario = padded(problem)
        scheme = SCHEMES[case % 3]
        given = (parsed.price_crb.tolist(), parsed.price_rrb.tolist())
        got = solve_at_prices(scenario, scheme, *given, settings)
        expected = reference.server_regret(problem, *given, scheme, joint=joint)
        np.testing.assert_allclose(got.server_regret, expected, rtol=1e-9, atol=1e-12)

        got = solve(scenario, scheme, settings)
        steps, _, _ = reference.play(problem, scheme, joint=joint)
        prices = reference.prices_at(problem, steps)
        np.testing.assert_allclose(
            [got.price_crb, got.price_rrb], prices, rtol=1e-12, err_msg=f"case {case}"
        )
        expected = reference.server_regret(problem, *prices, scheme, joint=joint)
        np.testing.assert_allclose(got.server_regret, expected, rtol=1e-9, atol=1e-12)
        assert float(got.certificate) >= float(np.max(expected)) - 1e-12
        assert float(got.certificate) >= float(got.device_violation)
        regrets.append(max(expected))
    # Some outcomes of Algorithm 1 are not equilibria on the grid: the check has teeth.
    assert sum(r > 1e-4 for r in regrets) >= 2, regrets


def test_the_table_stops_where_nobody_buys_and_the_regret_stays_exact(rng):
    """At Algorithm 1's outcomes: the regrets from tables of offers whose rows stop above
    the last price anybody buys at (some games make every row, some stop short) equal
    the reference's loops over every level; above its first row, the reference sells
    nothing at any server's any price."""
    settings = GameSettings(price_levels=LEVELS)
    table_of = jax.jit(offers.offer_table, static_argnums=2)
    short = full = 0
    for case in range(12):
        problem = problem_with_grids(rng)
        _, scenario = padded(problem)
        scheme = SCHEMES[case % 3]
        got = solve(scenario, scheme, settings)
        prices = reference.prices_at(problem, reference.play(problem, scheme)[0])
        expected = reference.server_regret(problem, *prices, scheme)
        np.testing.assert_allclose(got.server_regret, expected, rtol=1e-9, atol=1e-12)
        options = scheme_options(scenario, jnp.int32(scheme))
        first = int(table_of(scenario, options, settings).first_row)
        short, full = short + (first > 0), full + (first == 0)
        for level in range(first):
            steps = [[level, level]] * 2
            picks = reference.market(problem, *reference.prices_at(problem, steps), scheme)
            assert all(pick.server is None for pick in picks), (case, level)
    assert short > 0 and full > 0, (short, full)


def test_a_move_reaches_as_its_rule_says(rng):
    """The screen's rule (grid._reaching), against its statement in loops: a move or range
    reaches when its bound is at least the best lower bound (or floor, to within the
    slack of ties) and above every utility settled before it; values drawn from a few
    integers, so that ties are everywhere."""
    shape = (3, 2, 7)  # movers, lines, levels or ranges
    for _ in range(20):
        settled = rng.random(shape) < 0.6
        value = rng.integers(0, 4, shape).astype(float)
        bound = np.where(
            settled & (rng.random(shape) < 0.5), value, value + rng.integers(0, 3, shape)
        )
        valid = rng.random(shape) < 0.9
        floor = rng.integers(0, 4, shape[0]).astype(float)
        reach, lower = grid._reaching(*map(jnp.asarray, (settled, value, bound, valid, floor)))
        for p in range(shape[0]):
            least = max([floor[p]] + [value[p][i] for i in np.ndindex(shape[1:]) if valid[p][i]])
            assert float(lower[p]) == least
            for i in np.ndindex(shape[1:]):
                before = [
                    value[p][j]
                    for j in np.ndindex(shape[1:])
                    if j < i and valid[p][j] and settled[p][j]
                ]
                expected = bound[p][i] >= least - 1e-12 * max(abs(least), 1.0) and all(
                    bound[p][i] > v for v in before
                )
                assert bool(reach[p][i]) == expected, (p, i)


def test_the_offer_table_gives_each_servers_best_move_as_the_reference(rng):
    """At random grid prices where capacities bind: every server's best move found from
    the game's table of offers (as best_response's turns find it: first passes from the
    table, the rest settled highest bound first) gains what the reference's loops over
    the grid say, and what the screen finds."""
    settings = GameSettings(leader="best_response", price_levels=LEVELS)
    movers = jnp.arange(2)
    table_of = jax.jit(offers.offer_table, static_argnums=2)
    best_of = jax.jit(
        lambda scenario, options, table, prices, floor: grid.best_on_table(
            scenario, options, settings,
            *grid.moves_from(scenario, options, settings, *prices, table), *prices, movers, floor,
        )[0]
    )  # fmt: skip
    regrets = []
    for case in range(120):  # in a few, the best move is one settled in full
        problem = problem_with_grids(rng)
        _, scenario = padded(problem)
        scheme = SCHEMES[case % 3]
        options = scheme_options(scenario, jnp.int32(scheme))
        top = [int(np.ceil(s["max_price"] / s["price_step"])) for s in problem["servers"]]
        levels = [int(rng.integers(0, t + 1)) for t in top]
        prices = reference.prices_at(problem, [[k, k] for k in levels])
        at = solve_at_prices(scenario, scheme, *prices, settings)
        best = best_of(
            scenario, options, table_of(scenario, options, settings),
            (at.price_crb, at.price_rrb), at.server_utility,
        )  # fmt: skip
        got = np.maximum(np.asarray(best) - np.asarray(at.server_utility), 0.0)
        expected = reference.server_regret(problem, *prices, scheme)
        where = f"case {case}, levels {levels}"
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12, err_msg=where)
        np.testing.assert_allclose(at.server_regret, got, rtol=1e-12, atol=1e-12, err_msg=where)
        regrets.append(max(expected))
    assert sum(r > 1e-4 for r in regrets) >= 4, regrets


def test_user_only_servers_have_no_regret(rng):
    _, scenario = padded(tiny_problem(rng))
    got = solve(scenario, reference.USER_ONLY, GameSettings(price_levels=LEVELS))
    assert np.all(np.asarray(got.server_regret) == 0.0)


@pytest.mark.parametrize("update", ["simultaneous", "sequential"])
def test_best_response_plays_as_the_reference(rng, update):
    """The same rounds, status and prices as the reference; a converged game is an
    equilibrium on the grid by the reference's own regret."""
    settings = GameSettings(leader="best_response", update=update, price_levels=LEVELS)
    statuses = []
    for case in range(12):
        problem = problem_with_grids(rng)
        _, scenario = padded(problem)
        scheme = SCHEMES[case % 3]
        got = solve(scenario, scheme, settings)
        steps, rounds, status = reference.play_best_response(problem, scheme, update=update)
        where = f"case {case}"
        assert (int(got.rounds), int(got.status)) == (rounds, status), where
        prices = reference.prices_at(problem, steps)
        np.testing.assert_allclose([got.price_crb, got.price_rrb], prices, rtol=1e-12)
        regret = reference.server_regret(problem, *prices, scheme)
        np.testing.assert_allclose(got.server_regret, regret, rtol=1e-9, atol=1e-12)
        if status == 0:
            assert max(regret) <= settings.min_gain, where
        statuses.append(status)
    assert 0 in statuses


def test_enumerate_finds_the_reference_equilibria(rng):
    """The number of equilibria, the outcome and its status as the reference's loops
    over every profile, on grids of a few levels; games without an equilibrium occur."""
    settings = GameSettings(leader="enumerate", price_levels=18)
    statuses = []
    for case in range(30):
        problem = tiny_problem(rng, num_devices=5, price_step=(0.25, 0.5), max_price=(2.0, 4.0))
        _, scenario = padded(problem)
        scheme = SCHEMES[case % 3]
        got = solve(scenario, scheme, settings)
        expected = reference.enumerate_profiles(problem, scheme)
        where = f"case {case}"
        assert int(got.equilibria) == len(expected["equilibria"]), where
        assert int(got.status) == expected["status"], where
        prices = reference.prices_at(problem, [[k, k] for k in expected["outcome"]])
        np.testing.assert_allclose([got.price_crb, got.price_rrb], prices, rtol=1e-12)
        np.testing.assert_allclose(got.server_regret, expected["regret"], rtol=1e-9, atol=1e-12)
        statuses.append(expected["status"])
    assert 0 in statuses and 4 in statuses, statuses


def test_every_profile_utility_equals_the_reference(rng):
    """Each server's utility at every profile of the enumerated grid, whether its market
    settled in the first pass from the tables of offers or was settled in full, equals
    the reference's market there, and lies within the first pass's bounds; games where
    capacities bind have both kinds. Every other game has RRBs or CRBs to spare, so that
    each kind binds alone too."""
    settings = GameSettings(leader="enumerate", price_levels=18)

    @jax.jit
    def utilities(scenario, options):
        table = offers.offer_table(scenario, options, settings)
        first = profiles.first_passes(scenario, options, settings, table)
        return profiles.profile_utilities(scenario, options, settings)[0], first

    kinds = set()
    for case in range(9):
        problem = tiny_problem(rng, num_devices=5, price_step=(0.25, 0.5), max_price=(2.0, 4.0))
        for server in problem["servers"]:
            server.update({1: {"rrbs": 12}, 2: {"crbs": 12}}.get(case % 3, {}))
        _, scenario = padded(problem)
        scheme = SCHEMES[case % 3]
        got, first = utilities(scenario, scheme_options(scenario, jnp.int32(scheme)))
        got = np.asarray(got).reshape(18, 18, 2)
        lower, upper = (np.asarray(x).reshape(18, 18, 2) for x in (first.lower, first.upper))
        known = np.asarray(first.known).reshape(18, 18)
        for profile in reference.all_profiles(problem):
            expected = reference.server_utilities_at(problem, [[k, k] for k in profile], scheme)
            where = f"{case} {profile}"
            np.testing.assert_allclose(
                got[profile], expected[0], rtol=1e-9, atol=1e-12, err_msg=where
            )
            if known[profile]:
                assert np.array_equal(lower[profile], got[profile]), where
                assert np.array_equal(upper[profile], got[profile]), where
            else:
                assert np.all(lower[profile] <= got[profile]), where
                assert np.all(got[profile] <= upper[profile]), where
            kinds.add(bool(known[profile]))
    assert kinds == {True, False}, kinds


@pytest.mark.parametrize("per_round", [profiles.SETTLED_PER_ROUND, 16])
def test_enumerate_decides_as_settling_every_profile(rng, monkeypatch, per_round):
    """The equilibria, their number, the outcome and its status, from the markets the
    search settles, are those of every profile's utility (each settled in full) and
    plain loops over its lines; in games of 10 devices on a few blocks, where
    capacities bind at most profiles and most games have no equilibrium. Rounds of 16
    markets make the search take many rounds on these small grids."""
    monkeypatch.setattr(profiles, "SETTLED_PER_ROUND", per_round)
    settings = GameSettings(leader="enumerate", price_levels=LEVELS)

    @jax.jit
    def outcomes(scenario, options):
        every = profiles.profile_utilities(scenario, options, settings)[0]
        return profiles.enumerate_profiles(scenario, options, settings), every

    statuses = []
    for case in range(40):
        problem = tiny_problem(rng, num_devices=10, price_step=(0.1, 0.2), max_price=(2.0, 4.0))
        for server in problem["servers"]:
            server.update(crbs=int(rng.integers(2, 6)), rrbs=int(rng.integers(2, 6)))
        scenario = pad_scenario(parse_scenario(problem).scenario, 10, 2, 3)
        scheme = SCHEMES[case % 3]
        (steps, status, equilibria), every = outcomes(
            scenario, scheme_options(scenario, jnp.int32(scheme))
        )
        utility = np.asarray(every).reshape(LEVELS, LEVELS, 2)
        last = [reference.grid_top(problem, s) for s in range(2)]
        assert max(last) < LEVELS
        worst, total = {}, {}
        for k0 in range(last[0] + 1):
            for k1 in range(last[1] + 1):
                best0 = max(utility[k, k1, 0] for k in range(last[0] + 1))
                best1 = max(utility[k0, k, 1] for k in range(last[1] + 1))
                here = utility[k0, k1]
                worst[k0, k1] = max(best0 - here[0], best1 - here[1], 0.0)
                total[k0, k1] = here[0] + here[1]
        found = [p for p in worst if worst[p] <= settings.min_gain]
        if found:
            chosen = max(found, key=lambda p: (total[p], -p[0] * LEVELS - p[1]))
        else:
            chosen = min(worst, key=lambda p: (worst[p], p[0] * LEVELS + p[1]))
        where = f"case {case}"
        assert int(equilibria) == len(found), where
        assert int(status) == (0 if found else 4), where
        assert tuple(np.asarray(steps)[:, 0]) == chosen, where
        statuses.append(int(status))
    assert 0 in statuses and 4 in statuses, statuses


def test_the_search_bounds_every_regret_and_keeps_every_candidate(rng):
    """On random utilities and random bounds around them (some exact), each profile's
    regret from the bounds is at most its true largest regret, and every profile whose
    true largest regret is within the threshold (min_gain, or the least largest regret
    where that is more) is a candidate; with every utility known, the regrets are exact."""
    settings = GameSettings(leader="enumerate", price_levels=18)
    _, scenario = padded(
        tiny_problem(rng, num_devices=5, price_step=(0.25, 0.5), max_price=(2.0, 4.0))
    )
    last = np.minimum(np.asarray(top_step(scenario.servers)), 17)
    search = jax.jit(lambda bounds: profiles.search(scenario, settings, bounds))
    for case in range(30):
        utility = rng.choice([0.0, 0.5, 1.0, 2.0], size=(18, 18, 2)) * rng.uniform(0, 3)
        known = rng.random((18, 18)) < [0.2, 0.6, 1.0][case % 3]
        width = np.where(known[..., None], 0.0, rng.uniform(0, 2, (18, 18, 2)))
        share = rng.random((18, 18, 2))
        bounds = profiles.ProfileBounds(
            jnp.asarray((utility - share * width).reshape(-1, 2)),
            jnp.asarray((utility + (1 - share) * width).reshape(-1, 2)),
            jnp.asarray(known.ravel()),
        )
        found = search(bounds)
        regret = np.asarray(found.regret).reshape(18, 18)
        candidate = np.asarray(found.candidate).reshape(18, 18)
        worst = {}
        for k0 in range(last[0] + 1):
            for k1 in range(last[1] + 1):
                best0 = max(utility[k, k1, 0] for k in range(last[0] + 1))
                best1 = max(utility[k0, k, 1] for k in range(last[1] + 1))
                worst[k0, k1] = max(best0 - utility[k0, k1, 0], best1 - utility[k0, k1, 1], 0.0)
        threshold = max(settings.min_gain, min(worst.values()))
        for profile, value in worst.items():
            where = f"case {case} {profile}"
            assert regret[profile] <= value + 1e-12, where
            if value <= threshold:
                assert candidate[profile], where
            if known.all():
                assert regret[profile] == value, where
        assert not candidate[last[0] + 1 :].any() and not candidate[:, last[1] + 1 :].any()


def reference_states(problem, scheme, leader, rounds):
    """The prices after each of the first ``rounds`` rounds, by replaying the reference
    game with ever larger round limits."""
    play = reference.play if leader == "local" else reference.play_best_response
    return [play(problem, scheme, max_rounds=r)[0] for r in range(1, rounds + 1)]


def mean_utilities(problem, scheme, states):
    devices, servers = [], []
    for steps in states:
        prices = reference.prices_at(problem, steps)
        picks = reference.market(problem, *prices, scheme)
        devices.append([pick.utility for pick in picks])
        servers.append(reference.server_utilities(problem, picks, *prices)[0])
    return np.mean(devices, axis=0), np.mean(servers, axis=0)


@pytest.mark.parametrize("leader", ["local", "best_response"])
def test_a_cycle_reports_its_length_and_mean_utilities(rng, leader):
    """The cycle's length and the utilities averaged over its states, against the
    reference's sequence of states; outside a cycle, the final state's utilities."""
    settings = GameSettings(leader=leader, price_levels=LEVELS)
    cycles = 0
    for case in range(80):
        problem = problem_with_grids(rng)
        scheme = SCHEMES[case % 3]
        play = reference.play if leader == "local" else reference.play_best_response
        _, rounds, status = play(problem, scheme)
        # Every eighth game is checked without a cycle; cycles of games short enough to
        # replay (a best-response round tries every price).
        if (status != 1 and case % 8) or rounds > (16 if leader == "best_response" else 100):
            continue
        _, scenario = padded(problem)
        got = solve(scenario, scheme, settings)
        assert int(got.status) == status
        if status == 1:
            states = reference_states(problem, scheme, leader, rounds)
            length = next(n for n in range(1, rounds) if states[-1] == states[-1 - n])
            devices, servers = mean_utilities(problem, scheme, states[-length:])
            cycles += 1
        else:
            length = 0
            devices, servers = got.devices.utility, got.server_utility
        assert int(got.cycle_length) == length, f"case {case}"
        np.testing.assert_allclose(got.cycle_device_utility, devices, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.cycle_server_utility, servers, rtol=1e-9, atol=1e-12)
    assert cycles >= 2, cycles


@pytest.mark.parametrize("leader", ["local", "best_response", "enumerate"])
def test_a_batch_certifies_each_game_as_solve_does(rng, leader):
    """solve_batch (the sweeps' path: the game queue, or a few games at a time) against
    solve, game by game; each game's certificate from its own regrets."""
    settings = GameSettings(leader=leader, price_levels=LEVELS)
    scenarios = [padded(problem_with_grids(rng))[1] for _ in range(6)]
    batch = solve_batch(stack(scenarios), reference.PROPOSED, settings, lanes=2)
    for i, scenario in enumerate(scenarios):
        alone = solve(scenario, reference.PROPOSED, settings)
        for name in ("server_regret", "cycle_server_utility", "price_crb", "device_violation"):
            np.testing.assert_allclose(
                getattr(batch, name)[i], getattr(alone, name), rtol=1e-9, atol=1e-12, err_msg=name
            )
        for name in ("rounds", "status", "cycle_length", "equilibria"):
            assert int(getattr(batch, name)[i]) == int(getattr(alone, name)), name
    expected = np.maximum(batch.device_violation, np.max(batch.server_regret, axis=1))
    np.testing.assert_array_equal(batch.certificate, expected)


RULES = """
name = "rules"
schemes = ["proposed", "user_only"]
topologies = 2
seed = 5
chunk = 2

[setup]
num_devices = 4
num_servers = 2
crbs = 3
rrbs = 12
price_step = 0.5

[axes]
leader = ["local", "best_response"]
mean_arrival_rate = [4.0, 9.0]
"""


def test_leader_rules_are_a_sweep_axis(tmp_path):
    """A store compares the rules on the same topologies, the rule a labelled coordinate:
    a rule's slice is what a sweep of that rule alone stores, its summary names it."""
    both = edgesplit.run(parse_sweep(RULES), tmp_path / "both.zarr")
    assert both.leader.values.tolist() == ["local", "best_response"]
    assert both.certificate.dims[:3] == ("scheme", "leader", "mean_arrival_rate")
    alone = RULES.replace('leader = ["local", "best_response"]\n', "").replace(
        "[axes]", '[game]\nleader = "best_response"\n\n[axes]'
    )
    expected = edgesplit.run(parse_sweep(alone))
    for name in ("server_regret", "certificate", "price_crb", "device_utility", "status"):
        np.testing.assert_allclose(
            both[name].sel(leader="best_response").values, expected[name].values,
            rtol=1e-12, err_msg=name,
        )  # fmt: skip
    table = summary_table(summary(both))
    assert "best_response" in table and "equilibrium" in table
    # A converged best-response game is an equilibrium on the grid.
    converged = both.sel(leader="best_response").status.values == 0
    assert np.all(both.sel(leader="best_response").certificate.values[converged] <= 1e-4 + 1e-9)
    # A topology exported at a point of the rule axis carries that rule's settings, those
    # a sweep of the rule alone plays (an exported game solves to the stored one:
    # tests/test_analysis.py).
    exported = parse_scenario(edgesplit.scenario_of(both, 1, leader="best_response",
                                                    mean_arrival_rate=9))  # fmt: skip
    assert exported.settings == parse_sweep(alone).game
    stored = both.sel(leader="best_response", mean_arrival_rate=9.0, topology=1)
    np.testing.assert_array_equal(exported.scenario.devices.arrival_rate, stored.arrival_rate)
