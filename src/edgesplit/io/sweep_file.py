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
import tomllib
from pathlib import Path

from edgesplit.config import GameSettings, Setup, read_profile_model
from edgesplit.errors import InputError
from edgesplit.model.schemes import Scheme
from edgesplit.sweep.spec import GAME_AXES, Sweep
from edgesplit.validation import check_nesting, nonempty_list, number, read_text, table

TOP_KEYS = ("name", "description", "schemes", "topologies", "seed", "chunk", "precision")
SECTIONS = ("setup", "game", "axes")


def read_sweep(path: str | Path) -> Sweep:
    path = Path(path)
    return parse_sweep(read_text(path), default_name=path.stem, base_dir=path.parent)


def parse_sweep(text: str, default_name: str = "sweep", base_dir: Path = Path(".")) -> Sweep:
    """The sweep of a file's ``text``; profile paths are relative to ``base_dir``.

    The file's structure (tables, keys, lists) is checked here; its values by
    :class:`~edgesplit.config.Setup`, :class:`~edgesplit.config.GameSettings` and
    :class:`~edgesplit.sweep.spec.Sweep`, as they are for the Python API."""
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
    raw_axes = data.get("axes", {})
    if not isinstance(raw_axes, dict):
        raise InputError("axes", f"must be a table, got {type(raw_axes).__name__}")
    game_axes = {k: v for k, v in raw_axes.items() if k in GAME_AXES}
    chunk = data.get("chunk")
    if chunk is None:  # every topology in one chunk, up to 100
        chunk = min(number(data["topologies"], "topologies", at_least=1, integer=True), 100)
    return Sweep(
        name=data.get("name", default_name),
        description=data.get("description", ""),
        text=text,
        schemes=data.get("schemes", [s.label for s in Scheme]),
        topologies=data["topologies"],
        seed=data["seed"],
        chunk=chunk,
        precision=data.get("precision", "float64"),
        setup=_parse_setup(data.get("setup", {}), raw_axes, base_dir),
        game=_parse_game(data.get("game", {}), game_axes),
        axes={k: v for k, v in raw_axes.items() if k not in GAME_AXES},
        game_axes=game_axes,
    )


def _parse_setup(raw, axes: dict, base_dir: Path) -> Setup:
    table(raw, "setup", optional=[f.name for f in dataclasses.fields(Setup)])
    values = dict(raw)
    for key in raw:
        if key in axes:
            raise InputError(f"setup.{key}", "is also an axis; give it in one place")
    if "models" in raw:
        values["models"] = _parse_models(raw["models"], base_dir)
    try:
        return Setup(**values)
    except InputError as err:
        raise InputError(f"setup.{err.field}", err.problem) from None


def _parse_models(raw, base_dir: Path) -> tuple:
    """Built-in names as they are; each profile (a .csv or .json path, relative to the
    sweep file) read into a model named by its path as the file gives it."""
    names = nonempty_list(raw, "setup.models")
    models = []
    for i, name in enumerate(names):
        where = f"setup.models[{i}]"
        if not isinstance(name, str):
            raise InputError(where, f"must be a model name or profile path, got {name!r}")
        if Path(name).suffix.lower() in (".csv", ".json"):
            name = read_profile_model(name, where, base_dir)
        models.append(name)
    return tuple(models)


def _parse_game(raw, game_axes: dict) -> GameSettings:
    table(raw, "game", optional=[f.name for f in dataclasses.fields(GameSettings)])
    for key in game_axes:
        if key in raw:
            raise InputError(f"game.{key}", "is also an axis; give it in one place")
    try:
        return GameSettings(**raw)
    except InputError as err:
        raise InputError(f"game.{err.field}", err.problem) from None
