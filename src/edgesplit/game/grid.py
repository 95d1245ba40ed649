"""Each server's best price on its whole grid against the others' prices: the servers'
side of eq. (12) beyond Algorithm 1's ±Δ moves.

A server's grid is its prices max_price - k·Δ, clipped at 0, for k = 0 .. ceil(max_price
/ Δ) (:mod:`edgesplit.game.prices`). A unilateral move puts one server anywhere on it,
the others' prices fixed, the devices best-responding with admission
(:func:`~edgesplit.game.market.market`). With joint prices a server's move sets both its
prices to a grid price, and every move is tried: the best found is exact. With separate
prices a move on the grid of (CRB, RRB) pairs has K² choices; only three lines of them
are tried, both prices to one grid price, the CRB price alone and the RRB price alone,
so the best found, and the regret, are lower bounds.

With the number of levels known (``GameSettings.price_levels``, which the sweep and
scenario files fit), the moves are screened (:func:`screen`): blocks of levels whose
bound cannot beat what is known, or is no more than a utility known at a higher price
(equal at best, they come after it among ties), are skipped; a move its market's first
admission pass settles is known, and only the others that may be best are settled in
full, highest bound first, each passed over once the best found is above its bound.
Otherwise every move is settled, the number of levels then traced (it follows max_price
/ Δ). Either way the markets are settled a few at a time per scenario
(:mod:`edgesplit.game.market_queue`), none stored.

A game that searches its grid again and again (the ``best_response`` rule) makes one
table of offers per level instead (:func:`offer_table`, which ``enumerate`` uses too):
every move's first pass is then a choice among its entries (:func:`best_on_table`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from edgesplit.config import GameSettings
from edgesplit.game.admission import admission_pass, admitting, open_market
from edgesplit.game.best_response import (
    OffloadTerms,
    ServerOffers,
    best_splits,
    choose_offer,
    first_maximum,
    local_option,
    offload_terms,
)
from edgesplit.game.market import offload_options, server_sales
from edgesplit.game.market_queue import fold_markets
from edgesplit.game.prices import prices_at, top_step
from edgesplit.model.scenario import Scenario
from edgesplit.model.schemes import Options

LEVEL_BLOCK = 8
"""Grid levels in a block of :func:`screen`: a block's moves are bounded together from the
option table of its lowest price, and screened level by level only where that bound
may beat the best known."""


def _lines(settings: GameSettings) -> int:
    return 1 if settings.joint_price else 3


def _blocks(settings: GameSettings) -> int:
    return -(-settings.price_levels // LEVEL_BLOCK)


def move_prices(servers, settings: GameSettings, price_crb, price_rrb, levels):
    """(L, B, S) the CRB and RRB prices each server moves to, at each of ``levels`` (B,)
    and on each line (joint: both prices; separate: both, CRB alone, RRB alone)."""
    top = servers.max_price[None, :]
    price = jnp.clip(top - levels[:, None] * servers.price_step[None, :], 0.0, top)  # (B, S)
    if settings.joint_price:
        return price[None], price[None]
    keep_crb, keep_rrb = (jnp.broadcast_to(p, price.shape) for p in (price_crb, price_rrb))
    return jnp.stack([price, price, keep_crb]), jnp.stack([price, keep_rrb, price])


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class ScreenGame:
    """One game as :func:`screen` takes it: the movers' market and what every first pass
    of a move shares."""

    scenario: Scenario
    options: Options
    price_crb: jax.Array  # (S,) the prices the movers move from
    price_rrb: jax.Array
    terms: OffloadTerms  # price-free
    here: ServerOffers  # (M, S) the devices' best offers at these prices, all blocks free
    alternative: jax.Array  # (M,) what an offer must beat to be bought: local and idle
    floor: jax.Array  # (P,) what a mover's move must reach
    top: jax.Array  # (P,) each mover's last grid level, -1 for movers that do not play
    worth: jax.Array  # (blocks,) blocks some mover's capacity is worth the floor in


def screen_game(scenario, options, settings, price_crb, price_rrb, movers, floor) -> ScreenGame:
    """A game to :func:`screen`: ``movers`` (P,) moving from these prices, ``floor`` (P,)."""
    servers = scenario.servers
    terms = offload_terms(scenario)
    here = best_splits(
        options,
        offload_options(settings)(
            scenario, price_crb, price_rrb, _blocks_of(servers, "crbs"),
            _blocks_of(servers, "rrbs"), terms=terms,
        ),
    )  # fmt: skip
    alternative = jnp.maximum(local_option(scenario, options)[0], 0.0)
    top = _top(scenario, options, movers)
    return ScreenGame(
        scenario, options, price_crb, price_rrb, terms, here, alternative, floor,
        top, worth_blocks(scenario.servers, settings, price_crb, price_rrb, movers, floor, top),
    )  # fmt: skip


def _blocks_of(servers, kind: str):
    """(S,) each server's CRBs or RRBs, none for inactive servers."""
    return jnp.where(servers.active, getattr(servers, kind), 0)


