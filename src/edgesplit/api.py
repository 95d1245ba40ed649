"""The public entry points to the engine (``edgesplit.solve``, ``solve_at_prices``,
``solve_batch`` and ``run``), each checking its arguments first with the rules of the
files: a scenario's numbers with the bounds of the :class:`~edgesplit.config.Setup`
fields of their names, the ranges that keep utilities finite
(:func:`~edgesplit.config.check_ranges`), prices within [0, max_price], the game
settings fitted to the scenario as a scenario file's are. Bad input is an
:class:`~edgesplit.errors.InputError` naming the argument
(``scenario.devices.arrival_rate[3]: must be > 0, got -1.0``), never an exception from
inside JAX.

Arrays traced under ``jax.jit`` or ``jax.vmap`` hold no values to check: their shapes
and dtypes are checked, their values are not, and the settings are used as given (so
``price_levels`` must be given for the grid certificate, ``best_response`` and
``enumerate``: :meth:`~edgesplit.config.GameSettings.fit_levels`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax
import numpy as np
import xarray as xr

from edgesplit.config import GameSettings, Setup, check_price_step, check_ranges, price_levels
from edgesplit.errors import InputError
from edgesplit.game import solve as single
from edgesplit.game.solve import Solution
from edgesplit.io.sweep_file import read_sweep
from edgesplit.model.scenario import Devices, Scenario, Servers
from edgesplit.model.schemes import Scheme
from edgesplit.sweep import batch as batched
from edgesplit.sweep import runner
from edgesplit.sweep.spec import Sweep
from edgesplit.validation import FLOAT_MAX, number, show

# Each device and server number and the Setup field whose bounds it has.
_DEVICE_NUMBERS = {
    "cpu_hz": "cpu_hz", "arrival_rate": "mean_arrival_rate", "reward": "reward",
    "delay_weight": "delay_weight", "payment_weight": "payment_weight",
}  # fmt: skip
_SERVER_NUMBERS = (
    "crb_hz", "crbs", "rrbs", "cost_crb", "cost_rrb", "max_price", "price_step", "result_delay",
)  # fmt: skip
_TABLES = ("device_cycles", "server_cycles", "sent_bits")
_BOUNDS = {f.name: f.metadata["bounds"] for f in dataclasses.fields(Setup)}


def solve(scenario: Scenario, scheme, settings: GameSettings = GameSettings()) -> Solution:
    """:func:`edgesplit.game.solve.solve`, its arguments checked: play the price game
    of ``settings.leader`` (default: Algorithm 1) on one scenario, unbatched, under
    ``scheme`` (a :class:`~edgesplit.model.schemes.Scheme`, its label or its int)."""
    return single.solve(scenario, *checked_game(scenario, scheme, settings))


def checked_game(scenario: Scenario, scheme, settings: GameSettings) -> tuple[Scheme, GameSettings]:
    """The scheme and the settings of one scenario's game, checked, and the settings
    fitted to its servers, as :func:`solve` checks them (so that whatever plays the game
    of one scenario, as :func:`~edgesplit.analysis.trace.trace` does, plays this one)."""
    settings = _settings(settings, scenario, "scenario", batch=False)
    return _scheme(scheme), settings


def solve_at_prices(
    scenario: Scenario, scheme, price_crb, price_rrb, settings: GameSettings = GameSettings()
) -> Solution:
    """:func:`edgesplit.game.solve.solve_at_prices`, its arguments checked: the devices'
    response to given prices, one CRB and one RRB price per server, each within
    [0, max_price]."""
    settings = _settings(settings, scenario, "scenario", batch=False)
    servers = scenario.servers
    prices = [_prices(p, name, servers) for p, name in ((price_crb, "price_crb"),
                                                        (price_rrb, "price_rrb"))]  # fmt: skip
    return single.solve_at_prices(scenario, _scheme(scheme), *prices, settings)


def solve_batch(
    scenarios: Scenario, scheme, settings: GameSettings = GameSettings(), lanes: int = 16
) -> Solution:
    """:func:`edgesplit.sweep.batch.solve_batch`, its arguments checked: a batch of
    scenarios (leading axis, at least one) under one ``scheme``, on ``lanes`` game
    lanes."""
    settings = _settings(settings, scenarios, "scenarios", batch=True)
    lanes = number(lanes, "lanes", at_least=1, integer=True)
    return batched.solve_batch(scenarios, _scheme(scheme), settings, lanes)


def run(
    sweep: Sweep | str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    progress: bool = False,
    batch: int | None = None,
) -> xr.Dataset:
    """:func:`edgesplit.sweep.runner.run` for a :class:`~edgesplit.sweep.spec.Sweep` or
    the path of a sweep file: its results as a Dataset, in memory, or in the store at
    ``out`` (created, or resumed when it was made by the same sweep) and opened."""
    if isinstance(sweep, str | os.PathLike):
        sweep = read_sweep(sweep)
    elif not isinstance(sweep, Sweep):
        raise InputError("sweep", f"must be a Sweep or a sweep file's path, got {show(sweep)}")
    if out is not None and not isinstance(out, str | os.PathLike):
        raise InputError("out", f"must be a store's path, got {show(out)}")
    if not isinstance(progress, bool):
        raise InputError("progress", f"must be true or false, got {show(progress)}")
    return runner.run(sweep, None if out is None else Path(out), progress=progress, batch=batch)


def _scheme(scheme):
    """A scheme as the kernels take it: a Scheme, from its label or int; an integer
    array (one scheme per scenario of a vmap) as it is, its values checked."""
    if isinstance(scheme, Scheme):
        return scheme
    if isinstance(scheme, str):
        try:
            return Scheme.parse(scheme)
        except ValueError as err:
            raise InputError("scheme", str(err)) from None
    labels = ", ".join(f"{s.label} ({int(s)})" for s in Scheme)
    if isinstance(scheme, int | np.integer) and not isinstance(scheme, bool):
        if int(scheme) not in set(Scheme):
            raise InputError("scheme", f"must be one of {labels}, got {scheme}")
        return Scheme(int(scheme))
    if isinstance(scheme, jax.Array | np.ndarray) and np.issubdtype(scheme.dtype, np.integer):
        if not _traced(scheme) and not np.isin(np.asarray(scheme), list(Scheme)).all():
            raise InputError("scheme", f"must hold schemes only: {labels}")
        return scheme
    raise InputError("scheme", f"must be a Scheme (or one of {labels}), got {show(scheme)}")


def _settings(settings, scenario, where: str, *, batch: bool) -> GameSettings:
    """``settings`` checked, and fitted to the scenario's servers as a scenario file's
    are (:func:`~edgesplit.config.parse_game_settings`), once ``scenario`` is checked."""
    if not isinstance(settings, GameSettings):
        raise InputError("settings", f"must be a GameSettings, got {type(settings).__name__}")
    servers = _check_scenario(scenario, where, batch=batch)
    if servers is None:  # traced: nothing to fit to
        return settings
    levels = max(map(price_levels, servers["max_price"].ravel(), servers["price_step"].ravel()))
    try:
        settings = settings.fit_grids(int(servers["crbs"].max()), int(servers["rrbs"].max()))
        return settings.fit_levels(levels, servers["crbs"].shape[-1])
    except InputError as err:
        raise InputError(f"settings.{err.field}", err.problem) from None


def _traced(array) -> bool:
    return isinstance(array, jax.core.Tracer)


def _check_scenario(scenario, where: str, *, batch: bool) -> dict[str, np.ndarray] | None:
    """Check ``scenario``'s shapes and dtypes, and its values unless traced; return the
    servers' numbers by name (None when traced)."""
    if not isinstance(scenario, Scenario):
        raise InputError(where, f"must be a Scenario, got {type(scenario).__name__}")
    lead = 1 if batch else 0
    parts = {"devices": (scenario.devices, Devices), "servers": (scenario.servers, Servers)}
    arrays = {}
    for part, (value, kind) in parts.items():
        if not isinstance(value, kind):
            raise InputError(f"{where}.{part}", f"must be {kind.__name__}, got {show(value)}")
        for f in dataclasses.fields(kind):
            arrays[f"{part}.{f.name}"] = getattr(value, f.name)
    arrays["rate_per_rrb"] = scenario.rate_per_rrb
    for name, array in arrays.items():
        if not hasattr(array, "shape") or not hasattr(array, "dtype"):
            raise InputError(f"{where}.{name}", f"must be an array, got {show(array)}")
    first = arrays["devices.cpu_hz"].shape
    if len(first) != lead + 1:
        expected = "(batch, devices)" if batch else "(devices,)"
        raise InputError(f"{where}.devices.cpu_hz", f"must have shape {expected}, got {first}")
    if batch and first[0] == 0:
        raise InputError(where, "the batch is empty")
    count, devices = first[:lead], first[lead]
    servers = arrays["servers.crb_hz"].shape[lead:][:1]
    splits = arrays["devices.device_cycles"].shape[lead + 1 :][:1]
    for name, array in arrays.items():
        part, _, field = name.rpartition(".")
        if name == "rate_per_rrb":
            shape = (*count, devices, *servers)
        elif part == "servers":
            shape = (*count, *servers)
        else:
            shape = (*count, devices, *(splits if field in _TABLES else ()))
        if array.shape != shape or 0 in array.shape or not servers or not splits:
            raise InputError(
                f"{where}.{name}", f"has shape {array.shape}, not that of the scenario's "
                f"{devices} devices, {(servers or (0,))[0]} servers and "
                f"{(splits or (0,))[0]} split points",
            )  # fmt: skip
        kind = _kind(field)
        if not np.issubdtype(array.dtype, kind):
            raise InputError(f"{where}.{name}", f"must hold {kind.__name__}s, got {array.dtype}")
    if any(_traced(array) for array in arrays.values()):
        return None
    values = {name: np.asarray(array) for name, array in arrays.items()}
    for field, setup_field in _DEVICE_NUMBERS.items():
        _check_values(
            values[f"devices.{field}"], f"{where}.devices.{field}", **_BOUNDS[setup_field]
        )
    for field in _SERVER_NUMBERS:
        _check_values(values[f"servers.{field}"], f"{where}.servers.{field}", **_BOUNDS[field])
    for field in _TABLES:
        _check_values(values[f"devices.{field}"], f"{where}.devices.{field}", at_least=0)
    _check_values(values["rate_per_rrb"], f"{where}.rate_per_rrb", above=0)
    layers = values["devices.num_layers"]
    _check_values(layers, f"{where}.devices.num_layers", at_least=1, at_most=splits[0] - 1)
    server = {field: values[f"servers.{field}"] for field in _SERVER_NUMBERS}
    too_fine = server["price_step"] > server["max_price"]
    if too_fine.any():
        at = np.unravel_index(np.argmax(too_fine), too_fine.shape)
        check_price_step(
            server["price_step"][at].item(), server["max_price"][at].item(),
            f"{where}.servers.price_step{_index(at)}",
        )  # fmt: skip
    check_ranges(_worst(values, where), "float64")
    return server


