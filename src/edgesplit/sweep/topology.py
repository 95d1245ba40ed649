"""Random scenarios: the Monte Carlo topologies of Section IV.

Every draw of device i comes from a key derived from the topology key and i alone
(``fold_in``), every draw of server j from the key and j alone, and the fading of
link (i, j) from device i's key and j. So a topology does not depend on how much
padding surrounds it, and the first M devices of a topology with more devices are
the same devices: sweeps over the number of devices or servers are paired.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import jax
import jax.numpy as jnp

from edgesplit.config import Setup
from edgesplit.model.dnn import DnnModel, resolve_model
from edgesplit.model.network import noise_power_dbm, rate_per_rrb, snr, uniform_in_disc
from edgesplit.model.scenario import Devices, Scenario, Servers, stack_tables

_DEVICE_STREAM, _SERVER_STREAM = 0, 1


@cache
def _tables(models: tuple[str | DnnModel, ...]):
    """The partition tables of ``Setup.models``: built-in names and profiles' models."""
    return stack_tables([m if isinstance(m, DnnModel) else resolve_model(m) for m in models])


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Topology:
    """A random scenario and what was drawn to make it."""

    scenario: Scenario
    model: jax.Array  # (M,) int32, index into Setup.models of each device's DNN
    device_xy: jax.Array  # (M, 2) metres
    server_xy: jax.Array  # (S, 2) metres


def sample_topology(
    key,
    setup: Setup,
    max_devices: int | None = None,
    max_servers: int | None = None,
    dtype=jnp.float64,
) -> Topology:
    """One random topology under ``setup``, padded to ``max_devices`` and ``max_servers``
    (default: the setup's own numbers, which must then be concrete).

    Devices i >= ``setup.num_devices`` and servers j >= ``setup.num_servers`` are padding.
    """
    max_devices = int(setup.num_devices) if max_devices is None else max_devices
    max_servers = int(setup.num_servers) if max_servers is None else max_servers
    device_keys = jax.vmap(
        lambda i: jax.random.fold_in(jax.random.fold_in(key, _DEVICE_STREAM), i)
    )(jnp.arange(max_devices))
    server_keys = jax.vmap(
        lambda j: jax.random.fold_in(jax.random.fold_in(key, _SERVER_STREAM), j)
    )(jnp.arange(max_servers))
    server_xy = jax.vmap(lambda k: uniform_in_disc(k, setup.radius_m))(server_keys)

    device_cycles, server_cycles, sent_bits, num_layers = _tables(setup.models)
    num_models = len(setup.models)

    def draw_device(device_key):
        place, pick, rate, fade = jax.random.split(device_key, 4)
        xy = uniform_in_disc(place, setup.radius_m)
        model = jax.random.randint(pick, (), 0, num_models)
        arrival = setup.mean_arrival_rate * (
            1.0 + setup.arrival_spread * jax.random.uniform(rate, minval=-1.0, maxval=1.0)
        )
        fading = jax.vmap(lambda j: jax.random.exponential(jax.random.fold_in(fade, j)))(
            jnp.arange(max_servers)
        )  # Rayleigh fading: |h|² ~ Exp(1)
        return xy, model, arrival, fading

    device_xy, model, arrival, fading = jax.vmap(draw_device)(device_keys)
    distance = jnp.linalg.norm(device_xy[:, None, :] - server_xy[None, :, :], axis=-1)
    distance = jnp.maximum(distance, setup.min_distance_m)
    noise = noise_power_dbm(
        setup.rrb_bandwidth_hz, setup.noise_density_dbm_per_hz, setup.noise_figure_db
    )
    link_snr = snr(
        distance, fading, setup.tx_power_dbm, noise,
        setup.path_loss_intercept_db, setup.path_loss_slope_db,
    )  # fmt: skip

    def per_device(value):
        return jnp.full(max_devices, value, dtype)

    def per_server(value, kind=dtype):
        return jnp.full(max_servers, value, kind)

    devices = Devices(
        cpu_hz=per_device(setup.cpu_hz),
        arrival_rate=arrival.astype(dtype),
        reward=per_device(setup.reward),
        delay_weight=per_device(setup.delay_weight),
        payment_weight=per_device(setup.payment_weight),
        device_cycles=jnp.asarray(device_cycles, dtype)[model],
        server_cycles=jnp.asarray(server_cycles, dtype)[model],
        sent_bits=jnp.asarray(sent_bits, dtype)[model],
        num_layers=jnp.asarray(num_layers)[model],
        active=jnp.arange(max_devices) < setup.num_devices,
    )
    servers = Servers(
        crb_hz=per_server(setup.crb_hz),
        crbs=per_server(setup.crbs, jnp.int32),
        rrbs=per_server(setup.rrbs, jnp.int32),
        cost_crb=per_server(setup.cost_crb),
        cost_rrb=per_server(setup.cost_rrb),
        max_price=per_server(setup.max_price),
        price_step=per_server(setup.price_step),
        result_delay=per_server(setup.result_delay),
        active=jnp.arange(max_servers) < setup.num_servers,
    )
    rates = rate_per_rrb(setup.rrb_bandwidth_hz, link_snr).astype(dtype)
    return Topology(
        scenario=Scenario(devices=devices, servers=servers, rate_per_rrb=rates),
        model=model.astype(jnp.int32),
        device_xy=device_xy.astype(dtype),
        server_xy=server_xy.astype(dtype),
    )
