"""A sweep: what to solve (a base setup, the axes, the schemes, the game) and how it is
cut into chunks. :mod:`edgesplit.io.sweep_file` reads one from TOML."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

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
    game: GameSettings
    axes: dict[str, tuple]  # parameter -> grid values, in file order

    @property
    def max_devices(self) -> int:
        return int(max(self.axes.get("num_devices", (self.setup.num_devices,))))

    @property
    def max_servers(self) -> int:
        return int(max(self.axes.get("num_servers", (self.setup.num_servers,))))

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Values of each axis, in file order."""
        return tuple(len(values) for values in self.axes.values())

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
