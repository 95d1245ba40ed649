"""Random topologies: eq. (4), placement, and draws that do not depend on padding."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import draw_topology as draw
from edgesplit.config import Setup
from edgesplit.model.dnn import builtin_model
from edgesplit.sweep.topology import sample_topology

SETUP = Setup()


def test_rate_per_rrb_is_shannon_over_the_path_loss():
    """Eq. (4) recomputed by hand for the nearest possible link and no fading."""
    setup = SETUP.replace(radius_m=1e-3)  # everyone at the centre: distance clipped to 10 m
    path_loss = 140.7 + 36.7 * math.log10(10.0 / 1000)
    noise = -174 + 10 * math.log10(180e3) + 5
    snr = 10 ** ((23 - path_loss - noise) / 10)
    # Rayleigh fading |h|² ~ Exp(1) multiplies the SNR: recover it from r = B0 log2(1 + SNR).
    keys = jax.random.split(jax.random.key(1), 20000)
    many = jax.vmap(lambda k: draw(k, setup, 1, 1).rate_per_rrb[0, 0])(keys)
    mean_fading = np.mean((2 ** (np.asarray(many) / 180e3) - 1) / snr)
    assert mean_fading == pytest.approx(1.0, abs=0.03)  # E|h|² = 1 for Rayleigh fading


def test_devices_get_models_and_rates_as_set_up():
    scenario = draw(jax.random.key(3))
    devices = scenario.devices
    assert np.all(
        np.asarray(devices.arrival_rate) == SETUP.mean_arrival_rate
    )  # no spread by default
    layer_counts = {builtin_model(m).num_layers for m in SETUP.models}
    assert set(np.asarray(devices.num_layers).tolist()) <= layer_counts
    spread = draw(jax.random.key(3), SETUP.replace(arrival_spread=0.5)).devices.arrival_rate
    assert np.all((np.asarray(spread) >= 2.5) & (np.asarray(spread) <= 7.5))
    assert np.unique(np.asarray(spread)).size == 20


def test_padding_leaves_every_draw_alone():
    key = jax.random.key(11)
    small = draw(key, SETUP.replace(num_devices=5, num_servers=2), 5, 2)
    padded = draw(key, SETUP.replace(num_devices=5, num_servers=2), 30, 4)
    np.testing.assert_array_equal(np.asarray(padded.rate_per_rrb)[:5, :2], small.rate_per_rrb)
    np.testing.assert_array_equal(
        np.asarray(padded.devices.device_cycles)[:5], small.devices.device_cycles
    )
    assert np.asarray(padded.devices.active).sum() == 5
    assert np.asarray(padded.servers.active).sum() == 2
    # The first 5 devices of a 20-device topology are the same devices.
    larger = draw(key, SETUP.replace(num_devices=20), 20, 2)
    np.testing.assert_array_equal(np.asarray(larger.rate_per_rrb)[:5], small.rate_per_rrb)


def test_sampling_is_deterministic_and_traceable():
    sample = jax.jit(
        lambda k, rate: sample_topology(k, SETUP.replace(mean_arrival_rate=rate), 20, 2).scenario
    )
    a = sample(jax.random.key(5), jnp.float64(3.0))
    b = sample(jax.random.key(5), jnp.float64(7.0))
    jax.tree.map(np.testing.assert_array_equal, a.rate_per_rrb, b.rate_per_rrb)
    assert sample._cache_size() == 1
    assert float(b.devices.arrival_rate[0]) == 7.0
