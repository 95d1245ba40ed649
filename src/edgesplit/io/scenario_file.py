"""Scenario JSON files for ``edgesplit solve``: read, check, and write the solution.

Format (rates in bits/s, cycles in cycles, bits in bits, delays in seconds)::

    {
      "models": {"tiny": {"input_bits": 4e6,
                          "layers": [{"name": "conv1", "cycles": 2.1e8, "output_bits": 9e6}]}},
      "devices": [{"model": "alexnet", "cpu_hz": 8.52e8, "arrival_rate": 5.0,
                   "reward": 1.0, "delay_weight": 1.0, "payment_weight": 1.0}],
      "servers": [{"crb_hz": 7.45e8, "crbs": 15, "rrbs": 100, "cost_crb": 0.05,
                   "cost_rrb": 0.05, "price_crb": 2.0, "price_rrb": 2.0, "max_price": 10.0,
                   "price_step": 0.05, "result_delay": 0.001}],
      "rate_per_rrb": [[2.0e6]],
      "game": {"update": "simultaneous", "joint_price": true, "max_rounds": 2000,
               "min_gain": 1e-4}
    }

``models``, ``game`` and ``source`` are optional (``source``: any object saying where the
scenario came from, as ``edgesplit export`` writes it; the solver ignores it); a
device's ``model`` names an entry of
``models`` or a built-in model (alexnet, asr, face, vgg). ``price_crb`` and
``price_rrb`` are needed only with ``--fixed-prices``.

A device or server number has the range of the :class:`~edgesplit.config.Setup` field
of the same name (``arrival_rate``: ``mean_arrival_rate``); a server's ``price_step``
must not exceed its ``max_price``, nor a given price lie outside [0, ``max_price``].
``game`` takes the keys of a sweep file's ``[game]`` table, any
:class:`~edgesplit.config.GameSettings` field (``edgesplit defaults`` lists them); with
``"best_response": "exhaustive"``, ``crb_grid`` and ``rrb_grid`` default to the largest
server's ``crbs`` and ``rrbs``. The old ``"prices": "joint" | "separate"`` is refused
with the name of its replacement, ``joint_price``.

Counts must fit in int32 and the worst case over the devices and servers must keep
every utility finite in float64 (:func:`edgesplit.config.check_ranges`); a model's
cycles summed must be a finite float64. The file may be at most 16 MiB, nested at most
64 levels, and may not give a key twice in one object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from edgesplit.config import (
    GameSettings,
    check_price_step,
    check_ranges,
    check_setup_value,
    parse_game_settings,
    price_levels,
)
from edgesplit.errors import InputError
from edgesplit.game.algorithm1 import Status
from edgesplit.game.best_response import IDLE
from edgesplit.game.solve import Solution
from edgesplit.model.dnn import BUILTIN_PROFILES, DnnModel, builtin_model
from edgesplit.model.scenario import Devices, Scenario, Servers, stack_tables
from edgesplit.validation import load_json, nonempty_list, number, read_text, table

DEVICE_NUMBERS = ("cpu_hz", "arrival_rate", "reward", "delay_weight", "payment_weight")
SERVER_KEYS = (
    "crb_hz", "crbs", "rrbs", "cost_crb", "cost_rrb", "max_price", "price_step", "result_delay",
)  # fmt: skip
DEVICE_KEYS = ("model", *DEVICE_NUMBERS)
# Every device and server number is checked with the bounds of the Setup field of its
# name, or of this one.
SETUP_FIELD = {"arrival_rate": "mean_arrival_rate"}
RENAMED_GAME_KEYS = {"prices": 'renamed: use "joint_price": true (or false for separate prices)'}


@dataclass(frozen=True)
class ScenarioFile:
    """A checked scenario file."""

    scenario: Scenario  # float64
    device_models: tuple[str, ...]  # the model each device runs
    settings: GameSettings
    price_crb: np.ndarray | None  # (S,) the prices for --fixed-prices, if every server gives them
    price_rrb: np.ndarray | None


def read_scenario(path: str | Path) -> ScenarioFile:
    return parse_scenario(load_json(read_text(path), str(path)))


def parse_scenario(data) -> ScenarioFile:
    """Check a scenario given as parsed JSON and build its arrays."""
    if not isinstance(data, dict):
        raise InputError("scenario", f"must be a JSON object, got {type(data).__name__}")
    table(
        data, "", required=("devices", "servers", "rate_per_rrb"),
        optional=("models", "game", "source"),
    )  # fmt: skip
    if not isinstance(data.get("source", {}), dict):
        raise InputError("source", "must be an object (where the scenario came from)")
    models = _parse_models(data.get("models", {}))
    devices = nonempty_list(data["devices"], "devices")
    servers = nonempty_list(data["servers"], "servers")

    device_models, device_rows = [], []
    for m, raw in enumerate(devices):
        where = f"devices[{m}]"
        table(raw, where, required=DEVICE_KEYS)
        name = raw["model"]
        if not isinstance(name, str):
            raise InputError(f"{where}.model", f"must be a model name, got {name!r}")
        if name not in models and name not in BUILTIN_PROFILES:
            known = ", ".join(sorted(set(models) | set(BUILTIN_PROFILES)))
            raise InputError(f"{where}.model", f"unknown model {name!r} (known: {known})")
        device_models.append(name)
        device_rows.append(_setup_values(raw, DEVICE_NUMBERS, where))

    server_rows, prices = [], []
    for s, raw in enumerate(servers):
        where = f"servers[{s}]"
        table(raw, where, required=SERVER_KEYS, optional=("price_crb", "price_rrb"))
        row = _setup_values(raw, SERVER_KEYS, where)
        server_rows.append(row)
        max_price = row[SERVER_KEYS.index("max_price")]
        check_price_step(row[SERVER_KEYS.index("price_step")], max_price, f"{where}.price_step")
        prices.append(
            tuple(
                number(raw[key], f"{where}.{key}", at_least=0, at_most=max_price)
                if key in raw
                else math.nan
                for key in ("price_crb", "price_rrb")
            )
        )

    _check_ranges(device_rows, server_rows)
    rates = _parse_rates(data["rate_per_rrb"], len(devices), len(servers))
    device_cycles, server_cycles, sent_bits, num_layers = stack_tables(
        [models[name] if name in models else builtin_model(name) for name in device_models]
    )
    cpu_hz, arrival, reward, delay_w, payment_w = np.array(device_rows, dtype=np.float64).T
    scenario = Scenario(
        devices=Devices(
            cpu_hz=jnp.asarray(cpu_hz),
            arrival_rate=jnp.asarray(arrival),
            reward=jnp.asarray(reward),
            delay_weight=jnp.asarray(delay_w),
            payment_weight=jnp.asarray(payment_w),
            device_cycles=jnp.asarray(device_cycles),
            server_cycles=jnp.asarray(server_cycles),
            sent_bits=jnp.asarray(sent_bits),
            num_layers=jnp.asarray(num_layers),
            active=jnp.ones(len(devices), bool),
        ),
        servers=_servers(server_rows),
        rate_per_rrb=jnp.asarray(rates),
    )
    prices = np.array(prices, dtype=np.float64)
    given = not np.isnan(prices).any()
    return ScenarioFile(
        scenario=scenario,
        device_models=tuple(device_models),
        settings=_parse_game(data.get("game", {}), scenario.servers),
        price_crb=prices[:, 0] if given else None,
        price_rrb=prices[:, 1] if given else None,
    )


def fixed_prices(parsed: ScenarioFile) -> tuple[np.ndarray, np.ndarray]:
    """The prices given in the file, required on every server for ``--fixed-prices``."""
    if parsed.price_crb is None:
        raise InputError("servers[].price_crb", "every server needs price_crb and price_rrb")
    return parsed.price_crb, parsed.price_rrb


def _setup_values(raw: dict, keys: tuple[str, ...], where: str) -> tuple:
    """``raw``'s numbers at ``keys``, each within the bounds of its Setup field."""
    return tuple(
        check_setup_value(SETUP_FIELD.get(key, key), raw[key], f"{where}.{key}") for key in keys
    )