def first_passes(game: ScreenGame, settings: GameSettings):
    """``passes(levels, bounded_from)``: every server's move to each of ``levels`` (B,) on
    each line, the others at ``price_crb``/``price_rrb``, after its market's first
    admission pass: whether that settled it, the mover's utility there if so (else a
    lower bound on it, :func:`pass_bounds`), and a bound on its utility at every price
    from that of ``bounded_from`` (B, <= levels) down to that of ``levels``, however the
    market settles; (S, L, B) each. Where ``bounded_from`` is ``levels``, the bound is at
    that price alone, and tighter.

    With every server's blocks all free, the devices' options at a server depend only
    on that server's prices: one table of options per level serves every server's move
    to it, and the others' options are those at the prices as they are. The bounds rest
    on this: whatever capacity is left, a device buys no more blocks of a split than it
    would with all of them at a price as low or lower, and never an option whose utility
    there would not beat running locally and idling (its utility only falls with a
    higher price or less capacity). So over the range of prices the mover earns at most
    every device's largest such purchase at the lowest price, paid at the highest
    price's margins, and at most its capacity's worth; at one level, at most what the
    first pass settled, plus the pending devices' largest such purchases, at most what
    it has left.
    """
    scenario, options, terms, here = game.scenario, game.options, game.terms, game.here
    price_crb, price_rrb, servers = game.price_crb, game.price_rrb, game.scenario.servers
    kernel = offload_options(settings)
    all_crbs, all_rrbs = _blocks_of(servers, "crbs"), _blocks_of(servers, "rrbs")

    def first_pass(table, offers, crb, rrb, high_crb, high_rrb, server):
        """One move: ``server`` at (``crb``, ``rrb``), its options ``table`` (M, S, A) and
        their best ``offers`` (M, S); the range's bound has its margins at (``high_crb``,
        ``high_rrb``)."""
        moved_crb = price_crb.at[server].set(crb[server])
        moved_rrb = price_rrb.at[server].set(rrb[server])
        mine = (jnp.arange(servers.num_servers) == server)[None, :]
        mixed = jax.tree.map(lambda t, h: jnp.where(mine, t, h), offers, here)
        request = choose_offer(scenario, options, mixed)
        first = admission_pass(
            scenario, moved_crb, moved_rrb, lambda *_: request, open_market(scenario)
        )
        # What the pass sold, and at least what the move earns if it left MDs pending.
        value, lower, _ = pass_bounds(scenario, moved_crb, moved_rrb, first, 0.0)
        value, lower = value[server], lower[server]
        # A device offloads only to an offer within 1e-12 of its best (choose_offer) and
        # above its local option and idling. At this price or a higher one its best offer
        # is at most the best here (or its alternative), which bounds that slack.
        best = jnp.max(mixed.utility, axis=1)  # -inf: no offer at all
        scale = jnp.maximum(
            jnp.abs(game.alternative), jnp.where(best > -jnp.inf, jnp.abs(best), 1.0)
        )
        beats = game.alternative - 2e-12 * jnp.maximum(scale, 1.0)
        usable = options.offload[:, server, :] & (table.utility[:, server, :] > beats[:, None])

        # From one price to itself the first pass is known: what it settled, plus what
        # the devices still pending could buy of what is left; over a range of prices,
        # what every device could buy of all the blocks.
        alone = (high_crb[server] == crb[server]) & (high_rrb[server] == rrb[server])
        margin_crb = jnp.maximum(high_crb[server] - servers.cost_crb[server], 0.0)
        margin_rrb = jnp.maximum(high_rrb[server] - servers.cost_rrb[server], 0.0)
        pays = table.crbs[:, server, :] * margin_crb + table.rrbs[:, server, :] * margin_rrb
        buyers = usable & jnp.where(alone, ~first.settled, True)[:, None]
        demand = jnp.sum(jnp.max(jnp.where(buyers, pays, 0.0), axis=1))
        has_crbs = jnp.where(alone, first.crbs_left[server], all_crbs[server])
        has_rrbs = jnp.where(alone, first.rrbs_left[server], all_rrbs[server])
        capacity = has_crbs * margin_crb + has_rrbs * margin_rrb
        bound = jnp.where(alone, value, 0.0) + jnp.minimum(demand, capacity)
        return ~admitting(scenario, first), lower, bound

    def passes(levels, bounded_from):
        crb, rrb = move_prices(servers, settings, price_crb, price_rrb, levels)  # (L, B, S)
        high_crb, high_rrb = move_prices(servers, settings, price_crb, price_rrb, bounded_from)
        tables = jax.vmap(
            jax.vmap(lambda c, r: kernel(scenario, c, r, all_crbs, all_rrbs, terms=terms))
        )(crb, rrb)  # (L, B, M, S, A)
        offers = jax.vmap(jax.vmap(partial(best_splits, options)))(tables)  # (L, B, M, S)
        over_lines_and_levels = (0, 0, 0, 0, 0, 0, None)
        per_move = jax.vmap(  # servers, lines, levels
            jax.vmap(
                jax.vmap(first_pass, in_axes=over_lines_and_levels), in_axes=over_lines_and_levels
            ),
            in_axes=(None,) * 6 + (0,),
        )
        return per_move(
            tables, offers, crb, rrb, high_crb, high_rrb, jnp.arange(servers.num_servers)
        )  # (S, L, B)

    return passes


