"""The NumPy baseline of the benchmark (scripts/numpy_baseline.py) gives the same answers
as the plain-Python reference and as the JAX engine.

Topologies are sampled by the engine and converted to scenario files by the script's
``as_problem``. The script is not part of the package: it is loaded from its path.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import jax
import numpy as np
import pytest

from edgesplit import reference
from edgesplit.config import GameSettings, Setup
from edgesplit.game.solve import solve

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "numpy_baseline.py"


def load_script(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


baseline = load_script(SCRIPT)
SCHEMES = (baseline.PROPOSED, baseline.EDGE_ONLY, baseline.HEURISTIC)

# Reduced instances small enough for the reference (3-4 MDs, 2 ESs): 4 CRBs, 8 RRBs and
# Δ = 0.5, or 6 CRBs, 16 RRBs, max price 2 and Δ = 0.1, where more devices buy; the
# three schemes that play a game at several arrival rates, some games with sequential
# updates or separate prices.
REDUCED_GAMES = 36
INSTANCES = (
    {"crbs": 4, "rrbs": 8, "price_step": 0.5},
    {"crbs": 6, "rrbs": 16, "max_price": 2.0, "price_step": 0.1},
)
RATES = (2.0, 5.0, 10.0, 20.0)
VARIANTS = [("simultaneous", True)] * 3 + [("sequential", True), ("simultaneous", False)]
# The reduced games played to the end against reference.play: the reference takes
# 0.1-11 s a game here, so not all 36 (about 90 s), but these cover every scheme on both
# instances, sequential updates and separate prices under every scheme, 3 and 4 MDs, a
# 37-round game, one that ends in a cycle (30) and one whose outcome depends on the
# admission order (12), in about 20 s.
PLAYED = (0, 1, 2, 3, 4, 8, 12, 13, 14, 19, 24, 30, 35)
FIG3_GAMES = 6  # per scheme


@functools.cache
def reduced_game(i: int):
    """Reduced game ``i``: (setup, scheme, update, joint, scenario file)."""
    update, joint = VARIANTS[i % len(VARIANTS)]
    setup = Setup().replace(
        num_devices=3 + i // 8 % 2, mean_arrival_rate=RATES[i // 2 % len(RATES)],
        **INSTANCES[i % 2],
    )  # fmt: skip
    _, problem = baseline.sampled_problem(setup, 1, i)
    return setup, SCHEMES[i % 3], update, joint, problem


def as_arrays(picks) -> dict:
    """A list of reference.Pick as the baseline's pick arrays (None as IDLE)."""
    return {
        "server": np.array([baseline.IDLE if p.server is None else p.server for p in picks]),
        "split": np.array([baseline.IDLE if p.split is None else p.split for p in picks]),
        "crbs": np.array([p.crbs for p in picks]),
        "rrbs": np.array([p.rrbs for p in picks]),
        "utility": np.array([p.utility for p in picks]),
    }


def test_market_matches_reference():
    """On every reduced instance, the market (best responses with admission) at four
    random prices skewed towards 0, where devices buy and compete for blocks: the same
    choices and utilities as reference.market."""
    rng = np.random.default_rng(0)
    mismatches, offloading = [], 0
    for i in range(REDUCED_GAMES):
        setup, scheme, _, _, problem = reduced_game(i)
        a = baseline.prepare(problem)
        for _ in range(4):
            price_crb, price_rrb = setup.max_price * rng.uniform(size=(2, len(a["crbs"]))) ** 3
            want = as_arrays(reference.market(problem, list(price_crb), list(price_rrb), scheme))
            have = baseline.market(a, price_crb, price_rrb, scheme)
            offloading += int(np.sum(want["server"] != baseline.IDLE))
            mismatches += [
                f"game {i} (scheme {scheme}) at {price_crb}, {price_rrb}: {key} "
                f"{have[key]} != reference {value}"
                for key, value in want.items()
                if not np.array_equal(have[key], value)
            ]
    assert not mismatches, "\n".join(mismatches)
    assert offloading > 0  # the markets are not all idle


@pytest.mark.parametrize("i", PLAYED)
def test_play_matches_reference(i):
    """Algorithm 1 from the maximum prices: the same (steps, rounds, status) as
    reference.play."""
    _, scheme, update, joint, problem = reduced_game(i)
    expected = reference.play(problem, scheme, update=update, joint=joint)
    assert baseline.play(problem, scheme, update=update, joint=joint) == expected


MARKET_ONLY = GameSettings(grid_certificate=False)  # the baseline plays the game alone


@pytest.mark.parametrize("scheme", SCHEMES)
def test_matches_engine(scheme):
    """Fig. 3 scenarios (20 MDs, 2 ESs, λ = 10): the same rounds, status, prices and
    device choices as edgesplit.game.solve.solve, utilities to rounding."""
    fig3 = Setup().replace(mean_arrival_rate=10.0)
    for i in range(FIG3_GAMES):
        topology, problem = baseline.sampled_problem(fig3, 2, i)
        solution = jax.tree.map(np.asarray, solve(topology.scenario, scheme, MARKET_ONLY))
        steps, played, status = baseline.play(problem, scheme)
        final = baseline.final_market(problem, steps, scheme)
        game = f"Fig. 3 game {i} (scheme {scheme})"
        assert (played, status) == (int(solution.rounds), int(solution.status)), game
        np.testing.assert_allclose(final["price_crb"], solution.price_crb, rtol=0, atol=1e-12)
        np.testing.assert_allclose(final["price_rrb"], solution.price_rrb, rtol=0, atol=1e-12)
        for key in ("server", "split", "crbs", "rrbs"):
            np.testing.assert_array_equal(final[key], getattr(solution.devices, key), game)
        np.testing.assert_allclose(
            final["utility"], solution.devices.utility, rtol=0, atol=1e-9, err_msg=game
        )
