"""Delays and utilities of the paper, eqs. (2)-(11), as elementwise array functions.

Every queue is M/M/1, written as in the paper: a service rate μ (tasks/s) from what
the queue offers per second and what one task needs (eqs. 2, 3, 5), and the mean
sojourn time 1 / (μ - λ) (eqs. 6-8), available only when μ > λ. A queue a split puts
no work on has μ = ∞ and sojourn time 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def service_rate(capacity, work):
    """Tasks per second, μ = capacity / work: eq. (2) (device cycles/s over the cycles of
    layers 1..α), eq. (3) (one CRB's cycles/s over the rest) and eq. (5) (one RRB's
    bits/s over the bits sent); ∞ when there is no work.

    The division is correctly rounded, as in the reference: XLA rewrites a division by a
    broadcast array into a multiplication by its reciprocal, which can land one ulp
    off and move μ across λ at the stability boundary, so the divisor is given its
    full shape behind an optimisation barrier.
    """
    shape = jnp.broadcast_shapes(jnp.shape(capacity), jnp.shape(work))
    has_work = work > 0
    divisor = jax.lax.optimization_barrier(jnp.broadcast_to(jnp.where(has_work, work, 1.0), shape))
    return jnp.where(has_work, capacity / divisor, jnp.inf)


def sojourn_time(service_rate, arrival_rate):
    """Mean M/M/1 sojourn time 1 / (μ - λ), eqs. (6)-(8); inf when μ <= λ (unstable).

    For y CRBs μ is y times the rate of one (eq. 8), for z RRBs z times (eq. 7).
    """
    stable = service_rate > arrival_rate
    return jnp.where(stable, 1.0 / jnp.where(stable, service_rate - arrival_rate, 1.0), jnp.inf)


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
