"""Sweep files (TOML): a base setup, the axes to sweep, the schemes and the sample size.

::

    name = "fig3"                  # names the default store, results/fig3.zarr
    description = "..."            # optional
    schemes = ["proposed", "edge_only", "heuristic", "user_only"]   # default: all four
    topologies = 1000              # random topologies per grid point
    seed = 3                       # topology t uses jax.random.fold_in(key(seed), t)
    chunk = 100                    # topologies solved per compiled call and per store chunk
    precision = "float64"          # or "float32"

    [setup]                        # any edgesplit.config.Setup field; defaults elsewhere
    num_devices = 20
    models = ["alexnet", "asr", "face"]   # built-in names or .csv/.json profile paths

    [game]                         # any edgesplit.config.GameSettings field
    update = "simultaneous"

    [axes]                         # swept parameters: every combination is a grid point
    mean_arrival_rate = [2, 4, 6, 8, 10]

Every key is checked: unknown keys, wrong types, empty or repeated grids and values
outside a parameter's range are refused with one line naming the key. So are counts
beyond int32, numbers beyond the range of the sweep's precision, and grids whose worst
case overflows a product (:func:`edgesplit.config.check_ranges`); a file above
16 MiB or nested deeper than 64 levels is refused before it is parsed.
"""

from __future__ import annotations

import dataclasses
import itertools
import tomllib
from pathlib import Path

from edgesplit.config import (
    MAX_TOPOLOGIES,
    GameSettings,
    Setup,
    check_price_step,
    check_ranges,
    check_setup_value,
    parse_game_settings,
    price_levels,
)
from edgesplit.errors import InputError
from edgesplit.model.dnn import resolve_model
from edgesplit.model.schemes import Scheme
from edgesplit.sweep.spec import Sweep
from edgesplit.validation import (
    FLOAT_MAX,
    check_nesting,
    choice,
    nonempty_list,
    number,
    read_text,
    show,
    table,
)

TOP_KEYS = ("name", "description", "schemes", "topologies", "seed", "chunk", "precision")
SECTIONS = ("setup", "game", "axes")
PRECISIONS = ("float64", "float32")


def read_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    return parse_sweep(read_text(path), default_name=path.stem, base_dir=path.parent)


