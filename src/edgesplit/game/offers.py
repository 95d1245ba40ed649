"""A game's table of offers, and a market's first admission pass from it.

Every price any leader rule sets is on the grid max_price - k·Δ (clipped at 0), and with
every block free a device's options at a server depend only on that server's prices. So
one table per game, each device's best offer from each server at each level (an entry:
the best split and purchase there), gives the first admission pass of every market on
the grid: each device chooses among its servers' entries (:func:`first_pass`). Only the
devices a full server refused need a fresh response, capped by what is left
(:func:`~edgesplit.game.market.fold_markets`).

The rows are made from the lowest price up, :data:`ROW_BLOCK` levels at a time, and stop
after a block whose highest price sells to nobody: a device's best offer only falls as a
price rises, so at every higher price nobody buys either, and those rows hold no offer
(utility -inf). The games of Fig. 3 need a fifth of the rows on average.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from edgesplit.config import GameSettings
from edgesplit.errors import InputError
from edgesplit.game.admission import admission_pass, admitting, open_market
from edgesplit.game.best_response import (
    OffloadTerms,
    ServerOffers,
    choose_offer,
    first_maximum,
    local_option,
    offload_options,
    offload_terms,
)
from edgesplit.game.market import server_sales
from edgesplit.game.prices import prices_at, top_step
from edgesplit.model.scenario import Scenario
from edgesplit.model.schemes import Options

ROW_BLOCK = 8
"""Levels of the table made together: wide enough for the kernel to vectorise, few
enough that the block past the last buyer costs little."""


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class OfferTable:
    """Each device's best offer from each server with every server at each grid level and
    every block free, on one line of the grid (joint prices: both prices at the level)."""

    offers: ServerOffers  # (K, M, S); utility -inf above first_row
    most_paid: jax.Array  # (K, M, S) the most a device could pay the server there, at its margins
    price_crb: jax.Array  # (K, S) each server's prices at each level
    price_rrb: jax.Array
    first_row: jax.Array  # () int32, the highest-price row made: nobody buys above it

    @property
    def price(self) -> jax.Array:
        """(K, S) each server's price at each level, for joint prices."""
        return self.price_crb


def grid_levels(scenario: Scenario, settings: GameSettings):
    """(K, S) each server's level at each of the ``settings.price_levels`` rows: a row past
    a server's last level at its last."""
    servers = scenario.servers
    top = jnp.where(servers.active, top_step(servers), 0)
    return jnp.minimum(jnp.arange(settings.price_levels)[:, None], top)


def grid_prices(scenario: Scenario, settings: GameSettings):
    """(K, S) each server's price at each row of :func:`grid_levels`."""
    servers = scenario.servers
    return jax.vmap(lambda at: prices_at(servers, jnp.stack([at, at], axis=1))[0])(
        grid_levels(scenario, settings)
    )


