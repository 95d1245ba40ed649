"""The radio network: where devices and servers are, and what one RRB carries (eq. 4)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def uniform_in_disc(key, radius):
    """One point (x, y) uniformly distributed in a disc of ``radius`` centred at 0."""
    r_key, angle_key = jax.random.split(key)
    r = radius * jnp.sqrt(jax.random.uniform(r_key))
    angle = 2 * jnp.pi * jax.random.uniform(angle_key)
    return jnp.stack([r * jnp.cos(angle), r * jnp.sin(angle)])


def path_loss_db(distance_m, intercept_db, slope_db):
    """Distance-based path loss, intercept + slope·log10(d / 1 km), in dB."""
    return intercept_db + slope_db * jnp.log10(distance_m / 1000.0)


def snr(distance_m, fading_gain, tx_power_dbm, noise_dbm, intercept_db, slope_db):
    """SNR_ms = |h_ms|² P_m / σ² (eq. 4), with |h|² = path gain × Rayleigh fading power."""
    received_dbm = tx_power_dbm - path_loss_db(distance_m, intercept_db, slope_db)
    return fading_gain * 10.0 ** ((received_dbm - noise_dbm) / 10.0)


def rate_per_rrb(bandwidth_hz, snr_linear):
    """Bits/s one RRB carries, r_ms = B_0 log2(1 + SNR_ms), eq. (4)."""
    return bandwidth_hz * jnp.log2(1.0 + snr_linear)


def noise_power_dbm(bandwidth_hz, density_dbm_per_hz, noise_figure_db):
    """Receiver noise σ² over one RRB: thermal density × bandwidth, plus noise figure."""
    return density_dbm_per_hz + 10.0 * jnp.log10(bandwidth_hz) + noise_figure_db
