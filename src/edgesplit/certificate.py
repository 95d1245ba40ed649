"""Equilibrium certificate: how far a solved game is from a Stackelberg equilibrium.

A solution is an equilibrium when

* no device can raise its utility (eq. 10) by a unilateral feasible deviation: any
  server, split and purchase that fits in what the server has left once the other
  devices' purchases are counted, all-local, or idle; and
* no server can raise its utility (eq. 11) by moving its price one step Δ (the moves
  of Algorithm 1, clipped to [0, max_price]), the devices best-responding with
  admission.

The certificate is the largest gain any player could get that way (0 at an exact
equilibrium). A converged game has server gains of at most ``min_gain`` by its stop
rule, and device gains of 0 up to rounding by the admission rule.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from edgesplit.best_response import Choice, choice_utility, choose, offload_options_exact
from edgesplit.config import GameSettings
from edgesplit.price_game import market, server_sales
from edgesplit.scenario import Scenario
from edgesplit.schemes import Options


def device_gains(scenario: Scenario, options: Options, price_crb, price_rrb, choice: Choice):
    """(M,) the most each device could gain by deviating alone, >= 0."""
    servers = scenario.servers
    own = choice.server[:, None] == jnp.arange(servers.num_servers)[None, :]  # (M, S)
    _, crbs_sold, rrbs_sold = server_sales(scenario, choice, price_crb, price_rrb)
    capacity_crbs = jnp.where(servers.active, servers.crbs, 0)
    capacity_rrbs = jnp.where(servers.active, servers.rrbs, 0)
    # What each server would have for device m if m withdrew its own purchase.
    crbs_left = (capacity_crbs - crbs_sold)[None, :] + jnp.where(own, choice.crbs[:, None], 0)
    rrbs_left = (capacity_rrbs - rrbs_sold)[None, :] + jnp.where(own, choice.rrbs[:, None], 0)
    offload = offload_options_exact(scenario, price_crb, price_rrb, crbs_left, rrbs_left)
    best = choose(scenario, options, offload)
    current = choice_utility(scenario, choice, price_crb, price_rrb)
    return jnp.where(scenario.devices.active, jnp.maximum(best.utility - current, 0.0), 0.0)


def server_gains(
    scenario: Scenario,
    options: Options,
    settings: GameSettings,
    price_crb,
    price_rrb,
    choice: Choice | None = None,
):
    """(S,) the most each server could gain by one price step of Algorithm 1, >= 0.

    ``choice`` is the devices' market at these prices, computed here if not given."""
    servers = scenario.servers
    if choice is None:
        choice = market(scenario, options, settings, price_crb, price_rrb)
    current, _, _ = server_sales(scenario, choice, price_crb, price_rrb)
    # A move of -1 step is a price rise, as in the game's step grid.
    moves = -jnp.asarray(settings.moves, price_crb.dtype)

    def gain(server, move):
        step = servers.price_step[server]
        top = servers.max_price[server]
        crb = price_crb.at[server].set(jnp.clip(price_crb[server] + move[0] * step, 0.0, top))
        rrb = price_rrb.at[server].set(jnp.clip(price_rrb[server] + move[1] * step, 0.0, top))
        utility, _, _ = server_sales(
            scenario, market(scenario, options, settings, crb, rrb), crb, rrb
        )
        return utility[server] - current[server]

    gains = jax.vmap(lambda s: jax.vmap(lambda m: gain(s, m))(moves))(
        jnp.arange(servers.num_servers)
    )
    plays = servers.active & options.servers_play
    return jnp.where(plays, jnp.maximum(jnp.max(gains, axis=1), 0.0), 0.0)
