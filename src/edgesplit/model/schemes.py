"""The proposed scheme and the paper's three benchmarks (Section IV) as option masks.

A scheme only restricts what a mobile device may choose; every kernel takes the
scheme as an integer array, so one compiled program solves all four side by side.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import jax
import jax.numpy as jnp

from edgesplit.model.scenario import Scenario


class Scheme(IntEnum):
    PROPOSED = 0  # association, split, CRBs and RRBs all chosen
    EDGE_ONLY = 1  # α = 0: the whole DNN offloaded; association, CRBs, RRBs chosen
    HEURISTIC = 2  # associate with the highest-SNR server, then split and buy
    USER_ONLY = 3  # α = N: everything on the device, no server

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, name: str) -> Scheme:
        try:
            return cls[name.upper()]
        except KeyError:
            known = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown scheme {name!r}; known: {known}") from None


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Options:
    """What each device may choose besides staying idle."""

    offload: jax.Array  # (M, S, A) bool: offload to server s with split α
    local: jax.Array  # (M,) bool: run all layers on the device
    servers_play: jax.Array  # () bool: the servers sell resources and play the price game


def scheme_options(scenario: Scenario, scheme) -> Options:
    """The options ``scheme`` leaves each device of ``scenario``."""
    devices, servers = scenario.devices, scenario.servers
    split = jnp.arange(devices.num_splits)
    offload_split = split[None, :] < devices.num_layers[:, None]
    offload_split &= jnp.where(scheme == Scheme.EDGE_ONLY, split == 0, True)

    reachable = devices.active[:, None] & servers.active[None, :]
    # The heuristic's highest-SNR server is the one whose RRB carries the most bits.
    strongest = jnp.argmax(jnp.where(reachable, scenario.rate_per_rrb, -jnp.inf), axis=1)
    nearest_only = jnp.arange(servers.num_servers)[None, :] == strongest[:, None]
    reachable &= jnp.where(scheme == Scheme.HEURISTIC, nearest_only, True)
    reachable &= scheme != Scheme.USER_ONLY

    return Options(
        offload=reachable[:, :, None] & offload_split[:, None, :],
        local=devices.active & (scheme != Scheme.EDGE_ONLY),
        servers_play=jnp.asarray(scheme != Scheme.USER_ONLY) & jnp.any(servers.active),
    )
