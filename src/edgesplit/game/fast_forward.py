"""The fast-forward: Algorithm 1's opening rounds in which nobody buys and prices only
fall, skipped exactly (the game after them is the game played through them)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from edgesplit.config import GameSettings
from edgesplit.game.best_response import local_option, offload_options, offload_terms
from edgesplit.game.prices import not_below_cost, prices_at, top_step
from edgesplit.model.scenario import Scenario, Servers
from edgesplit.model.schemes import Options


def binary_search(predicate, low, high):
    """(S,) the smallest k in [low, high] with ``predicate(k)`` true, for a predicate that is
    monotone (false, then true) in each entry; ``high`` where it is never true before."""

    def narrowing(bounds):
        low, high = bounds
        return jnp.any(low < high)

    def halve(bounds):
        low, high = bounds
        middle = (low + high) // 2
        holds = predicate(middle)
        return jnp.where(holds, low, middle + 1), jnp.where(holds, middle, high)

    return jax.lax.while_loop(narrowing, halve, (low, high))[0]


def descent_floor(servers: Servers):
    """(S,) the step a server without buyers descends to: the last one not below cost."""
    top = top_step(servers)
    first_below = binary_search(
        lambda k: ~not_below_cost(servers, jnp.stack([k, k], -1)) | (k > top),
        jnp.ones_like(top),
        top + 1,
    )
    return first_below - 1


def first_sale(scenario: Scenario, options: Options, settings: GameSettings):
    """(S,) the first step k at which some device would buy from server s, its prices k
    steps below the maximum and every other server unattractive; top + 1 if none.

    A device buys from s when its best offload to s beats both running locally and
    idling, exactly as :func:`~edgesplit.game.best_response.choose` decides; with
    nobody else buying, s has all its blocks to offer."""
    servers = scenario.servers
    local, _ = local_option(scenario, options)
    outside = jnp.maximum(local, 0.0)[:, None]
    kernel = offload_options(settings)
    terms = offload_terms(scenario)
    crbs = jnp.where(servers.active, servers.crbs, 0)
    rrbs = jnp.where(servers.active, servers.rrbs, 0)

    def someone_buys(k):
        price_crb, price_rrb = prices_at(servers, jnp.stack([k, k], -1))
        offload = kernel(scenario, price_crb, price_rrb, crbs, rrbs, terms=terms)
        best = jnp.max(jnp.where(options.offload, offload.utility, -jnp.inf), axis=2)  # (M, S)
        return jnp.any(best > outside, axis=0)

    top = top_step(servers)
    return binary_search(someone_buys, jnp.zeros_like(top), top + 1)


def rounds_without_buyers(scenario: Scenario, options: Options, settings: GameSettings):
    """How many opening rounds of Algorithm 1 only lower prices, nobody buying: in them
    every server with no improving move and no buyer steps down (to its floor), and no
    server finds a buyer at its price or one step below. Those rounds can be skipped:
    the game after them is exactly the game played through them."""
    servers = scenario.servers
    floor = descent_floor(servers)
    first = first_sale(scenario, options, settings)
    # At round r a server is min(r, floor) steps down; it sees a buyer at its tentative
    # one-step cut once min(r, floor) + 1 >= first.
    sees_buyer = servers.active & (first <= floor + 1)
    quiet = jnp.min(jnp.where(sees_buyer, first - 1, jnp.iinfo(jnp.int32).max))
    falling = jnp.max(jnp.where(servers.active, floor, 0))  # rounds in which a price falls
    return jnp.clip(jnp.minimum(quiet, falling), 0, settings.max_rounds - 1).astype(jnp.int32)


def state_after_descent(servers: Servers, rounds, window: int):
    """(steps, recent, checkpoint) of the game loop after ``rounds`` rounds of pure descent."""
    floor = jnp.where(servers.active, descent_floor(servers), 0)

    def steps_after(r):
        return jnp.where(r >= 0, jnp.minimum(r, floor), -1)[:, None].repeat(2, axis=1)

    recent = jax.vmap(steps_after)(rounds - 1 - jnp.arange(window))
    # The checkpoint holds the state after the last power-of-two round.
    power = jnp.where(rounds > 0, jnp.left_shift(1, 31 - jax.lax.clz(jnp.maximum(rounds, 1))), -1)
    return steps_after(jnp.maximum(rounds, 0)), recent, steps_after(power)
