"""One scenario of the game as arrays: devices (MDs), servers (ESs) and the radio links.

These are frozen dataclass PyTrees holding one topology, unbatched: leading axis M
for devices, S for servers. Padded entries (``active=False``) let scenarios of
different sizes share one shape: a padded device never offloads and gets utility 0,
a padded server sells nothing and keeps its price. A batch of scenarios is the same
classes with a leading batch axis, made by ``jax.vmap`` or :func:`stack`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from edgesplit.model.dnn import DnnModel, partition_table

Array = jax.Array


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Devices:
    """Mobile devices; every field has leading axis M, split-point fields have A = N_max + 1."""

    cpu_hz: Array  # C_m, cycles/s the device spends on DNN work (eq. 2)
    arrival_rate: Array  # λ_m, tasks/s
    reward: Array  # γ_m, utility per task/s (eq. 10)
    delay_weight: Array  # δ_m, utility per second of delay (eq. 10)
    payment_weight: Array  # ω_m, utility per unit of payment (eq. 10)
    device_cycles: Array  # (M, A) cycles run on the device for split α
    server_cycles: Array  # (M, A) cycles run on the server for split α
    sent_bits: Array  # (M, A) bits sent for split α
    num_layers: Array  # (M,) int32, N_m; the all-local split is α = N_m
    active: Array  # (M,) bool, False for padding

    @property
    def num_devices(self) -> int:
        return self.cpu_hz.shape[-1]

    @property
    def num_splits(self) -> int:
        return self.device_cycles.shape[-1]


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Servers:
    """Edge servers; every field has leading axis S."""

    crb_hz: Array  # C_0, cycles/s of one CRB (eq. 3)
    crbs: Array  # int32, CRBs the server has
    rrbs: Array  # int32, RRBs the server has
    cost_crb: Array  # f^(c), cost of selling one CRB (eq. 11)
    cost_rrb: Array  # f^(r), cost of selling one RRB (eq. 11)
    max_price: Array  # max g, the starting price of Algorithm 1
    price_step: Array  # Δ, the step of Algorithm 1
    result_delay: Array  # t^(b), seconds to return the result (eq. 9)
    active: Array  # bool, False for padding

    @property
    def num_servers(self) -> int:
        return self.crb_hz.shape[-1]


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Scenario:
    """One topology: who is where, what they run, and what each link carries."""

    devices: Devices
    servers: Servers
    rate_per_rrb: Array  # (M, S) r_ms, bits/s one RRB carries from m to s (eq. 4)


def stack_tables(
    models: Sequence[DnnModel],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Partition tables of ``models`` padded to a common length.

    Returns (device_cycles, server_cycles, sent_bits) of shape (len(models), A) and the
    layer counts. Padding repeats the all-local entry; splits past N_m are masked out
    by the kernels anyway.
    """
    tables = [partition_table(m) for m in models]
    width = max(t.num_layers for t in tables) + 1

    def pad(rows):
        return np.stack([np.pad(r, (0, width - len(r)), mode="edge") for r in rows])

    return (
        pad([t.device_cycles for t in tables]),
        pad([t.server_cycles for t in tables]),
        pad([t.sent_bits for t in tables]),
        np.array([t.num_layers for t in tables], dtype=np.int32),
    )


def stack(scenarios: Sequence[Scenario]) -> Scenario:
    """A batch of same-shaped scenarios (concrete arrays) along a new leading axis.

    Stacked on the host: ``jnp.stack`` would compile a concatenation for every leaf's
    shape and batch size."""
    return jax.tree.map(lambda *leaves: jnp.asarray(np.stack(leaves)), *scenarios)


def unstack(batch: Scenario) -> list[Scenario]:
    """The scenarios of a batch made by :func:`stack` or ``jax.vmap``."""
    size = jax.tree.leaves(batch)[0].shape[0]
    return [jax.tree.map(lambda leaf, i=i: leaf[i], batch) for i in range(size)]


def pad_scenario(
    scenario: Scenario, num_devices: int, num_servers: int, num_splits: int
) -> Scenario:
    """``scenario`` (concrete arrays) padded to the given sizes with inactive devices and
    servers, on the host (no program compiled per shape).

    Padding repeats the last entry of each axis (so no padded value divides by zero)
    and marks padded devices and servers inactive; split points past a device's own
    N_m are never offered. Results for the real devices and servers do not change.
    """
    devices, servers = scenario.devices, scenario.servers
    extra = (
        num_devices - devices.num_devices,
        num_servers - servers.num_servers,
        num_splits - devices.num_splits,
    )
    if min(extra) < 0:
        raise ValueError("pad_scenario can only grow a scenario")

    def pad(array, *widths):
        return np.pad(np.asarray(array), [(0, w) for w in widths], mode="edge")

    def pad_devices(field):
        value = getattr(devices, field)
        return pad(value, extra[0], extra[2]) if value.ndim == 2 else pad(value, extra[0])

    devices = Devices(**{f.name: pad_devices(f.name) for f in dataclasses.fields(Devices)})
    servers = Servers(
        **{f.name: pad(getattr(servers, f.name), extra[1]) for f in dataclasses.fields(Servers)}
    )
    real_devices = np.arange(num_devices) < num_devices - extra[0]
    real_servers = np.arange(num_servers) < num_servers - extra[1]
    padded = Scenario(
        devices=dataclasses.replace(devices, active=devices.active & real_devices),
        servers=dataclasses.replace(servers, active=servers.active & real_servers),
        rate_per_rrb=pad(scenario.rate_per_rrb, extra[0], extra[1]),
    )
    return jax.tree.map(jnp.asarray, padded)
