"""Self-checks of the reference's grid tools: regret, best levels, best-response play and
the enumeration of joint price profiles, on tiny problems with a few price levels."""

from __future__ import annotations

import pytest

from conftest import tiny_problem
from edgesplit import reference

SCHEMES = [reference.PROPOSED, reference.EDGE_ONLY, reference.HEURISTIC]
MIN_GAIN = 1e-4


def prices_of_profile(problem, profile):
    return reference.prices_at(problem, [[k, k] for k in profile])


def test_grid_levels_match_prices_at(rng):
    problem = tiny_problem(rng)
    for s, server in enumerate(problem["servers"]):
        top = reference.grid_top(problem, s)
        assert (top - 1) * server["price_step"] < server["max_price"]
        assert top * server["price_step"] >= server["max_price"]
        for k in range(top + 1):
            steps = [[0, 0] for _ in problem["servers"]]
            steps[s] = [k, k]
            price_crb, price_rrb = reference.prices_at(problem, steps)
            assert reference.level_price(problem, s, k) == price_crb[s] == price_rrb[s]
        assert reference.level_price(problem, s, top) == 0.0
        assert reference.level_price(problem, s, 0) == server["max_price"]


def gain_of_move(problem, price_crb, price_rrb, scheme, s, crb, rrb, here):
    """Server s's utility at (crb, rrb), the others' prices fixed, less ``here[s]``."""
    trial_crb, trial_rrb = list(price_crb), list(price_rrb)
    trial_crb[s], trial_rrb[s] = crb, rrb
    picks = reference.market(problem, trial_crb, trial_rrb, scheme)
    return reference.server_utilities(problem, picks, trial_crb, trial_rrb)[0][s] - here[s]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_regret_is_nonnegative_and_bounds_each_line(rng, scheme):
    for _ in range(5):
        problem = tiny_problem(rng)
        price_crb = [float(rng.uniform(0.0, s["max_price"])) for s in problem["servers"]]
        price_rrb = [float(rng.uniform(0.0, s["max_price"])) for s in problem["servers"]]
        joint = reference.server_regret(problem, price_crb, price_rrb, scheme)
        lines = reference.server_regret(problem, price_crb, price_rrb, scheme, joint=False)
        assert len(joint) == len(lines) == len(problem["servers"])
        here = reference.server_utilities(
            problem, reference.market(problem, price_crb, price_rrb, scheme), price_crb, price_rrb
        )[0]
        for s in range(len(joint)):
            assert joint[s] >= 0.0
            assert lines[s] >= joint[s]  # the three lines include the diagonal
            diagonal = [0.0]
            for k in range(reference.grid_top(problem, s) + 1):
                p = reference.level_price(problem, s, k)
                diagonal.append(gain_of_move(problem, price_crb, price_rrb, scheme, s, p, p, here))
                for crb, rrb in ((p, price_rrb[s]), (price_crb[s], p)):
                    gain = gain_of_move(problem, price_crb, price_rrb, scheme, s, crb, rrb, here)
                    assert lines[s] >= gain - 1e-12
            assert joint[s] == pytest.approx(max(diagonal), abs=1e-12)


def test_user_only_has_no_regret_and_one_profile(rng):
    problem = tiny_problem(rng)
    price_crb = [s["max_price"] for s in problem["servers"]]
    price_rrb = [0.5 * s["max_price"] for s in problem["servers"]]
    for joint in (True, False):
        regret = reference.server_regret(
            problem, price_crb, price_rrb, reference.USER_ONLY, joint=joint
        )
        assert regret == [0.0, 0.0]
    assert reference.play_best_response(problem, reference.USER_ONLY) == ([[0, 0], [0, 0]], 0, 0)
    found = reference.enumerate_profiles(problem, reference.USER_ONLY)
    assert found == {
        "equilibria": [(0, 0)],
        "outcome": (0, 0),
        "status": 0,
        "regret": [0.0, 0.0],
    }


@pytest.mark.parametrize("scheme", SCHEMES)
def test_best_level_has_no_regret(rng, scheme):
    problem = tiny_problem(rng)
    steps = [[int(rng.integers(0, reference.grid_top(problem, s) + 1))] * 2 for s in range(2)]
    for s in range(2):
        best, k = reference.best_level(problem, steps, s, scheme)
        utilities = []
        for level in range(reference.grid_top(problem, s) + 1):
            tentative = [list(row) for row in steps]
            tentative[s] = [level, level]
            utilities.append(reference.server_utilities_at(problem, tentative, scheme)[0][s])
        assert best == max(utilities)
        slack = 1e-12 * max(abs(best), 1.0)
        assert utilities[k] >= best - slack
        assert all(u < best - slack for u in utilities[:k])  # the highest price among maxima
        moved = [list(row) for row in steps]
        moved[s] = [k, k]
        price_crb, price_rrb = reference.prices_at(problem, moved)
        regret = reference.server_regret(problem, price_crb, price_rrb, scheme)
        assert regret[s] <= slack


