"""A sweep: what to solve (a base setup, the axes, the schemes, the game) and how it is
cut into chunks. :mod:`edgesplit.io.sweep_file` reads one from TOML.

A :class:`Sweep` is checked whenever one is made, by a sweep file, ``Sweep(...)`` or
:meth:`Sweep.replace`: one set of rules, whose errors name the sweep file's keys
(``chunk``, ``setup.crbs``, ``axes.mean_arrival_rate[2]``, ``game.price_levels``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field

from edgesplit.config import (
    MAX_TOPOLOGIES,
    GameSettings,
    Setup,
    check_float_range,
    check_price_step,
    check_ranges,
    check_setup_value,
    price_levels,
)
from edgesplit.errors import InputError
from edgesplit.model.dnn import DnnModel
from edgesplit.model.schemes import Scheme
from edgesplit.validation import FLOAT_MAX, choice, number, show

PRECISIONS = ("float64", "float32")

GAME_AXES = ("leader", "update", "joint_price")
"""The game settings a sweep may take as axes, beside the setup parameters."""

MAX_SEED = 2**63 - 1
"""The largest seed: ``jax.random.key`` takes an int64."""


@dataclass(frozen=True)
class Sweep:
    """A checked sweep (the topologies, grid and schemes to solve, in chunks).

    Made or changed (:meth:`replace`), it is checked with the rules of a sweep file;
    ``schemes`` may be given as labels, the axes' values as lists, and ``game`` is
    fitted to the grid (:meth:`~edgesplit.config.GameSettings.fit_grids`,
    :meth:`~edgesplit.config.GameSettings.fit_levels`)."""

    name: str
    description: str
    text: str  # the file as written, kept in the store for people (not its identity)
    schemes: tuple[Scheme, ...]
    topologies: int
    seed: int
    chunk: int
    precision: str
    setup: Setup  # the base setup, before the axes
    game: GameSettings  # the base game settings, before the game axes
    axes: dict[str, tuple]  # setup parameter -> grid values, in file order
    game_axes: dict[str, tuple] = field(default_factory=dict)  # game setting -> values

    def __post_init__(self):
        for name, value in _checked(self).items():
            object.__setattr__(self, name, value)

    @property
    def point_axes(self) -> dict[str, tuple]:
        """Every swept axis, as the store's dims hold them: the game settings' first (in
        file order), then the setup parameters'."""
        return {**self.game_axes, **self.axes}

    @property
    def games(self) -> tuple[GameSettings, ...]:
        """The game settings at each point of the game axes, in C order over them."""
        combinations = itertools.product(*self.game_axes.values())
        return tuple(
            self.game.replace(**dict(zip(self.game_axes, values, strict=True)))
            for values in combinations
        )

    @property
    def max_devices(self) -> int:
        return int(max(self.axes.get("num_devices", (self.setup.num_devices,))))

    @property
    def max_servers(self) -> int:
        return int(max(self.axes.get("num_servers", (self.setup.num_servers,))))

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Values of each axis of :attr:`point_axes`."""
        return tuple(len(values) for values in self.point_axes.values())

    @property
    def setup_points(self) -> int:
        """Points of the setup parameters' grid: the topologies sampled per topology index."""
        return math.prod(len(values) for values in self.axes.values())

    @property
    def solves_per_chunk(self) -> int:
        return self.chunk * math.prod(self.grid_shape) * len(self.schemes)

    @property
    def num_chunks(self) -> int:
        return -(-self.topologies // self.chunk)

    def replace(self, **changes) -> Sweep:
        """This sweep with ``changes``, checked (an InputError names what is wrong)."""
        unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise InputError(unknown[0], "is not a field of Sweep")
        return dataclasses.replace(self, **changes)

    def chunk_range(self, index: int) -> range:
        """The topologies of chunk ``index``: ``chunk`` of them, fewer in the last chunk."""
        start = index * self.chunk
        return range(start, min(start + self.chunk, self.topologies))


def _checked(sweep: Sweep) -> dict:
    """Every field of ``sweep`` checked, in the form the sweep holds it; an InputError
    names the first that is wrong."""
    name = sweep.name
    if not isinstance(name, str) or not name or "/" in name or not name.isprintable():
        raise InputError(
            "name", f"must be a non-empty string without '/' or control characters, got {name!r}"
        )
    for text in ("description", "text"):
        if not isinstance(getattr(sweep, text), str):
            raise InputError(text, f"must be a string, got {show(getattr(sweep, text))}")
    topologies = number(
        sweep.topologies, "topologies", at_least=1, at_most=MAX_TOPOLOGIES, integer=True
    )
    chunk = number(sweep.chunk, "chunk", at_least=1, integer=True)
    if chunk > topologies:
        raise InputError("chunk", f"must be <= topologies ({topologies}), got {chunk}")
    precision = choice(sweep.precision, "precision", PRECISIONS)
    axes = _axes(sweep.axes, precision)
    game_axes = _game_axes(sweep.game_axes)
    setup = sweep.setup
    if not isinstance(setup, Setup):
        raise InputError("setup", f"must be a Setup, got {type(setup).__name__}")
    _check_setup(setup, axes, precision)
    if not isinstance(sweep.game, GameSettings):
        raise InputError("game", f"must be a GameSettings, got {type(sweep.game).__name__}")
    return {
        "topologies": topologies,
        "chunk": chunk,
        "schemes": _schemes(sweep.schemes),
        "seed": number(sweep.seed, "seed", at_least=0, at_most=MAX_SEED, integer=True),
        "axes": axes,
        "game_axes": game_axes,
        "game": _fitted_game(sweep.game, setup, axes, game_axes, precision),
    }


def _sequence(values, where: str) -> tuple:
    if isinstance(values, str) or not isinstance(values, list | tuple):
        raise InputError(where, f"must be a list, got {type(values).__name__}")
    if not values:
        raise InputError(where, "must not be empty")
    return tuple(values)


def _schemes(raw) -> tuple[Scheme, ...]:
    labels = [s.label for s in Scheme]
    schemes = []
    for i, scheme in enumerate(_sequence(raw, "schemes")):
        if not isinstance(scheme, Scheme):
            scheme = Scheme.parse(choice(scheme, f"schemes[{i}]", labels))
        schemes.append(scheme)
    if len(set(schemes)) != len(schemes):
        raise InputError("schemes", "lists a scheme twice")
    return tuple(schemes)


def _axes(raw, precision: str) -> dict[str, tuple]:
    """The setup parameters' axes, each value checked as the parameter is."""
    numeric = [f.name for f in dataclasses.fields(Setup) if not f.metadata["static"]]
    axes = {}
    for key, values in _mapping(raw, "axes").items():
        where = f"axes.{key}"
        if key not in numeric:
            raise InputError(where, f"unknown key (known: {', '.join(sorted(numeric))})")
        axes[key] = tuple(
            check_setup_value(key, v, f"{where}[{i}]", precision)
            for i, v in enumerate(_sequence(values, where))
        )
        _unique(axes[key], where)
    return axes


def _game_axes(raw) -> dict[str, tuple]:
    """The game settings' axes, each value checked as the setting itself would be."""
    game_axes = {}
    for key, values in _mapping(raw, "axes").items():
        where = f"axes.{key}"
        if key not in GAME_AXES:
            raise InputError(where, f"unknown key (known: {', '.join(GAME_AXES)})")
        checked = []
        for i, value in enumerate(_sequence(values, where)):
            try:
                GameSettings(**{key: value})
            except InputError as err:
                raise InputError(f"{where}[{i}]", err.problem) from None
            checked.append(value)
        game_axes[key] = tuple(checked)
        _unique(game_axes[key], where)
    return game_axes


def _mapping(raw, where: str) -> dict:
    if not isinstance(raw, dict):
        raise InputError(where, f"must be a table/object, got {type(raw).__name__}")
    return raw


def _unique(values: tuple, where: str) -> None:
    if len(set(values)) != len(values):
        raise InputError(where, "repeats a value")


def _check_setup(setup: Setup, axes: dict, precision: str) -> None:
    """The base setup's numbers (those no axis replaces) and models within the range of
    ``precision``, and the rules between fields over the whole grid."""
    for f in dataclasses.fields(Setup):
        bounds = f.metadata["bounds"]
        if f.name not in axes and not f.metadata["static"] and not bounds.get("integer"):
            check_float_range(getattr(setup, f.name), f"setup.{f.name}", precision)
    for i, model in enumerate(setup.models):
        if not isinstance(model, DnnModel):
            continue  # built in: far within float32
        largest = max(model.total_cycles, model.largest_bits)
        if largest > FLOAT_MAX[precision]:
            raise InputError(
                f"setup.models[{i}]",
                f"its cycles summed or its bits ({show(largest)}) exceed the range of {precision}",
            )
    steps = axes.get("price_step", (setup.price_step,))
    tops = axes.get("max_price", (setup.max_price,))
    check_price_step(max(steps), min(tops), "price_step")
    check_ranges(_worst_case(setup, axes), precision)


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


def _fitted_game(
    game: GameSettings, setup: Setup, axes: dict, game_axes: dict, precision: str
) -> GameSettings:
    """The base game settings fitted to the grid, such that every point of the game axes
    is valid settings too."""

    def values(key):
        return axes.get(key, (getattr(setup, key),))

    levels = price_levels(max(values("max_price")), min(values("price_step")))
    servers = int(max(values("num_servers")))
    try:
        game = game.fit_grids(int(max(values("crbs"))), int(max(values("rrbs"))))
        game = game.fit_levels(levels, servers)
        check_float_range(game.min_gain, "min_gain", precision)
    except InputError as err:
        raise InputError(f"game.{err.field}", err.problem) from None
    for point in itertools.product(*game_axes.values()):
        combination = dict(zip(game_axes, point, strict=True))
        try:
            game.replace(**combination).fit_levels(levels, servers)
        except InputError as err:
            axis = err.field if err.field in game_axes else next(iter(game_axes))
            shown = ", ".join(f"{k} = {v!r}" for k, v in combination.items())
            raise InputError(f"axes.{axis}", f"at {shown}: {err.problem}") from None
    return game