def _check_ranges(device_rows: list[tuple], server_rows: list[tuple]) -> None:
    """:func:`~edgesplit.config.check_ranges` at each server, with the device of the
    largest reward × arrival rate and the largest payment weight: each rule takes its
    device numbers from one device, so this is the worst case of every pair."""
    index = {key: i for i, key in enumerate(DEVICE_NUMBERS)}

    def given(m: int, key: str) -> tuple[float, str]:
        return device_rows[m][index[key]], f"devices[{m}].{key}"

    def value(m: int, key: str) -> float:
        return float(device_rows[m][index[key]])

    devices = range(len(device_rows))
    reward = max(devices, key=lambda m: value(m, "reward") * value(m, "arrival_rate"))
    paying = max(devices, key=lambda m: value(m, "payment_weight"))
    worst = {
        "num_devices": (len(device_rows), "devices"),
        "reward": given(reward, "reward"),
        "mean_arrival_rate": given(reward, "arrival_rate"),
        "arrival_spread": (0.0, "devices"),
        "payment_weight": given(paying, "payment_weight"),
    }
    for s, row in enumerate(server_rows):
        numbers = {
            key: (value, f"servers[{s}].{key}") for key, value in zip(SERVER_KEYS, row, strict=True)
        }
        check_ranges({**worst, **numbers}, "float64")


