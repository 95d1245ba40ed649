"""Scenario files and the ``edgesplit solve`` command."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import random_problem
from edgesplit.config import JOINT_MOVES, SEPARATE_MOVES, GameSettings, Setup
from edgesplit.errors import InputError
from edgesplit.io import scenario_file
from edgesplit.io.scenario_file import parse_scenario
from edgesplit.io.sweep_file import parse_sweep

ROOT = Path(__file__).resolve().parents[1]

EXAMPLE = {
    "models": {
        "tiny": {
            "input_bits": 4946784,
            "layers": [
                {"name": "conv1", "cycles": 2.1e8, "output_bits": 9292800},
                {"name": "fc", "cycles": 5e7, "output_bits": 1000},
            ],
        }
    },
    "devices": [
        {
            "model": "alexnet",
            "cpu_hz": 8.52e8,
            "arrival_rate": 11.0,
            "reward": 1.0,
            "delay_weight": 1.0,
            "payment_weight": 1.0,
        },
        {
            "model": "tiny",
            "cpu_hz": 2.3e9,
            "arrival_rate": 8.0,
            "reward": 1.0,
            "delay_weight": 1.0,
            "payment_weight": 1.0,
        },
        {
            "model": "asr",
            "cpu_hz": 8.52e8,
            "arrival_rate": 5.0,
            "reward": 1.0,
            "delay_weight": 1.0,
            "payment_weight": 1.0,
        },
    ],
    "servers": [
        {
            "crb_hz": 7.45e8,
            "crbs": 15,
            "rrbs": 100,
            "cost_crb": 0.05,
            "cost_rrb": 0.05,
            "price_crb": 0.5,
            "price_rrb": 0.5,
            "max_price": 10.0,
            "price_step": 0.05,
            "result_delay": 0.001,
        },
        {
            "crb_hz": 7.45e8,
            "crbs": 15,
            "rrbs": 100,
            "cost_crb": 0.05,
            "cost_rrb": 0.05,
            "price_crb": 0.4,
            "price_rrb": 0.4,
            "max_price": 10.0,
            "price_step": 0.05,
            "result_delay": 0.001,
        },
    ],
    "rate_per_rrb": [[2.0e6, 1.5e6], [3.0e6, 2.5e6], [2.5e6, 2.6e6]],
}


def edgesplit(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "edgesplit", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def changed(path, value):
    """EXAMPLE with the entry at ``path`` (keys and indices) set to ``value`` or deleted."""
    data = copy.deepcopy(EXAMPLE)
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


DELETE = object()

BAD = [
    (("devices", 0, "arrival_rate"), -1.0, "devices[0].arrival_rate", "must be > 0"),
    (("devices", 0, "arrival_rate"), 0, "devices[0].arrival_rate", "must be > 0"),
    (("devices", 1, "cpu_hz"), "fast", "devices[1].cpu_hz", "must be a number"),
    (("devices", 1, "cpu_hz"), True, "devices[1].cpu_hz", "must be a number"),
    (("devices", 2, "model"), "resnet", "devices[2].model", "unknown model"),
    (("devices", 2, "reward"), DELETE, "devices[2].reward", "missing"),
    (("devices", 0, "colour"), "red", "devices[0].colour", "unknown key"),
    (("devices",), [], "devices", "must not be empty"),
    (("servers", 0, "crbs"), 2.5, "servers[0].crbs", "must be an integer"),
    (("servers", 0, "crbs"), 0, "servers[0].crbs", "must be >= 1"),
    (("servers", 1, "rrbs"), -3, "servers[1].rrbs", "must be >= 1"),
    (("servers", 1, "price_step"), 0, "servers[1].price_step", "must be > 0"),
    (("servers", 1, "price_crb"), 11.0, "servers[1].price_crb", "must be <= 10"),
    (("servers", 0, "cost_rrb"), -0.1, "servers[0].cost_rrb", "must be >= 0"),
    (("rate_per_rrb",), [[1.0, 1.0]], "rate_per_rrb", "one row per device"),
    (("rate_per_rrb", 1), [1.0], "rate_per_rrb[1]", "one rate per server"),
    (("rate_per_rrb", 2, 1), 0.0, "rate_per_rrb[2][1]", "must be > 0"),
    (("models", "tiny", "layers"), [], "models.tiny.layers", "must not be empty"),
    (("models", "tiny", "layers", 0, "cycles"), -5, "models.tiny.layers[0].cycles", "must be >= 0"),
    (("models", "tiny", "input_bits"), 0, "models.tiny.input_bits", "must be > 0"),
    (("game",), {"update": "random"}, "game.update", "must be one of"),
    (("game",), {"max_rounds": 0}, "game.max_rounds", "must be >= 1"),
    (("game",), {"prices": "joint"}, "game.prices", 'renamed: use "joint_price": true'),
    (("game",), {"joint_price": "yes"}, "game.joint_price", "must be true or false"),
    (("game",), {"speed": 1}, "game.speed", "unknown key"),
    (("game",), {"cycle_window": 2.5}, "game.cycle_window", "must be an integer"),
    (("game",), {"best_response": "exhaustive", "rrb_grid": 99}, "game.rrb_grid", ">= the largest"),
    (("game",), [], "game", "must be a table/object"),
    (("devices", 0, "cpu_hz"), -1.0, "devices[0].cpu_hz", "must be > 0"),
    (("servers", 0, "price_step"), 10.5, "servers[0].price_step", "must not exceed max_price"),
    (("weather",), "fine", "weather", "unknown key"),
]


@pytest.mark.parametrize("path, value, field, problem", BAD, ids=[b[2] + ":" + b[3] for b in BAD])
def test_bad_scenarios_name_the_field(path, value, field, problem):
    with pytest.raises(InputError) as err:
        parse_scenario(changed(path, value))
    assert err.value.field == field
    assert problem in err.value.problem


def test_nan_and_infinity_are_refused(tmp_path):
    for token in ("NaN", "Infinity", "-Infinity"):
        text = json.dumps(EXAMPLE).replace('"arrival_rate": 8.0', f'"arrival_rate": {token}')
        path = tmp_path / "bad.json"
        path.write_text(text)
        result = edgesplit("solve", str(path))
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert token in result.stderr and result.stdout == ""


def test_solve_prints_the_documented_json(tmp_path):
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(EXAMPLE))
    result = edgesplit("solve", str(path))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {
        "devices", "servers", "rounds", "converged", "status", "cycle_length", "equilibria",
        "certificate", "local_certificate", "device_violation", "local_server_violation",
    }  # fmt: skip
    assert len(out["devices"]) == 3 and len(out["servers"]) == 2
    assert set(out["devices"][0]) == {
        "server", "split", "crbs", "rrbs", "utility", "delay", "cycle_utility",
    }  # fmt: skip
    assert set(out["servers"][0]) == {
        "price_crb", "price_rrb", "utility", "crbs_sold", "rrbs_sold", "regret", "cycle_utility",
    }  # fmt: skip
    regrets = [s["regret"] for s in out["servers"]]
    assert out["certificate"] == max(out["device_violation"], *regrets)
    assert out["local_certificate"] == max(out["device_violation"], out["local_server_violation"])
    assert out["equilibria"] is None
    assert isinstance(out["converged"], bool) and out["rounds"] > 0
    sold = [sum(d["crbs"] for d in out["devices"] if d["server"] == s) for s in range(2)]
    assert sold == [s["crbs_sold"] for s in out["servers"]]
    # The overloaded AlexNet device (λ = 11 near its local limit 12.2) offloads.
    assert out["devices"][0]["server"] is not None


def test_fixed_prices_and_schemes(tmp_path):
    path = tmp_path / "scenario.json"
    path.write_text(json.dumps(EXAMPLE))
    fixed = json.loads(edgesplit("solve", str(path), "--fixed-prices").stdout)
    assert fixed["rounds"] == 0 and fixed["converged"] is None and fixed["status"] == "fixed_prices"
    assert [s["price_crb"] for s in fixed["servers"]] == [0.5, 0.4]
    user = json.loads(edgesplit("solve", str(path), "--scheme", "user_only").stdout)
    assert all(d["server"] is None for d in user["devices"])
    edge = json.loads(edgesplit("solve", str(path), "--scheme", "edge_only").stdout)
    assert all(d["split"] in (0, None) for d in edge["devices"])

    no_prices = changed(("servers", 1, "price_rrb"), DELETE)
    path.write_text(json.dumps(no_prices))
    result = edgesplit("solve", str(path), "--fixed-prices")
    assert (
        result.returncode == 2 and "price_crb" in result.stderr and result.stderr.count("\n") == 1
    )


def test_unreadable_and_malformed_files_exit_2(tmp_path):
    missing = edgesplit("solve", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    (tmp_path / "broken.json").write_text("{ devices: ")
    broken = edgesplit("solve", str(tmp_path / "broken.json"))
    assert broken.returncode == 2 and "not valid JSON" in broken.stderr
    (tmp_path / "list.json").write_text("[1, 2]")
    wrong = edgesplit("solve", str(tmp_path / "list.json"))
    assert wrong.returncode == 2 and "scenario: must be a JSON object" in wrong.stderr
    for result in (missing, broken, wrong):
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_random_files_round_trip(rng):
    """The parser keeps every number it is given."""
    problem = random_problem(rng, 4, 3)
    parsed = parse_scenario(problem)
    devices = parsed.scenario.devices
    np.testing.assert_array_equal(
        devices.arrival_rate, [d["arrival_rate"] for d in problem["devices"]]
    )
    np.testing.assert_array_equal(parsed.scenario.rate_per_rrb, problem["rate_per_rrb"])
    np.testing.assert_array_equal(parsed.price_crb, [s["price_crb"] for s in problem["servers"]])
    assert parsed.device_models == tuple(d["model"] for d in problem["devices"])


# Every number of a device or server, and the Setup field whose bounds it has.
SETUP_FIELDS = [
    ("devices", "cpu_hz", "cpu_hz"),
    ("devices", "arrival_rate", "mean_arrival_rate"),
    *(("devices", key, key) for key in ("reward", "delay_weight", "payment_weight")),
    *(("servers", key, key) for key in ("crb_hz", "crbs", "rrbs", "cost_crb", "cost_rrb")),
    *(("servers", key, key) for key in ("max_price", "price_step", "result_delay")),
]


@pytest.mark.parametrize(
    "part, key, field", SETUP_FIELDS, ids=[f"{p}.{k}" for p, k, _ in SETUP_FIELDS]
)
def test_scenario_numbers_have_the_bounds_of_their_setup_field(part, key, field, monkeypatch):
    """Tightening a Setup field's bounds tightens the scenario key: the range lives once."""
    bounds = {f.name: f for f in dataclasses.fields(Setup)}[field].metadata["bounds"]
    parse_scenario(EXAMPLE)
    monkeypatch.setitem(bounds, "at_most", -1)
    with pytest.raises(InputError) as err:
        parse_scenario(EXAMPLE)
    assert err.value.field == f"{part}[0].{key}"
    assert "must be <= -1" in err.value.problem