def _kind(field: str):
    if field == "active":
        return np.bool_
    if field in ("crbs", "rrbs", "num_layers"):
        return np.integer
    return np.floating


def _check_values(values: np.ndarray, where: str, **bounds) -> None:
    """Every element within ``bounds`` (:func:`~edgesplit.validation.number`'s, and
    within float64); the first that is not is refused with ``number``'s own line."""
    floats = values.astype(np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(floats) & (np.abs(floats) <= FLOAT_MAX["float64"])
        if "above" in bounds:
            ok &= floats > bounds["above"]
        if "at_least" in bounds:
            ok &= floats >= bounds["at_least"]
        if "at_most" in bounds:
            ok &= floats <= bounds["at_most"]
        if bounds.get("integer"):
            ok &= floats == np.round(floats)
    if ok.all():
        return
    at = np.unravel_index(np.argmin(ok), ok.shape)
    bad = values[at].item()
    number(bad, f"{where}{_index(at)}", **bounds)
    raise InputError(f"{where}{_index(at)}", f"must be finite and within range, got {show(bad)}")


def _index(at: tuple) -> str:
    """An element's index as a message names it: ``[3]``, ``[0][3]`` in a batch."""
    return "".join(f"[{int(i)}]" for i in at)


def _worst(values: dict[str, np.ndarray], where: str) -> dict[str, tuple[float, str]]:
    """The largest of each number over every device and server (the smallest price
    step), and where it is: the worst case :func:`~edgesplit.config.check_ranges`
    takes, as a sweep takes it over its grid."""

    def at(name: str, pick=np.argmax) -> tuple[float, str]:
        array = values[name]
        index = np.unravel_index(pick(array), array.shape)
        return array[index].item(), f"{where}.{name}{_index(index)}"

    arrival = values["devices.arrival_rate"]
    return {
        "num_devices": (arrival.shape[-1], f"{where}.devices"),
        "reward": at("devices.reward"),
        "mean_arrival_rate": at("devices.arrival_rate"),
        "arrival_spread": (0.0, f"{where}.devices"),
        "payment_weight": at("devices.payment_weight"),
        **{f: at(f"servers.{f}") for f in _SERVER_NUMBERS if f != "price_step"},
        "price_step": at("servers.price_step", np.argmin),
    }


def _prices(prices, name: str, servers) -> jax.Array | np.ndarray:
    """One price per server, each within [0, max_price] (traced: the shape only)."""
    if not hasattr(prices, "shape"):
        try:
            prices = np.asarray(prices, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(name, f"must be one price per server, got {show(prices)}") from None
    shape = servers.crb_hz.shape
    if prices.shape != shape:
        raise InputError(name, f"must be one price per server, shape {shape}, got {prices.shape}")
    if _traced(prices) or _traced(servers.max_price):
        return prices
    tops = np.asarray(servers.max_price)
    for s, (price, top) in enumerate(zip(np.asarray(prices).tolist(), tops.tolist(), strict=True)):
        number(price, f"{name}[{s}]", at_least=0, at_most=top)
    return prices