def _servers(rows) -> Servers:
    columns = list(zip(*rows, strict=True))
    floats = lambda i: jnp.asarray(np.array(columns[i], dtype=np.float64))  # noqa: E731
    return Servers(
        crb_hz=floats(0),
        crbs=jnp.asarray(np.array(columns[1], dtype=np.int32)),
        rrbs=jnp.asarray(np.array(columns[2], dtype=np.int32)),
        cost_crb=floats(3),
        cost_rrb=floats(4),
        max_price=floats(5),
        price_step=floats(6),
        result_delay=floats(7),
        active=jnp.ones(len(rows), bool),
    )


def _parse_models(raw) -> dict[str, DnnModel]:
    if not isinstance(raw, dict):
        raise InputError("models", f"must be an object of named models, got {type(raw).__name__}")
    models = {}
    for name, spec in raw.items():
        where = f"models.{name}"
        table(spec, where, required=("input_bits", "layers"))
        layers = nonempty_list(spec["layers"], f"{where}.layers")
        for j, layer in enumerate(layers):
            table(layer, f"{where}.layers[{j}]", required=("name", "cycles", "output_bits"))
        models[name] = DnnModel(
            name=name,
            layer_names=tuple(str(layer["name"]) for layer in layers),
            layer_cycles=tuple(layer["cycles"] for layer in layers),
            output_bits=tuple(layer["output_bits"] for layer in layers),
            input_bits=spec["input_bits"],
        )
    return models


def _parse_rates(raw, num_devices: int, num_servers: int) -> np.ndarray:
    rows = nonempty_list(raw, "rate_per_rrb")
    if len(rows) != num_devices:
        raise InputError(
            "rate_per_rrb", f"needs one row per device ({num_devices}), got {len(rows)}"
        )
    rates = np.empty((num_devices, num_servers))
    for m, row in enumerate(rows):
        if not isinstance(row, list) or len(row) != num_servers:
            raise InputError(f"rate_per_rrb[{m}]", f"needs one rate per server ({num_servers})")
        for s, value in enumerate(row):
            rates[m, s] = number(value, f"rate_per_rrb[{m}][{s}]", above=0)
    return rates


def _parse_game(raw, servers: Servers) -> GameSettings:
    for key, problem in RENAMED_GAME_KEYS.items():
        if isinstance(raw, dict) and key in raw:
            raise InputError(f"game.{key}", problem)
    levels = max(map(price_levels, servers.max_price.tolist(), servers.price_step.tolist()))
    return parse_game_settings(
        raw, "game", crbs=int(servers.crbs.max()), rrbs=int(servers.rrbs.max()),
        levels=levels, servers=servers.num_servers,
    )  # fmt: skip


def solution_to_json(solution: Solution) -> dict:
    """The JSON document ``edgesplit solve`` prints: strict JSON, every number finite.
    A value that is undefined (the server and split of an idle device, the delay of a
    device that processes nothing) is null, and so would be any float that is not finite,
    which the checks of the scenario's numbers rule out (see
    :func:`~edgesplit.config.check_ranges`)."""
    sol = {k: np.asarray(v) for k, v in vars(solution).items() if k != "devices"}
    dev = {k: np.asarray(v) for k, v in vars(solution.devices).items()}
    status = Status(int(sol["status"]))

    def maybe(value, missing: bool):
        return None if missing else value

    def finite(value) -> float | None:
        value = float(value)
        return value if math.isfinite(value) else None

    return {
        "devices": [
            {
                "server": maybe(int(dev["server"][m]), dev["server"][m] == IDLE),
                "split": maybe(int(dev["split"][m]), dev["split"][m] == IDLE),
                "crbs": int(dev["crbs"][m]),
                "rrbs": int(dev["rrbs"][m]),
                "utility": finite(dev["utility"][m]),
                "delay": maybe(finite(dev["delay"][m]), dev["split"][m] == IDLE),
                "cycle_utility": finite(sol["cycle_device_utility"][m]),
            }
            for m in range(len(dev["server"]))
        ],
        "servers": [
            {
                "price_crb": finite(sol["price_crb"][s]),
                "price_rrb": finite(sol["price_rrb"][s]),
                "utility": finite(sol["server_utility"][s]),
                "crbs_sold": int(sol["crbs_sold"][s]),
                "rrbs_sold": int(sol["rrbs_sold"][s]),
                "regret": finite(sol["server_regret"][s]),
                "cycle_utility": finite(sol["cycle_server_utility"][s]),
            }
            for s in range(len(sol["price_crb"]))
        ],
        "rounds": int(sol["rounds"]),
        "converged": None if status == Status.FIXED_PRICES else status == Status.CONVERGED,
        "status": status.label,
        "cycle_length": int(sol["cycle_length"]),
        "equilibria": maybe(int(sol["equilibria"]), sol["equilibria"] < 0),
        "certificate": finite(np.max([sol["device_violation"], *sol["server_regret"], 0.0])),
        "local_certificate": finite(max(sol["device_violation"], sol["local_server_violation"])),
        "device_violation": finite(sol["device_violation"]),
        "local_server_violation": finite(sol["local_server_violation"]),
    }