def offer_table(
    scenario: Scenario, options: Options, settings: GameSettings, line_prices=None,
    terms: OffloadTerms | None = None,
) -> OfferTable:  # fmt: skip
    """The game's :class:`OfferTable` of ``settings.price_levels`` rows.

    ``line_prices``, where given, is the line ``(price_crb, price_rrb)``, (K, S) each (a
    server's column moving its prices along the line); by default both prices are the
    grid's (:func:`grid_prices`). Rows are made from the last up (see the module).
    ``most_paid`` bounds what a device still pending after a first pass can pay the
    server at that price, however the market settles: a purchase at what is left is at
    most as many blocks of the same split, and of a split whose utility with every block
    free beats running locally and idling (to within 1e-9, far wider than the 1e-12
    within which offers count as equal)."""
    servers = scenario.servers
    levels = settings.price_levels
    if not levels:  # at trace time: 0 is the files' and the API's "fit it to the servers"
        raise InputError(
            "price_levels",
            "must be set: the table of offers has one row per price level (fit it with "
            "GameSettings.fit_levels, or call edgesplit.solve, which fits it)",
        )
    if line_prices is None:
        price = grid_prices(scenario, settings)
        line_prices = (price, price)
    price_crb, price_rrb = line_prices
    market = open_market(scenario)
    free = market.crbs_left, market.rrbs_left
    terms = offload_terms(scenario) if terms is None else terms
    kernel = offload_options(settings)
    alternative = jnp.maximum(local_option(scenario, options)[0], 0.0)

    def offers_of(crb, rrb):
        """Each device's best offer from each server at these prices (S,) each: the best
        split from the utilities alone, its purchase and delay computed again there."""
        utility = kernel(scenario, crb, rrb, *free, terms=terms).utility
        split, best = first_maximum(jnp.where(options.offload, utility, -jnp.inf))
        at = jax.tree.map(lambda x: _at_split(x, split, utility.shape[2]), terms)
        chosen = kernel(scenario, crb, rrb, *free, terms=at)
        return ServerOffers(
            best, split, chosen.crbs[..., 0], chosen.rrbs[..., 0], chosen.delay[..., 0]
        )

    def most_paid(low, high):
        """(M, S) what each device could pay each server at any prices between ``low`` and
        ``high`` ((CRB, RRB) prices (S,) each, ``low`` the lower): no more blocks of a
        split than at ``low``, and of a split whose utility there beats running locally
        and idling (to within 1e-9), paid at the margins of ``high``."""
        table = kernel(scenario, *low, *free, terms=terms)
        outside = alternative[:, None, None]
        slack = 1e-9 * jnp.maximum(jnp.maximum(jnp.abs(table.utility), outside), 1.0)
        usable = options.offload & (table.utility > outside - slack)
        margin_crb = jnp.maximum(high[0] - servers.cost_crb, 0.0)[None, :, None]
        margin_rrb = jnp.maximum(high[1] - servers.cost_rrb, 0.0)[None, :, None]
        pays = table.crbs * margin_crb + table.rrbs * margin_rrb
        return jnp.max(jnp.where(usable, pays, 0.0), axis=2)

    blocks = -(-levels // ROW_BLOCK)
    padded = blocks * ROW_BLOCK  # a spare row past the last takes the padding's writes

    def make(carry):
        block, offers, paid, _ = carry
        at = block * ROW_BLOCK + jnp.arange(ROW_BLOCK)
        crb, rrb = (jnp.take(p, at, axis=0, mode="clip") for p in (price_crb, price_rrb))
        new_offers = jax.vmap(offers_of)(crb, rrb)
        # One bound for the block's rows: from its lowest price, at its highest margins.
        new_paid = most_paid((crb[-1], rrb[-1]), (crb[0], rrb[0]))
        into = jnp.where(at < levels, at, padded)
        put = lambda old, new: old.at[into].set(new, mode="drop")  # noqa: E731
        offers = jax.tree.map(put, offers, new_offers)
        # A device buys an offer above its local option and idling (choose_offer).
        buys = jnp.any(new_offers.utility[0] > alternative[:, None])
        return (
            block - 1,
            offers,
            put(paid, jnp.broadcast_to(new_paid, (ROW_BLOCK, *new_paid.shape))),
            buys,
        )

    shape = (levels, servers.num_servers)
    empty = ServerOffers(
        utility=jnp.full((levels, *market.settled.shape, shape[1]), -jnp.inf, alternative.dtype),
        split=jnp.zeros((levels, *market.settled.shape, shape[1]), jnp.int32),
        crbs=jnp.zeros((levels, *market.settled.shape, shape[1]), jnp.int32),
        rrbs=jnp.zeros((levels, *market.settled.shape, shape[1]), jnp.int32),
        delay=jnp.full((levels, *market.settled.shape, shape[1]), jnp.inf, alternative.dtype),
    )
    block, offers, paid, _ = jax.lax.while_loop(
        lambda carry: (carry[0] >= 0) & carry[3],
        make,
        (jnp.int32(blocks - 1), empty, jnp.zeros_like(empty.utility), jnp.bool_(True)),
    )
    first_row = ((block + 1) * ROW_BLOCK).astype(jnp.int32)
    return OfferTable(offers, paid, price_crb, price_rrb, first_row)


def _at_split(x, split, splits: int):
    """(M, S, 1) a price-free term broadcastable to (M, S, ``splits``), at each (device,
    server)'s ``split`` (M, S)."""
    full = jnp.broadcast_to(x, (*split.shape, splits))
    return jnp.take_along_axis(full, split[..., None], axis=2)


def offers_at(table: OfferTable, levels):
    """(M, S) each device's offers with each server at its level ``levels`` (S,)."""
    at = (levels, slice(None), jnp.arange(levels.shape[0]))
    return jax.tree.map(lambda x: x[at].T, table.offers)


def paid_at(table: OfferTable, levels):
    """(M, S) the most each device could pay each server at its level ``levels`` (S,)."""
    return table.most_paid[levels, :, jnp.arange(levels.shape[0])].T


BOUND_SLACK = 1e-9
"""Relative width added to each side of the bounds of :func:`pass_bounds`, far above
the rounding of the utilities they bound."""


def pass_bounds(scenario: Scenario, price_crb, price_rrb, first, most_paid):
    """Each server's utility (eq. 11) after a market's first admission pass ``first``
    at these prices (S,) each, and bounds on it however the market settles (its
    utility where the pass settled it), ``(value, lower, upper)``, (S,) each;
    ``most_paid`` (M, S) is the most each device could pay each server there
    (:class:`OfferTable`). Devices admitted stay admitted, so a server earns at least
    what the pass sold it, less the blocks it has left at a negative margin, and at most
    that plus what its pending devices could pay it, at most what it has left; each
    bound widened by :data:`BOUND_SLACK`."""
    servers = scenario.servers
    value = server_sales(scenario, first.choice, price_crb, price_rrb)[0]
    margin = jnp.stack([price_crb - servers.cost_crb, price_rrb - servers.cost_rrb])  # (2, S)
    blocks_left = jnp.stack([first.crbs_left, first.rrbs_left])
    left = jnp.sum(blocks_left * jnp.maximum(margin, 0.0), axis=0)
    at_a_loss = jnp.sum(blocks_left * jnp.minimum(margin, 0.0), axis=0)
    pending = jnp.where(first.settled[:, None], 0.0, most_paid)
    gain = jnp.minimum(jnp.sum(pending, axis=0), left)
    slack = BOUND_SLACK * jnp.maximum(jnp.abs(value) + left - at_a_loss, 1.0)
    settled = ~admitting(scenario, first)
    return (
        value,
        jnp.where(settled, value, value + at_a_loss - slack),
        jnp.where(settled, value, value + gain + slack),
    )


def first_pass(
    scenario: Scenario, options: Options, price_crb, price_rrb, offers: ServerOffers, most_paid
):
    """A market's first admission pass at these prices (S,) each, every device choosing
    among its ``offers`` (M, S), each server's best offer to it with every block free:
    ``(settled, value, lower, upper)``, whether the pass settled the market, and each
    server's utility there and its bounds (:func:`pass_bounds`, ``most_paid`` (M, S))."""
    request = choose_offer(scenario, options, offers)
    first = admission_pass(
        scenario, price_crb, price_rrb, lambda *_: request, open_market(scenario)
    )
    value, lower, upper = pass_bounds(scenario, price_crb, price_rrb, first, most_paid)
    return ~admitting(scenario, first), value, lower, upper