def brute_force(problem, scheme, min_gain):
    """The equilibria, every profile's regret and utilities, recomputed with no cache."""
    tops = [reference.grid_top(problem, s) for s in range(2)]
    utilities = {}
    for k0 in range(tops[0] + 1):
        for k1 in range(tops[1] + 1):
            steps = [[k0, k0], [k1, k1]]
            utilities[(k0, k1)] = reference.server_utilities_at(problem, steps, scheme)[0]
    regrets = {}
    for (k0, k1), here in utilities.items():
        gain0 = max(utilities[(j, k1)][0] for j in range(tops[0] + 1)) - here[0]
        gain1 = max(utilities[(k0, j)][1] for j in range(tops[1] + 1)) - here[1]
        regrets[(k0, k1)] = [max(0.0, gain0), max(0.0, gain1)]
    equilibria = sorted(p for p, r in regrets.items() if max(r) <= min_gain)
    return equilibria, regrets, utilities


@pytest.mark.parametrize("scheme", SCHEMES)
def test_enumeration_matches_brute_force(rng, scheme):
    problem = tiny_problem(rng)
    found = reference.enumerate_profiles(problem, scheme, min_gain=MIN_GAIN)
    equilibria, regrets, utilities = brute_force(problem, scheme, MIN_GAIN)
    assert found["equilibria"] == equilibria
    if equilibria:
        assert found["status"] == 0
        totals = [sum(utilities[p]) for p in equilibria]
        assert found["outcome"] == equilibria[totals.index(max(totals))]
    else:
        assert found["status"] == 4
        worst = {p: max(r) for p, r in regrets.items()}
        assert found["outcome"] == min(sorted(worst), key=lambda p: worst[p])
    assert found["regret"] == pytest.approx(regrets[found["outcome"]], abs=1e-12)
    price_crb, price_rrb = prices_of_profile(problem, found["outcome"])
    regret = reference.server_regret(problem, price_crb, price_rrb, scheme)
    assert found["regret"] == pytest.approx(regret, abs=1e-12)
    for profile in found["equilibria"]:
        price_crb, price_rrb = prices_of_profile(problem, profile)
        regret = reference.server_regret(problem, price_crb, price_rrb, scheme)
        assert max(regret) <= MIN_GAIN


@pytest.mark.parametrize("scheme", SCHEMES)
def test_no_equilibrium_picks_the_least_worst_regret(rng, scheme):
    for _ in range(3):
        problem = tiny_problem(rng)
        found = reference.enumerate_profiles(problem, scheme, min_gain=-1.0)  # none qualifies
        _, regrets, _ = brute_force(problem, scheme, -1.0)
        assert found["status"] == 4
        assert found["equilibria"] == []
        worst = {p: max(r) for p, r in regrets.items()}
        assert found["outcome"] == min(sorted(worst), key=lambda p: worst[p])
        assert found["regret"] == pytest.approx(regrets[found["outcome"]], abs=1e-12)


@pytest.mark.parametrize("update", ["simultaneous", "sequential"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_best_response_play_stops_at_an_equilibrium(rng, scheme, update):
    for _ in range(3):
        problem = tiny_problem(rng)
        steps, rounds, status = reference.play_best_response(
            problem, scheme, update=update, min_gain=MIN_GAIN
        )
        assert status in (0, 1, 2)
        assert rounds >= 1
        assert all(row[0] == row[1] for row in steps)
        for s, row in enumerate(steps):
            assert 0 <= row[0] <= reference.grid_top(problem, s)
        price_crb, price_rrb = reference.prices_at(problem, steps)
        regret = reference.server_regret(problem, price_crb, price_rrb, scheme)
        found = reference.enumerate_profiles(problem, scheme, min_gain=MIN_GAIN)
        profile = tuple(row[0] for row in steps)
        if status == 0:
            assert max(regret) <= MIN_GAIN
            assert profile in found["equilibria"]
        elif status == 1:  # a cycle returns to a profile it has already left
            assert max(regret) > MIN_GAIN
            assert profile not in found["equilibria"]


def test_best_response_play_moves_to_the_best_level(rng):
    """One simultaneous round from the start is every server's best level (or no move)."""
    problem = tiny_problem(rng)
    scheme = reference.PROPOSED
    start = [[0, 0], [0, 0]]
    current = reference.server_utilities_at(problem, start, scheme)[0]
    expected = []
    for s in range(2):
        best, k = reference.best_level(problem, start, s, scheme)
        expected.append([k, k] if best - current[s] > MIN_GAIN else [0, 0])
    steps, rounds, _ = reference.play_best_response(problem, scheme, max_rounds=1)
    assert rounds == 1
    assert steps == expected