def worth_blocks(servers, settings, price_crb, price_rrb, movers, floor, top):
    """(blocks,) the blocks of levels in which some mover's capacity is worth at least
    ``floor`` at the block's highest price: only there can a move beat it. No market is
    needed; ``top`` (P,) is each mover's last level."""
    start = jnp.arange(_blocks(settings), dtype=jnp.int32) * LEVEL_BLOCK
    crb, rrb = move_prices(servers, settings, price_crb, price_rrb, start)  # (L, blocks, S)
    margin_crb = jnp.maximum(crb - servers.cost_crb, 0.0)
    margin_rrb = jnp.maximum(rrb - servers.cost_rrb, 0.0)
    capacity = _blocks_of(servers, "crbs") * margin_crb + _blocks_of(servers, "rrbs") * margin_rrb
    reach = (start[:, None] <= top) & (capacity[..., movers] >= _below(floor))
    return jnp.any(reach, axis=(0, 2))


SCREEN_SLOTS = 16
"""Items of work :func:`screen` does at once in a batch of as many games or more (each
:data:`LEVEL_BLOCK` levels of one game)."""


def screen(games: ScreenGame, settings: GameSettings, movers):
    """The movers' moves in a batch of ``games`` (leading axis N) after their first
    admission pass (:func:`first_passes`), (N, P, L, K) each of settled, value and
    bound, screened by blocks of :data:`LEVEL_BLOCK` levels.

    First the moves to the lowest price of each block worth it (``games.worth``),
    bounding every move in their blocks; then, level by level, the blocks whose bound
    reaches the best known (``floor``, or a move's value or lower bound at a block's
    lowest price). The moves to the other blocks' levels come out unsettled and bounded
    by -inf: none of them can reach the best. Both are a queue of work over the whole batch,
    :data:`SCREEN_SLOTS` items a step (an item: a game's next :data:`LEVEL_BLOCK` block
    ends, or one of its open blocks), so that no game waits for another and the first
    passes are compiled once."""
    count, blocks, width = games.floor.shape[0], _blocks(settings), LEVEL_BLOCK
    slots = min(SCREEN_SLOTS, count)  # a game alone (best_response's turns): one at a time
    start = jnp.arange(blocks, dtype=jnp.int32) * width
    last = jnp.minimum(start + width - 1, settings.price_levels - 1)
    candidates = jax.vmap(
        lambda worth: jnp.nonzero(worth, size=blocks + width, fill_value=blocks)[0]
    )(games.worth).astype(jnp.int32)  # (N, blocks + width)
    groups = -(-jnp.sum(games.worth, axis=1, dtype=jnp.int32) // width)  # (N,)
    bounding_items = jnp.sum(groups)
    bounding_steps = -(-bounding_items // slots)
    # A spare game and a spare block take the writes of items that are none.
    shape = (count + 1, movers.shape[0], _lines(settings))
    settled = jnp.zeros((*shape, blocks + 1), bool)
    bound = jnp.full(settled.shape, -jnp.inf, games.price_crb.dtype)
    coarse = (settled, bound, bound)
    fine = tuple(jnp.repeat(x, width, axis=3) for x in coarse)

    def opened(coarse):
        """(N, blocks) which blocks to screen level by level."""
        settled, value, bound = (x[:count, ..., :blocks] for x in coarse)
        valid = last <= games.top[..., None, None]
        reach = jax.vmap(_reaching)(settled, value, bound, valid, games.floor)[0]
        return games.worth & jnp.any(reach, axis=(1, 2))

    def item_of(counts, item):
        """(game, its item) of ``item`` in the list of every game's ``counts`` (N,)."""
        ends = jnp.cumsum(counts)
        game = jnp.searchsorted(ends, item, side="right").astype(jnp.int32)
        return game, item - (ends - counts)[jnp.minimum(game, count - 1)]

    def busy(carry):
        step, coarse, _ = carry
        return (step < bounding_steps) | (
            step < bounding_steps + -(-jnp.sum(opened(coarse)) // slots)
        )

    def work(carry):
        step, coarse, fine = carry
        bounding = step < bounding_steps
        item = jnp.where(bounding, step, step - bounding_steps) * slots + jnp.arange(slots)
        # Bounding: a game's next `width` candidate blocks, at their lowest prices.
        game, group = item_of(groups, item)
        chosen = jax.vmap(
            lambda g, k: jax.lax.dynamic_slice_in_dim(candidates[g], k * width, width)
        )(jnp.minimum(game, count - 1), jnp.maximum(group, 0))  # (slots, width)
        ends = jnp.minimum(chosen, blocks - 1)
        # Screening: one open block of a game, level by level.
        still = opened(coarse)
        open_game, rank = item_of(jnp.sum(still, axis=1, dtype=jnp.int32), item)
        order = jax.vmap(lambda g: jnp.nonzero(still[g], size=blocks, fill_value=blocks)[0])(
            jnp.minimum(open_game, count - 1)
        )
        block = jnp.take_along_axis(order, jnp.clip(rank, 0, blocks - 1)[:, None], axis=1)[:, 0]
        levels = block[:, None] * width + jnp.arange(width, dtype=jnp.int32)
        game = jnp.where(bounding, game, open_game)  # `count` past the last item: the spare
        on = jax.tree.map(lambda x: x[jnp.minimum(game, count - 1)], games)
        settled, value, bound = jax.vmap(
            lambda one, at, high: tuple(x[movers] for x in first_passes(one, settings)(at, high))
        )(
            on,
            jnp.where(bounding, last[ends], levels),
            jnp.where(bounding, start[ends], levels),
        )  # (slots, P, L, width)
        into = lambda x, target, new: x.at[game[:, None], :, :, target].set(  # noqa: E731
            jnp.moveaxis(new, 3, 1)
        )
        to = jnp.where(bounding, chosen, blocks)
        coarse = tuple(
            into(x, to, new) for x, new in zip(coarse, (settled, value, bound), strict=True)
        )
        at = jnp.where(bounding, blocks, block)[:, None] * width + jnp.arange(width)
        fine = tuple(into(x, at, new) for x, new in zip(fine, (settled, value, bound), strict=True))
        return step + 1, coarse, fine

    fine = jax.lax.while_loop(busy, work, (jnp.int32(0), coarse, fine))[2]
    return tuple(x[:count, ..., : settings.price_levels] for x in fine)


def _top(scenario, options, movers):
    """(P,) each mover's last grid level, -1 for movers that do not play."""
    servers = scenario.servers
    plays = (servers.active & options.servers_play)[movers]
    return jnp.where(plays, top_step(servers)[movers], -1)


def _one(tree):
    """A batch of one."""
    return jax.tree.map(lambda x: x[None], tree)


def _reaching(settled, value, bound, valid, floor):
    """``(reach, lower)``: which of each mover's moves, or ranges of moves, may hold its
    best or the first level of it, (P, L, B), and at most its best (or ``floor``), (P,).

    From the first passes of moves ``valid`` (the ranges' lowest prices): ``settled``,
    ``value`` (the utility, else a lower bound) and the ``bound`` of each move or range,
    (P, L, B) each, lines and levels in the grid's order. A move reaches with a bound at
    least ``lower`` (to within the slack of ties) and above every utility settled before
    it: below one of those, it can neither beat the best nor come first among ties."""
    lower = jnp.maximum(jnp.max(jnp.where(valid, value, -jnp.inf), axis=(1, 2)), floor)
    settled_value = jnp.where(valid & settled, value, -jnp.inf).reshape(value.shape[0], -1)
    best_so_far = jax.lax.cummax(settled_value, axis=1)
    before = jnp.pad(best_so_far[:, :-1], ((0, 0), (1, 0)), constant_values=-jnp.inf)
    before = before.reshape(value.shape)
    return (bound >= _below(lower)[:, None, None]) & (bound > before), lower


def _below(lower):
    """What a move must reach to be kept: ``lower`` less the slack within which values
    count as equal (:func:`~edgesplit.game.best_response.first_maximum`)."""
    return lower - 1e-12 * jnp.maximum(jnp.abs(lower), 1.0)


def best_on_grid(
    scenario: Scenario,
    options: Options,
    settings: GameSettings,
    price_crb,
    price_rrb,
    movers,
    floor,
):
    """Each mover's best utility (eq. 11) over its grid moves, or ``floor`` (P,) where no
    move reaches it, and the grid level at which it first reaches that (highest price
    first; values within 1e-12 relative count as equal), (P,) each, for ``movers`` (P,)
    server indices; the other servers' prices stay at ``price_crb``/``price_rrb`` (S,).
    Movers that do not play get ``floor`` and level 0.

    With ``settings.price_levels`` set (the sweeps and scenario files set it), the moves
    are screened first (:func:`screen`): a market settled by its first admission pass is
    known, and one whose bound is below the best known (or ``floor``) cannot be the
    best; only the others are settled, on the slots of
    :func:`~edgesplit.game.market_queue.fold_markets`. Otherwise every move is settled
    there, numbered level-major.
    """
    if not settings.price_levels:
        return _best_by_queue(scenario, options, settings, price_crb, price_rrb, movers, floor)
    game = screen_game(scenario, options, settings, price_crb, price_rrb, movers, floor)
    moves = jax.tree.map(lambda x: x[0], open_moves(_one(game), settings, movers))
    return _floored(
        *settle_open(scenario, options, settings, price_crb, price_rrb, movers, floor, moves), floor
    )


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class OpenMoves:
    """The screened moves of :func:`best_on_grid`: the utility of those known, and the
    others that may still be best, highest bound first."""

    known: jax.Array  # (P·L·K,) the mover's utility where the first pass settled, else -inf
    bound: jax.Array  # (P·L·K,) at least the mover's utility, however the market settles
    order: jax.Array  # (P·L·K,) int32, the open moves' indices first, then the others
    count: jax.Array  # () int32, open moves
    lower: jax.Array  # (P,) at most each mover's best: its best known or lower bound, or floor

    @classmethod
    def of(cls, known, bound, still, lower) -> OpenMoves:
        """From each move's ``known`` utility, its ``bound`` and whether it is ``still``
        open, (P·L·K,) each, and each mover's ``lower`` (P,)."""
        order = jnp.argsort(jnp.where(still, -bound, jnp.inf), stable=True).astype(jnp.int32)
        return cls(known, bound, order, jnp.sum(still, dtype=jnp.int32), lower)


def open_moves(games: ScreenGame, settings: GameSettings, movers) -> OpenMoves:
    """The moves :func:`screen` leaves open in each of a batch of ``games``: not settled by
    their first pass, with a bound at least the best known (or ``floor``); leading axis
    N."""

    def left(top, floor, settled, value, bound):
        valid = jnp.arange(settings.price_levels)[None, None, :] <= top[:, None, None]
        known = jnp.where(valid & settled, value, -jnp.inf)
        reach, lower = _reaching(settled, value, bound, valid, floor)
        return OpenMoves.of(known.ravel(), bound.ravel(), (valid & ~settled & reach).ravel(), lower)

    return jax.vmap(left)(games.top, games.floor, *screen(games, settings, movers))


def settle_open(
    scenario, options, settings, price_crb, price_rrb, movers, floor, moves, first_request=None
):
    """:func:`best_on_grid` from its :class:`OpenMoves`: the open moves' markets settled
    on the slots of :func:`~edgesplit.game.market_queue.fold_markets`, their first
    admission pass from ``first_request(mover, level)`` where given; a mover's best and
    its level as found, even where below ``floor`` (none of its moves reaches it, and
    those below it may not have been settled)."""
    servers = scenario.servers
    lines, levels = _lines(settings), settings.price_levels
    size = moves.order.shape[0]

    def move_of(index):
        move = moves.order[index]
        return move // (lines * levels), (move // levels) % lines, move % levels

    def prices_of(index):
        mover, line, level = move_of(index)
        crb, rrb = move_prices(servers, settings, price_crb, price_rrb, level[None])
        server = movers[mover]
        return (
            price_crb.at[server].set(crb[line, 0, server]),
            price_rrb.at[server].set(rrb[line, 0, server]),
        )

    def wanted(index, found):
        """Whether open move ``index`` may still beat its mover's best found so far."""
        mover = move_of(index)[0]
        best = jnp.maximum(moves.lower[mover], jnp.max(found.reshape(movers.shape[0], -1)[mover]))
        return moves.bound[moves.order[index]] >= _below(best)

    def record(found, indices, _, utility, settled_now):
        move = moves.order[jnp.minimum(indices, size - 1)]
        own = utility[jnp.arange(indices.shape[0]), movers[move // (lines * levels)]]
        return found.at[jnp.where(settled_now, move, size)].set(own, mode="drop")

    found = fold_markets(
        scenario,
        options,
        settings,
        moves.count,
        prices_of,
        record,
        jnp.full_like(moves.known, -jnp.inf),
        first_request=None
        if first_request is None
        else lambda index: first_request(*(move_of(index)[i] for i in (0, 2))),
        wanted=wanted,
    )
    values = jnp.maximum(moves.known, found).reshape(movers.shape[0], -1)
    index, best = first_maximum(values)
    return best, (index % levels).astype(jnp.int32)


def _floored(best, level, floor):
    """``(best, level)``, or ``(floor, 0)`` where ``best`` is below ``floor``."""
    reaches = best >= floor
    return jnp.where(reaches, best, floor), jnp.where(reaches, level, 0).astype(jnp.int32)


def _best_by_queue(scenario, options, settings, price_crb, price_rrb, movers, floor):
    """:func:`best_on_grid` without the levels known: every move's market, numbered
    level-major (every mover's moves to level 0, then to level 1, ...), settled on the
    slots of :func:`~edgesplit.game.market_queue.fold_markets`."""
    servers = scenario.servers
    lines = _lines(settings)
    per_level = movers.shape[0] * lines
    plays = (servers.active & options.servers_play)[movers]
    top = jnp.where(plays, top_step(servers)[movers], -1)  # (P,) each mover's last level
    count = (jnp.max(top) + 1) * per_level  # 0 when no mover plays

    def move(index):
        level, rest = index // per_level, index % per_level
        server, line = movers[rest // lines], rest % lines
        crb, rrb = move_prices(servers, settings, price_crb, price_rrb, level[None])
        return (
            price_crb.at[server].set(crb[line, 0, server]),
            price_rrb.at[server].set(rrb[line, 0, server]),
        )

    def record(best_level, indices, _, utility, settled):
        def fold(slot, best_level):  # in slot order: the same sequence every time
            best, level = best_level
            index = indices[slot]
            mover, at = (index % per_level) // lines, index // per_level
            value = utility[slot, movers[mover]]
            valid = settled[slot] & (at <= top[mover])
            old, old_level = best[mover], level[mover]
            slack = 1e-12 * jnp.maximum(jnp.abs(old), 1.0)
            finite = jnp.isfinite(old)
            higher = jnp.where(finite, value > old + slack, value > -jnp.inf)
            tie = finite & (value >= old - slack) & (at < old_level)
            return (
                best.at[mover].set(jnp.where(valid, jnp.maximum(old, value), old)),
                level.at[mover].set(jnp.where(valid & (higher | tie), at, old_level)),
            )

        return jax.lax.fori_loop(0, indices.shape[0], fold, best_level)

    initial = (jnp.full(movers.shape, -jnp.inf, price_crb.dtype), jnp.zeros_like(movers))
    best, level = fold_markets(scenario, options, settings, count, move, record, initial)
    return _floored(best, level, floor)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class OfferTable:
    """Each device's best offer from each server with every server at each grid level
    (a level past a server's last at its last) and every block free; joint prices."""

    offers: ServerOffers  # (K, M, S)
    most_paid: jax.Array  # (K, M, S) the most a device could pay the server there, at its margins
    price: jax.Array  # (K, S) each server's price at each level


def offer_table(scenario: Scenario, options: Options, settings: GameSettings) -> OfferTable:
    """The :class:`OfferTable` of ``settings.price_levels`` levels (joint prices).

    With every block free, a device's options at a server depend only on that server's
    price, so these tables give every market's first admission pass on the grid, the
    others' prices held or not. ``most_paid`` bounds what a device still pending after
    that pass can pay the server at that price, however the market settles: a purchase
    at what is left is at most as many blocks of the same split, and of a split whose
    utility with every block free beats running locally and idling (to within 1e-9,
    far wider than the 1e-12 within which offers count as equal)."""
    servers = scenario.servers
    top = jnp.where(servers.active, top_step(servers), 0)
    level = jnp.minimum(jnp.arange(settings.price_levels)[:, None], top)  # (K, S)
    price, _ = jax.vmap(lambda at: prices_at(servers, jnp.stack([at, at], axis=1)))(level)
    free = open_market(scenario)
    terms, kernel = offload_terms(scenario), offload_options(settings)
    alternative = jnp.maximum(local_option(scenario, options)[0], 0.0)[:, None, None]

    def at_level(price):
        table = kernel(scenario, price, price, free.crbs_left, free.rrbs_left, terms=terms)
        slack = 1e-9 * jnp.maximum(jnp.maximum(jnp.abs(table.utility), alternative), 1.0)
        usable = options.offload & (table.utility > alternative - slack)
        margin_crb = jnp.maximum(price - servers.cost_crb, 0.0)[None, :, None]
        margin_rrb = jnp.maximum(price - servers.cost_rrb, 0.0)[None, :, None]
        pays = table.crbs * margin_crb + table.rrbs * margin_rrb
        return best_splits(options, table), jnp.max(jnp.where(usable, pays, 0.0), axis=2)

    offers, most_paid = jax.vmap(at_level)(price)
    return OfferTable(offers, most_paid, price)


def offers_at(table: OfferTable, levels):
    """(M, S) each device's offers with each server at its level ``levels`` (S,)."""
    at = (levels, slice(None), jnp.arange(levels.shape[0]))
    return jax.tree.map(lambda x: x[at].T, table.offers)


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


def best_on_table(
    scenario: Scenario, options: Options, settings: GameSettings, table: OfferTable, levels,
    movers, floor, skip=None,
):  # fmt: skip
    """:func:`best_on_grid` with joint prices, every server at its grid level ``levels``
    (S,), from the game's :class:`OfferTable`: every move's first admission pass is a
    choice among table entries, which settles it or bounds it (:func:`pass_bounds`);
    only the moves whose upper bound reaches the best known or lower bound are settled
    in full, their first pass from the table. A mover's best is as found, even where
    below ``floor`` (:func:`settle_open`); where ``skip`` (P,) holds, none of its moves
    is settled in full and its result means nothing."""
    servers = scenario.servers
    columns = jnp.arange(servers.num_servers)
    price = table.price[levels, columns]
    here = offers_at(table, levels)
    free = open_market(scenario)

    def move(mover, level):
        """The prices and the devices' request with server ``movers[mover]`` at ``level``."""
        server = movers[mover]
        mine = (columns == server)[None, :]
        mixed = jax.tree.map(lambda t, h: jnp.where(mine, t[level], h), table.offers, here)
        moved = price.at[server].set(table.price[level, server])
        return server, moved, choose_offer(scenario, options, mixed)

    def first_pass(mover, level):
        server, moved, request = move(mover, level)
        first = admission_pass(scenario, moved, moved, lambda *_: request, free)
        paid = table.most_paid[levels.at[server].set(level.astype(levels.dtype)), :, columns].T
        value, lower, upper = pass_bounds(scenario, moved, moved, first, paid)
        return ~admitting(scenario, first), value[server], lower[server], upper[server]

    every = jnp.arange(settings.price_levels)
    settled, value, lower, bound = jax.vmap(
        lambda mover: jax.vmap(lambda level: first_pass(mover, level))(every)
    )(jnp.arange(movers.shape[0]))  # (P, K)
    valid = every[None, :] <= _top(scenario, options, movers)[:, None]
    known = jnp.where(valid & settled, value, -jnp.inf)
    # A move the first pass leaves open still earns its lower bound (its utility where
    # settled): no move below that can be best.
    reach, least = _reaching(*(x[:, None] for x in (settled, lower, bound, valid)), floor)
    still = valid & ~settled & reach[:, 0]
    if skip is not None:
        still &= ~skip[:, None]
    moves = OpenMoves.of(known.ravel(), bound.ravel(), still.ravel(), least)
    return settle_open(
        scenario, options, settings, price, price, movers, floor, moves,
        first_request=lambda mover, level: move(mover, level)[2],
    )  # fmt: skip


def server_regret(
    scenario: Scenario, options: Options, settings: GameSettings, price_crb, price_rrb, utility
):
    """(S,) the most each server gains by moving its price anywhere on its grid, the
    others' fixed, from its ``utility`` (S,) at these prices: >= 0, and 0 for servers
    that do not play. Exact with joint prices, a lower bound with separate ones; NaN
    without ``settings.grid_certificate``."""
    if not settings.grid_certificate:
        return jnp.full_like(utility, jnp.nan)
    movers = jnp.arange(scenario.servers.num_servers)
    best, _ = best_on_grid(scenario, options, settings, price_crb, price_rrb, movers, utility)
    return _regret(scenario, options, best, utility)


def regret_on_table(
    scenario: Scenario, options: Options, settings: GameSettings, table: OfferTable, levels,
    utility, known=None, known_best=None,
):  # fmt: skip
    """:func:`server_regret` with every server at its grid level ``levels`` (S,), from the
    game's :class:`OfferTable` (:func:`best_on_table`); where ``known`` (S,) holds, the
    server's best on its line is ``known_best`` (S,), not searched again."""
    if not settings.grid_certificate:
        return jnp.full_like(utility, jnp.nan)
    movers = jnp.arange(scenario.servers.num_servers)
    best, _ = best_on_table(scenario, options, settings, table, levels, movers, utility, known)
    if known is not None:
        best = jnp.where(known, known_best, best)
    return _regret(scenario, options, best, utility)


def _regret(scenario, options, best, utility):
    """(S,) each server's gain from its ``best`` move, 0 for servers that do not play."""
    plays = scenario.servers.active & options.servers_play
    return jnp.where(plays, jnp.maximum(best - utility, 0.0), 0.0)


SETTLED_TOGETHER = 16
"""Games whose open moves :func:`batch_regret` settles in one vmapped queue: games of
about as many open moves, so that none waits long for the others."""


def batch_regret(scenarios, options, settings, price_crb, price_rrb, utility):
    """:func:`server_regret` for a batch of games (leading axis). The games' moves are
    screened in one queue (:func:`screen`); their open moves are then settled
    :data:`SETTLED_TOGETHER` games at a time, ordered by how many they have: a vmapped
    queue runs as long as its game with the most."""
    num_servers = scenarios.servers.crb_hz.shape[-1]
    movers = jnp.arange(num_servers)
    if not settings.price_levels or not settings.grid_certificate:
        return jax.vmap(partial(server_regret, settings=settings))(
            scenarios, options, price_crb=price_crb, price_rrb=price_rrb, utility=utility
        )
    games = (scenarios, options, price_crb, price_rrb, utility)
    screened = jax.vmap(
        lambda sc, op, crb, rrb, here: screen_game(sc, op, settings, crb, rrb, movers, here)
    )(*games)
    moves = open_moves(screened, settings, movers)
    order = jnp.argsort(moves.count)
    take = lambda tree: jax.tree.map(lambda x: x[order], tree)  # noqa: E731

    def settle(game):
        (scenario, option, crb, rrb, here), opened = game
        best, _ = settle_open(scenario, option, settings, crb, rrb, movers, here, opened)
        plays = scenario.servers.active & option.servers_play
        return jnp.where(plays, jnp.maximum(best - here, 0.0), 0.0)

    regret = jax.lax.map(settle, (take(games), take(moves)), batch_size=SETTLED_TOGETHER)
    return jnp.zeros_like(regret).at[order].set(regret)
