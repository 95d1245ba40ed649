"""The Python API refuses bad input as the files do (issue 33, finding 4): one
InputError naming the argument, raised before anything is compiled or written."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_scenario_file import EXAMPLE
from test_sweep import TINY

import edgesplit
from edgesplit import GameSettings, InputError, Scheme, Setup
from edgesplit.cli import main
from edgesplit.io.scenario_file import parse_scenario
from edgesplit.io.sweep_file import parse_sweep
from edgesplit.model.scenario import stack


def refused(call, field: str, problem: str = "") -> InputError:
    with pytest.raises(InputError) as err:
        call()
    assert err.value.field == field, str(err.value)
    assert problem in err.value.problem and "\n" not in str(err.value), str(err.value)
    return err.value


@pytest.mark.parametrize(
    "given, field, problem",
    [
        ({"mean_arrival_rate": -1}, "mean_arrival_rate", "must be > 0, got -1"),
        ({"mean_arrival_rate": "10"}, "mean_arrival_rate", "must be a number, got '10'"),
        ({"cpu_hz": float("nan")}, "cpu_hz", "finite"),
        ({"crbs": 2.5}, "crbs", "must be an integer"),
        ({"num_devices": np.int64(0)}, "num_devices", "must be >= 1"),
        ({"models": ()}, "models", "must not be empty"),
        ({"models": "alexnet"}, "models", "must be a list"),
        ({"models": ("resnet",)}, "models[0]", "neither a built-in model"),
        ({"models": ("missing.csv",)}, "models[0]", "cannot read"),
    ],
)
def test_a_setup_is_checked_when_made(given, field, problem):
    refused(lambda: Setup(**given), field, problem)


def test_a_setup_of_numpy_numbers_holds_python_numbers():
    setup = Setup(num_devices=np.int64(3), radius_m=np.float32(20.0))
    assert type(setup.num_devices) is int and setup.num_devices == 3
    assert type(setup.radius_m) is float


SWEEP_CHANGES = [
    ({"chunk": 0}, "chunk", "must be >= 1"),
    ({"chunk": 7}, "chunk", "must be <= topologies (6)"),
    ({"topologies": 0}, "topologies", "must be >= 1"),
    ({"precision": "float16"}, "precision", "must be one of"),
    ({"seed": -1}, "seed", "must be >= 0"),
    ({"schemes": ()}, "schemes", "must not be empty"),
    ({"schemes": ("best",)}, "schemes[0]", "must be one of"),
    ({"name": "a\x00b"}, "name", "control characters"),
    ({"setup": "big"}, "setup", "must be a Setup"),
    ({"game": None}, "game", "must be a GameSettings"),
    ({"axes": {"mean_arrival_rate": (4.0, -1.0)}}, "axes.mean_arrival_rate[1]", "must be > 0"),
    ({"axes": {"mean_arrival_rate": (4.0, 4.0)}}, "axes.mean_arrival_rate", "repeats"),
    ({"axes": {"flavour": (1,)}}, "axes.flavour", "unknown key"),
    ({"game_axes": {"leader": ("nobody",)}}, "axes.leader[0]", "must be one of"),
    ({"flavour": 1}, "flavour", "is not a field of Sweep"),
]


@pytest.mark.parametrize("change, field, problem", SWEEP_CHANGES, ids=[c[1] for c in SWEEP_CHANGES])
def test_a_sweep_is_checked_when_changed(change, field, problem):
    refused(lambda: parse_sweep(TINY).replace(**change), field, problem)


def test_a_sweep_is_checked_over_its_grid():
    sweep = parse_sweep(TINY)
    refused(
        lambda: sweep.replace(setup=sweep.setup.replace(price_step=20.0)),
        "price_step", "must not exceed max_price",
    )  # fmt: skip
    refused(
        lambda: sweep.replace(precision="float32", setup=sweep.setup.replace(cpu_hz=1e39)),
        "setup.cpu_hz", "the range of float32",
    )  # fmt: skip
    # A fine grid that the fitted price levels no longer reach.
    refused(
        lambda: sweep.replace(axes={"price_step": (0.001,)}),
        "game.price_levels", "must be >= the most price levels",
    )  # fmt: skip
    assert sweep.replace(schemes=["user_only"]).schemes == (Scheme.USER_ONLY,)


def test_enumerate_counts_the_levels_of_the_grid():
    """Finding 8: 62 levels for each of 3 servers is 62³ = 238,328 profiles, within the
    limit of 250,000 (the spare level the engine holds is no profile); 63 are too many."""
    setup = "[setup]\nnum_servers = 3\nprice_step = 0.5\nmax_price = {top}\n"
    text = "topologies = 1\nseed = 0\n" + setup + "[game]\nleader = 'enumerate'\n"
    assert parse_sweep(text.format(top=30.5)).game.price_levels == 63  # 62 levels and a spare
    refused(lambda: parse_sweep(text.format(top=31.0)), "game.leader", "63^3 = 250,047")


@pytest.fixture(scope="module")
def scenario():
    return parse_scenario(EXAMPLE).scenario


def with_devices(scenario, **changes):
    return dataclasses.replace(scenario, devices=dataclasses.replace(scenario.devices, **changes))


def test_the_solvers_check_their_arguments(scenario):
    proposed = Scheme.PROPOSED
    refused(lambda: edgesplit.solve(scenario, "best"), "scheme", "unknown scheme")
    refused(lambda: edgesplit.solve(scenario, 9), "scheme", "must be one of")
    refused(lambda: edgesplit.solve(scenario, proposed, {"leader": "local"}), "settings")
    refused(lambda: edgesplit.solve("scenario.json", proposed), "scenario", "must be a Scenario")
    negative = with_devices(scenario, arrival_rate=-scenario.devices.arrival_rate)
    refused(
        lambda: edgesplit.solve(negative, proposed),
        "scenario.devices.arrival_rate[0]", "must be > 0, got -11.0",
    )  # fmt: skip
    text = with_devices(scenario, arrival_rate="10")
    refused(lambda: edgesplit.solve(text, proposed), "scenario.devices.arrival_rate", "an array")
    short = with_devices(scenario, reward=scenario.devices.reward[:2])
    refused(lambda: edgesplit.solve(short, proposed), "scenario.devices.reward", "has shape (2,)")
    refused(
        lambda: edgesplit.solve(scenario, proposed, GameSettings(price_levels=3)),
        "settings.price_levels", "must be >= the most price levels",
    )  # fmt: skip

    servers = scenario.servers.num_servers
    prices = [1.0] * servers
    at_prices = edgesplit.solve_at_prices
    refused(lambda: at_prices(scenario, proposed, [1.0], prices), "price_crb", "one price per")
    refused(lambda: at_prices(scenario, proposed, [-1.0] * servers, prices), "price_crb[0]", ">= 0")
    refused(
        lambda: at_prices(scenario, proposed, prices, [float("nan")] * servers),
        "price_rrb[0]", "finite",
    )  # fmt: skip
    refused(lambda: at_prices(scenario, proposed, prices, "cheap"), "price_rrb", "one price per")

    empty = jax.tree.map(lambda x: jnp.asarray(x)[None][:0], scenario)
    refused(lambda: edgesplit.solve_batch(empty, proposed), "scenarios", "the batch is empty")
    refused(lambda: edgesplit.solve_batch(scenario, proposed), "scenarios.devices.cpu_hz", "shape")
    refused(lambda: edgesplit.solve_batch(stack([scenario]), proposed, lanes=0), "lanes")


def test_a_traced_game_needs_its_price_levels(scenario):
    """Under a vmap there is nothing to fit the levels to: the grid certificate's table of
    offers refuses price_levels = 0 as it is traced, before anything is compiled, and so
    does the game's kernel called directly; without the certificate, none are needed."""
    from edgesplit.game.solve import solve

    batch = stack([scenario, scenario])
    for settings in (GameSettings(), GameSettings(leader="best_response")):
        vmapped = jax.vmap(lambda one, settings=settings: edgesplit.solve(one, 0, settings))
        refused(lambda vmapped=vmapped: vmapped(batch), "price_levels", "must be set")
        refused(lambda settings=settings: solve(scenario, 0, settings), "price_levels")
    market_only = GameSettings(grid_certificate=False)
    solved = jax.vmap(lambda one: edgesplit.solve(one, 0, market_only))(batch)
    assert np.all(np.isnan(np.asarray(solved.server_regret)))


def test_run_takes_a_sweep_or_its_path(tmp_path):
    refused(lambda: edgesplit.run(42), "sweep", "must be a Sweep or a sweep file's path")
    missing = tmp_path / "missing.toml"
    refused(lambda: edgesplit.run(missing), str(missing), "cannot read")
    sweep_file = tmp_path / "tiny.toml"
    sweep_file.write_text(TINY)
    (tmp_path / "other.toml").write_text(TINY.replace("seed = 42", "seed = 7"))
    store = tmp_path / "other.zarr"
    assert main(["init", str(tmp_path / "other.toml"), "--out", str(store)]) == 0
    # The path is read and checked against the store before anything compiles.
    refused(lambda: edgesplit.run(str(sweep_file), store), str(store), "was made with seed = 7")
