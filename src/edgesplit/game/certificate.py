"""Equilibrium certificate: how far a solved game is from a Stackelberg equilibrium.

A solution is an equilibrium when

* no device can raise its utility (eq. 10) by a unilateral feasible deviation: any
  server, split and purchase that fits in what the server has left once the other
  devices' purchases are counted, all-local, or idle; and
* no server can raise its utility (eq. 11) by moving its price one step Δ (the moves
  of Algorithm 1, clipped to [0, max_price]; after a game, the moves on its price
  grid, as its rounds try them), the devices best-responding with admission.

The certificate is the largest gain any player could get that way (0 at an exact
equilibrium). A converged game has server gains of at most ``min_gain`` by its stop
rule, and device gains of 0 up to rounding by the admission rule.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from edgesplit.config import GameSettings
from edgesplit.game.best_response import Choice, choice_utility, choose, offload_options_exact
from edgesplit.game.market import server_sales
from edgesplit.model.scenario import Scenario, Servers
from edgesplit.model.schemes import Options


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


def moved_prices(servers: Servers, settings: GameSettings, price_crb, price_rrb):
    """(1 + S·C, S) CRB and RRB prices: these, then each server's C moves of Algorithm 1
    one at a time, Δ up or down clipped to [0, max_price]. For prices off a game's grid;
    a game's own are :func:`~edgesplit.game.algorithm1.final_markets`."""
    # A move of -1 step is a price rise, as in the game's step grid.
    moves = -jnp.asarray(settings.moves, price_crb.dtype)  # (C, 2)

    def moved(server, move):
        step, top = servers.price_step[server], servers.max_price[server]
        return (
            price_crb.at[server].set(jnp.clip(price_crb[server] + move[0] * step, 0.0, top)),
            price_rrb.at[server].set(jnp.clip(price_rrb[server] + move[1] * step, 0.0, top)),
        )

    tried = jax.vmap(lambda s: jax.vmap(lambda m: moved(s, m))(moves))(
        jnp.arange(servers.num_servers)
    )  # (S, C, S) each
    return tuple(
        jnp.concatenate([price[None], moves_of.reshape(-1, servers.num_servers)])
        for price, moves_of in zip((price_crb, price_rrb), tried, strict=True)
    )


def server_gains(servers: Servers, options: Options, utility):
    """(S,) the most each server could gain by one price move, >= 0, from each server's
    utility (1 + S·C, S) in the market at the prices and after each server's C moves
    (:func:`moved_prices` or :func:`~edgesplit.game.algorithm1.final_markets`)."""
    num_servers = servers.num_servers
    tried = utility[1:].reshape(num_servers, -1, num_servers)
    own = jnp.diagonal(tried, axis1=0, axis2=2).T  # (S, C): server s's utility after its moves
    gains = jnp.max(own, axis=1) - utility[0]
    plays = servers.active & options.servers_play
    return jnp.where(plays, jnp.maximum(gains, 0.0), 0.0)
