"""Delays and utilities of the paper, eqs. (2)-(11), as elementwise array functions.

Every queue is M/M/1 with service rate μ = capacity / work, where *work* is what one
task needs (cycles or bits) and *capacity* what the server offers per second (cycles/s
or bits/s). Its mean sojourn time 1 / (μ - λ) is written work / (capacity - λ·work),
which stays finite when a split puts no work on a queue (μ = ∞ gives 0, not NaN).
"""

from __future__ import annotations

import jax.numpy as jnp


def queue_is_stable(work, capacity, arrival_rate):
    """Whether μ = capacity / work exceeds the arrival rate λ (eqs. 6-8 need μ > λ)."""
    return capacity - arrival_rate * work > 0


def sojourn_time(work, capacity, arrival_rate):
    """Mean M/M/1 sojourn time 1 / (μ - λ) with μ = capacity / work (eqs. 6-8); inf if unstable.

    With ``capacity`` the device's cycles/s C_m this is eq. (6) with μ from eq. (2);
    with y CRBs, y·C_0, it is eq. (8) with μ from eq. (3); with z RRBs, z·r_ms, it is
    eq. (7) with μ from eq. (5).
    """
    stable = queue_is_stable(work, capacity, arrival_rate)
    margin = jnp.where(stable, capacity - arrival_rate * work, 1.0)
    return jnp.where(stable, work / margin, jnp.inf)


def service_delay(device_delay, radio_delay, server_delay, result_delay):
    """Total delay T_ms of an offloaded task, eq. (9): compute on the device, send,
    compute on the server, return the result."""
    return device_delay + radio_delay + server_delay + result_delay


def device_utility(reward, delay_weight, payment_weight, arrival_rate, delay, payment):
    """Utility of a mobile device, eq. (10): γ λ - δ T - ω (y g^(c) + z g^(r))."""
    return reward * arrival_rate - delay_weight * delay - payment_weight * payment


def server_profit(crbs, rrbs, price_crb, price_rrb, cost_crb, cost_rrb):
    """One buyer's term of a server's utility, eq. (11): y (g^(c) - f^(c)) + z (g^(r) - f^(r))."""
    return crbs * (price_crb - cost_crb) + rrbs * (price_rrb - cost_rrb)