def parse_sweep(text: str, default_name: str = "sweep", base_dir: Path = Path(".")) -> Sweep:
    check_nesting(text, "sweep", "TOML")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise InputError("sweep", f"not valid TOML: {err}") from None
    except RecursionError:  # not reached past check_nesting; kept as a last guard
        raise InputError("sweep", "nested too deeply") from None
    except ValueError as err:  # an integer of more digits than Python converts
        raise InputError("sweep", f"not valid TOML: {str(err).split(';')[0]}") from None
    table(
        data, "", required=("topologies", "seed"), optional=TOP_KEYS[:4] + TOP_KEYS[5:] + SECTIONS
    )

    name = data.get("name", default_name)
    if not isinstance(name, str) or not name or "/" in name:
        raise InputError("name", f"must be a non-empty string without '/', got {name!r}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise InputError("description", "must be a string")
    topologies = number(
        data["topologies"], "topologies", at_least=1, at_most=MAX_TOPOLOGIES, integer=True
    )
    chunk = number(data.get("chunk", min(topologies, 100)), "chunk", at_least=1, integer=True)
    if chunk > topologies:
        raise InputError("chunk", f"must be <= topologies ({topologies}), got {chunk}")

    precision = choice(data.get("precision", "float64"), "precision", PRECISIONS)
    axes, game_axes = _parse_axes(data.get("axes", {}), precision)
    setup = _parse_setup(data.get("setup", {}), axes, base_dir, precision)
    return Sweep(
        name=name,
        description=description,
        text=text,
        schemes=_parse_schemes(data.get("schemes", [s.label for s in Scheme])),
        topologies=topologies,
        seed=number(data["seed"], "seed", at_least=0, at_most=2**63 - 1, integer=True),
        chunk=chunk,
        precision=precision,
        setup=setup,
        game=_parse_game(data.get("game", {}), setup, axes, game_axes, precision),
        axes=axes,
        game_axes=game_axes,
    )


def _parse_schemes(raw) -> tuple[Scheme, ...]:
    names = nonempty_list(raw, "schemes")
    for i, name in enumerate(names):
        choice(name, f"schemes[{i}]", [s.label for s in Scheme])
    if len(set(names)) != len(names):
        raise InputError("schemes", "lists a scheme twice")
    return tuple(Scheme.parse(name) for name in names)


def _parse_setup(raw, axes: dict, base_dir: Path, precision: str) -> Setup:
    table(raw, "setup", optional=[f.name for f in dataclasses.fields(Setup)])
    values = {}
    for key, value in raw.items():
        where = f"setup.{key}"
        if key in axes:
            raise InputError(where, "is also an axis; give it in one place")
        if key == "models":
            values[key] = _parse_models(value, base_dir, precision)
        else:
            values[key] = check_setup_value(key, value, where, precision)
    setup = Setup(**values)
    _check_price_step(setup, axes)
    check_ranges(_worst_case(setup, axes), precision)
    return setup


def _worst_case(setup: Setup, axes: dict) -> dict[str, tuple[float, str]]:
    """Each numeric field's largest value over the grid (price_step's smallest) and where
    it is given: the grid holds every combination, so products of these are attained."""
    worst = {}
    for f in dataclasses.fields(Setup):
        if f.metadata["static"]:
            continue
        if f.name in axes:
            given = [(v, f"axes.{f.name}[{i}]") for i, v in enumerate(axes[f.name])]
        else:
            given = [(getattr(setup, f.name), f"setup.{f.name}")]
        pick = min if f.name == "price_step" else max
        worst[f.name] = pick(given, key=lambda item: item[0])
    return worst


def _parse_models(raw, base_dir: Path, precision: str) -> tuple[str, ...]:
    names = nonempty_list(raw, "setup.models")
    resolved = []
    for i, name in enumerate(names):
        where = f"setup.models[{i}]"
        if not isinstance(name, str):
            raise InputError(where, f"must be a model name or profile path, got {name!r}")
        given = name
        if Path(name).suffix.lower() in (".csv", ".json"):
            name = str((base_dir / name).resolve())
        try:
            model = resolve_model(name)
        except InputError as err:
            if err.field == "model":  # a name neither built in nor a profile's
                raise InputError(where, err.problem) from None
            # A profile's error names its cell, with the path as the sweep file gives it.
            cell = given + err.field[len(name) :] if err.field.startswith(name) else err.field
            raise InputError(where, f"{cell}: {err.problem}") from None
        largest = max(model.total_cycles, model.largest_bits)
        if largest > FLOAT_MAX[precision]:
            raise InputError(
                where,
                f"its cycles summed or its bits ({show(largest)}) exceed the range of {precision}",
            )
        resolved.append(name)
    return tuple(resolved)


GAME_AXES = ("leader", "update", "joint_price")
"""The game settings a sweep may take as axes, beside the setup parameters."""


def _parse_axes(raw, precision: str) -> tuple[dict[str, tuple], dict[str, tuple]]:
    """The setup parameters' axes and the game settings' axes, each in file order."""
    fields = {f.name: f for f in dataclasses.fields(Setup)}
    numeric = [name for name, f in fields.items() if not f.metadata["static"]]
    table(raw, "axes", optional=numeric + list(GAME_AXES))
    axes, game_axes = {}, {}
    for key, values in raw.items():
        where = f"axes.{key}"
        values = nonempty_list(values, where)
        if key in GAME_AXES:
            checked = tuple(_game_value(key, v, f"{where}[{i}]") for i, v in enumerate(values))
            game_axes[key] = checked
        else:
            checked = tuple(
                check_setup_value(key, v, f"{where}[{i}]", precision) for i, v in enumerate(values)
            )
            axes[key] = checked
        if len(set(checked)) != len(checked):
            raise InputError(where, "repeats a value")
    return axes, game_axes


def _game_value(key: str, value, where: str):
    """One value of a game axis, checked as the setting itself would be."""
    try:
        GameSettings(**{key: value})
    except InputError as err:
        raise InputError(where, err.problem) from None
    return value


def _check_price_step(setup: Setup, axes: dict) -> None:
    steps = axes.get("price_step", (setup.price_step,))
    tops = axes.get("max_price", (setup.max_price,))
    check_price_step(max(steps), min(tops), "price_step")


def _parse_game(raw, setup: Setup, axes: dict, game_axes: dict, precision: str) -> GameSettings:
    """The base game settings, fitted to the grid, such that every point of the game axes
    is valid settings too."""

    def values(key):
        return axes.get(key, (getattr(setup, key),))

    for key in game_axes:
        if isinstance(raw, dict) and key in raw:
            raise InputError(f"game.{key}", "is also an axis; give it in one place")
    largest = {key: int(max(values(key))) for key in ("crbs", "rrbs")}
    levels = price_levels(max(values("max_price")), min(values("price_step")))
    servers = int(max(values("num_servers")))
    game = parse_game_settings(
        raw, "game", **largest, levels=levels, servers=servers, precision=precision
    )
    for point in itertools.product(*game_axes.values()):
        combination = dict(zip(game_axes, point, strict=True))
        try:
            game.replace(**combination).fit_levels(levels, servers)
        except InputError as err:
            axis = err.field if err.field in game_axes else next(iter(game_axes))
            shown = ", ".join(f"{k} = {v!r}" for k, v in combination.items())
            raise InputError(f"axes.{axis}", f"at {shown}: {err.problem}") from None
    return game
