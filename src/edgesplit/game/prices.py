"""Prices on the grid Algorithm 1 walks: max_price - k·Δ, clipped at 0, stored as the
integer k (steps below the maximum) so that rounds compare exactly and nothing drifts."""

from __future__ import annotations

import jax.numpy as jnp

from edgesplit.model.scenario import Servers

# A step of +1 lowers a price by Δ; the moves each server tries are GameSettings.moves.
DESCENT = (1, 1)
PRICE_TOLERANCE = 1e-9  # relative to max_price: grid prices are max_price - k·Δ in floating point


def prices_at(servers: Servers, steps):
    """Prices (CRB, RRB) that are ``steps`` (S, 2) steps Δ below the maximum, clipped at 0."""
    prices = servers.max_price[:, None] - steps * servers.price_step[:, None]
    prices = jnp.clip(prices, 0.0, servers.max_price[:, None])
    return prices[:, 0], prices[:, 1]


def top_step(servers: Servers):
    """(S,) the step at which a price reaches 0: ceil(max_price / Δ)."""
    return jnp.ceil(servers.max_price / servers.price_step).astype(jnp.int32)


def not_below_cost(servers: Servers, steps):
    """(S,) whether both prices at ``steps`` are at or above cost (up to the rounding of
    max_price - k·Δ, so that a grid price equal to cost counts as at cost)."""
    price_crb, price_rrb = prices_at(servers, steps)
    slack = PRICE_TOLERANCE * servers.max_price
    return (price_crb >= servers.cost_crb - slack) & (price_rrb >= servers.cost_rrb - slack)