def test_game_takes_every_game_setting():
    game = {
        "update": "sequential", "joint_price": False, "max_rounds": 50.0, "min_gain": 1e-3,
        "cycle_window": 4, "fast_forward": False, "best_response": "exhaustive",
        "crb_grid": 20, "rrb_grid": 0, "leader": "local", "grid_certificate": False,
        "price_levels": 500,
    }  # fmt: skip
    assert set(game) == {f.name for f in dataclasses.fields(GameSettings)}
    settings = parse_scenario({**EXAMPLE, "game": game}).settings
    assert settings == GameSettings(**{**game, "max_rounds": 50, "rrb_grid": 100})
    assert settings.moves == SEPARATE_MOVES and isinstance(settings.max_rounds, int)
    assert parse_scenario({**EXAMPLE, "game": {"joint_price": True}}).settings.moves == JOINT_MOVES
    defaults = parse_scenario(EXAMPLE).settings  # the price levels fitted to the servers
    assert defaults == GameSettings(price_levels=defaults.price_levels) and defaults.price_levels


def test_scenario_and_sweep_files_share_the_game_vocabulary():
    game = {"update": "sequential", "joint_price": False, "min_gain": 1e-5, "cycle_window": 3,
            "best_response": "exhaustive"}  # fmt: skip
    toml = "\n".join(f"{key} = {json.dumps(value)}" for key, value in game.items())
    sweep = parse_sweep(f"topologies = 1\nseed = 0\n[game]\n{toml}\n")
    assert parse_scenario({**EXAMPLE, "game": game}).settings == sweep.game
    assert (sweep.game.crb_grid, sweep.game.rrb_grid) == (Setup().crbs, Setup().rrbs)
    with pytest.raises(InputError) as sweep_err:
        parse_sweep("topologies = 1\nseed = 0\n[game]\nspeed = 1")
    with pytest.raises(InputError) as scenario_err:
        parse_scenario({**EXAMPLE, "game": {"speed": 1}})
    assert str(sweep_err.value) == str(scenario_err.value)
    assert all(f.name in str(sweep_err.value) for f in dataclasses.fields(GameSettings))


def test_exhaustive_grids_default_to_the_largest_server():
    data = changed(("servers", 1, "crbs"), 21)
    data["servers"][0]["rrbs"] = 120
    data["game"] = {"best_response": "exhaustive"}
    settings = parse_scenario(data).settings
    assert (settings.crb_grid, settings.rrb_grid) == (21, 120)
    data["game"]["crb_grid"] = 20
    with pytest.raises(InputError, match=r"^game\.crb_grid: must be >= the largest crbs \(21\)"):
        parse_scenario(data)


def test_documented_examples_parse():
    """The documentation's scenario example and this module's docstring example are valid
    files."""
    page = (ROOT / "docs" / "sweeps.md").read_text()
    section = page.split("## Scenario files", 1)[1].split("\n## ", 1)[0]
    docstring = scenario_file.__doc__.split("::", 1)[1].split("\n\n", 2)[1]
    for example in (re.findall(r"```json\n(.*?)\n```", section, flags=re.S)[0], docstring):
        parsed = parse_scenario(json.loads(example))
        # The examples spell out the defaults; the price levels are fitted to the servers.
        fitted = parsed.settings.price_levels
        assert parsed.settings == GameSettings(price_levels=fitted) and fitted >= 2
