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
      "game": {"update": "simultaneous", "prices": "joint", "max_rounds": 2000,
               "min_gain": 1e-6}
    }

``models`` and ``game`` are optional; a device's ``model`` names an entry of
``models`` or a built-in model (alexnet, asr, face, vgg). ``price_crb`` and
``price_rrb`` are needed only with ``--fixed-prices``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from edgesplit.config import GameSettings
from edgesplit.errors import InputError
from edgesplit.game.best_response import IDLE
from edgesplit.game.price_game import Status
from edgesplit.game.solve import Solution
from edgesplit.model.dnn import BUILTIN_PROFILES, DnnModel, builtin_model
from edgesplit.model.scenario import Devices, Scenario, Servers, stack_tables
from edgesplit.validation import choice, load_json, nonempty_list, number, read_text, table

DEVICE_KEYS = ("model", "cpu_hz", "arrival_rate", "reward", "delay_weight", "payment_weight")
SERVER_KEYS = (
    "crb_hz", "crbs", "rrbs", "cost_crb", "cost_rrb", "max_price", "price_step", "result_delay",
)  # fmt: skip
GAME_KEYS = ("update", "prices", "max_rounds", "min_gain")


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
    table(data, "", required=("devices", "servers", "rate_per_rrb"), optional=("models", "game"))
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
        device_rows.append(
            (
                number(raw["cpu_hz"], f"{where}.cpu_hz", above=0),
                number(raw["arrival_rate"], f"{where}.arrival_rate", above=0),
                number(raw["reward"], f"{where}.reward", at_least=0),
                number(raw["delay_weight"], f"{where}.delay_weight", at_least=0),
                number(raw["payment_weight"], f"{where}.payment_weight", at_least=0),
            )
        )

    server_rows, prices = [], []
    for s, raw in enumerate(servers):
        where = f"servers[{s}]"
        table(raw, where, required=SERVER_KEYS, optional=("price_crb", "price_rrb"))
        max_price = number(raw["max_price"], f"{where}.max_price", above=0)
        server_rows.append(
            (
                number(raw["crb_hz"], f"{where}.crb_hz", above=0),
                number(raw["crbs"], f"{where}.crbs", at_least=1, integer=True),
                number(raw["rrbs"], f"{where}.rrbs", at_least=1, integer=True),
                number(raw["cost_crb"], f"{where}.cost_crb", at_least=0),
                number(raw["cost_rrb"], f"{where}.cost_rrb", at_least=0),
                max_price,
                number(raw["price_step"], f"{where}.price_step", above=0),
                number(raw["result_delay"], f"{where}.result_delay", at_least=0),
            )
        )
        prices.append(
            tuple(
                number(raw[key], f"{where}.{key}", at_least=0, at_most=max_price)
                if key in raw
                else math.nan
                for key in ("price_crb", "price_rrb")
            )
        )

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
        settings=_parse_game(data.get("game", {})),
        price_crb=prices[:, 0] if given else None,
        price_rrb=prices[:, 1] if given else None,
    )


def fixed_prices(parsed: ScenarioFile) -> tuple[np.ndarray, np.ndarray]:
    """The prices given in the file, required on every server for ``--fixed-prices``."""
    if parsed.price_crb is None:
        raise InputError("servers[].price_crb", "every server needs price_crb and price_rrb")
    return parsed.price_crb, parsed.price_rrb


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


def _parse_game(raw) -> GameSettings:
    table(raw, "game", optional=GAME_KEYS)
    defaults = GameSettings()
    prices = choice(raw.get("prices", "joint"), "game.prices", ("joint", "separate"))
    return GameSettings(
        update=choice(
            raw.get("update", defaults.update), "game.update", ("simultaneous", "sequential")
        ),
        joint_price=prices == "joint",
        max_rounds=number(
            raw.get("max_rounds", defaults.max_rounds), "game.max_rounds", at_least=1, integer=True
        ),
        min_gain=number(raw.get("min_gain", defaults.min_gain), "game.min_gain", at_least=0),
    )


def solution_to_json(solution: Solution) -> dict:
    """The JSON document ``edgesplit solve`` prints."""
    sol = {k: np.asarray(v) for k, v in vars(solution).items() if k != "devices"}
    dev = {k: np.asarray(v) for k, v in vars(solution.devices).items()}
    status = Status(int(sol["status"]))

    def maybe(value, missing: bool):
        return None if missing else value

    return {
        "devices": [
            {
                "server": maybe(int(dev["server"][m]), dev["server"][m] == IDLE),
                "split": maybe(int(dev["split"][m]), dev["split"][m] == IDLE),
                "crbs": int(dev["crbs"][m]),
                "rrbs": int(dev["rrbs"][m]),
                "utility": float(dev["utility"][m]),
                "delay": maybe(float(dev["delay"][m]), dev["split"][m] == IDLE),
            }
            for m in range(len(dev["server"]))
        ],
        "servers": [
            {
                "price_crb": float(sol["price_crb"][s]),
                "price_rrb": float(sol["price_rrb"][s]),
                "utility": float(sol["server_utility"][s]),
                "crbs_sold": int(sol["crbs_sold"][s]),
                "rrbs_sold": int(sol["rrbs_sold"][s]),
            }
            for s in range(len(sol["price_crb"]))
        ],
        "rounds": int(sol["rounds"]),
        "converged": None if status == Status.FIXED_PRICES else status == Status.CONVERGED,
        "status": status.label,
        "certificate": float(max(sol["device_violation"], sol["server_violation"])),
        "device_violation": float(sol["device_violation"]),
        "server_violation": float(sol["server_violation"]),
    }
