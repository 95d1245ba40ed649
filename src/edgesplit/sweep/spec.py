"""A sweep: what to solve (a base setup, the axes, the schemes, the game) and how it is
cut into chunks. :mod:`edgesplit.io.sweep_file` reads one from TOML."""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field

from edgesplit.config import GameSettings, Setup
from edgesplit.model.schemes import Scheme


@dataclass(frozen=True)
class Sweep:
    """A checked sweep (the topologies, grid and schemes to solve, in chunks)."""

    name: str
    description: str
    text: str  # the file as written, kept in the store
    schemes: tuple[Scheme, ...]
    topologies: int
    seed: int
    chunk: int
    precision: str
    setup: Setup  # the base setup, before the axes
    game: GameSettings  # the base game settings, before the game axes
    axes: dict[str, tuple]  # setup parameter -> grid values, in file order
    game_axes: dict[str, tuple] = field(default_factory=dict)  # game setting -> values

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
        return dataclasses.replace(self, **changes)

    def chunk_range(self, index: int) -> range:
        """The topologies of chunk ``index``: ``chunk`` of them, fewer in the last chunk."""
        start = index * self.chunk
        return range(start, min(start + self.chunk, self.topologies))
