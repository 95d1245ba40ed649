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

Every move's market makes its first admission pass from the game's table of offers
(:mod:`edgesplit.game.offers`; one per line, ``GameSettings.price_levels`` rows), which
settles the move or bounds the mover's utility there. Only the moves whose bound may
still reach the best are settled in full, highest bound first, a few at a time per
scenario (:func:`~edgesplit.game.market.fold_markets`), each passed over once the best
found is above its bound; a move whose bound is no more than a utility known at a higher
price (equal at best, it comes after it among ties) is not settled either.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from edgesplit.config import GameSettings
from edgesplit.game.best_response import (
    best_splits,
    choose_offer,
    first_maximum,
    offload_options,
    offload_terms,
)
from edgesplit.game.market import fold_markets
from edgesplit.game.offers import ROW_BLOCK, OfferTable, first_pass, offer_table
from edgesplit.game.prices import top_step
from edgesplit.model.scenario import Scenario
from edgesplit.model.schemes import Options


def _lines(settings: GameSettings) -> int:
    return 1 if settings.joint_price else 3


def _top(scenario, options, movers):
    """(P,) each mover's last grid level, -1 for movers that do not play."""
    servers = scenario.servers
    plays = (servers.active & options.servers_play)[movers]
    return jnp.where(plays, top_step(servers)[movers], -1)


def _below(lower):
    """What a move must reach to be kept: ``lower`` less the slack within which values
    count as equal (:func:`~edgesplit.game.best_response.first_maximum`)."""
    return lower - 1e-12 * jnp.maximum(jnp.abs(lower), 1.0)


def _reaching(settled, value, bound, valid, floor):
    """``(reach, lower)``: which of each mover's moves may hold its best or the first
    level of it, (P, L, K), and at most its best (or ``floor``), (P,).

    From the first passes of moves ``valid``: ``settled``, ``value`` (the utility, else a
    lower bound) and the ``bound`` of each move, (P, L, K) each, lines and levels in the
    grid's order. A move reaches with a bound at least ``lower`` (to within the slack of
    ties) and above every utility settled before it: below one of those, it can neither
    beat the best nor come first among ties."""
    lower = jnp.maximum(jnp.max(jnp.where(valid, value, -jnp.inf), axis=(1, 2)), floor)
    settled_value = jnp.where(valid & settled, value, -jnp.inf).reshape(value.shape[0], -1)
    best_so_far = jax.lax.cummax(settled_value, axis=1)
    before = jnp.pad(best_so_far[:, :-1], ((0, 0), (1, 0)), constant_values=-jnp.inf)
    before = before.reshape(value.shape)
    return (bound >= _below(lower)[:, None, None]) & (bound > before), lower


def line_tables(
    scenario: Scenario, options: Options, settings: GameSettings, price_crb, price_rrb,
    table: OfferTable | None = None,
) -> OfferTable:  # fmt: skip
    """The tables of offers of every server's moves from these prices (S,) each, stacked
    (leaves (L, K, ...)), one per line: the grid's (``table`` where given); with separate
    prices also the CRB price alone and the RRB price alone, each server's other price
    held where it is."""
    if table is None:
        table = offer_table(scenario, options, settings)
    if settings.joint_price:
        return jax.tree.map(lambda x: x[None], table)
    grid, terms = table.price_crb, offload_terms(scenario)
    held_crb, held_rrb = (jnp.broadcast_to(p, grid.shape) for p in (price_crb, price_rrb))
    lines = [table] + [
        offer_table(scenario, options, settings, line, terms)
        for line in ((grid, held_rrb), (held_crb, grid))
    ]
    return jax.tree.map(lambda *x: jnp.stack(x), *lines)


def _move(tables: OfferTable, here, price_crb, price_rrb, server, line, level):
    """Server ``server`` moved to ``level`` on ``line``: the prices (S,) each, and every
    device's offers (M, S), the mover's from the line's table, the others' ``here``."""
    mine = (jnp.arange(price_crb.shape[0]) == server)[None, :]
    offers = jax.tree.map(lambda t, h: jnp.where(mine, t[line, level], h), tables.offers, here)
    crb = price_crb.at[server].set(tables.price_crb[line, level, server])
    rrb = price_rrb.at[server].set(tables.price_rrb[line, level, server])
    return crb, rrb, offers


def move_passes(
    scenario: Scenario, options: Options, settings: GameSettings, tables: OfferTable, here,
    price_crb, price_rrb, movers,
):  # fmt: skip
    """``(settled, value, lower, upper)``, (P, L, K) each: each mover's move to each level
    on each line, its market's first admission pass from the ``tables``
    (:func:`line_tables`), the others' offers ``here`` (M, S) as at these prices: whether
    the pass settled the market, and the mover's utility and its bounds there
    (:func:`~edgesplit.game.offers.first_pass`). Rows above a table's first hold no offer:
    nobody buys from the mover there, and its utility is 0, known without a pass."""
    levels, lines = settings.price_levels, _lines(settings)
    blocks = -(-levels // ROW_BLOCK)

    def one(mover, line, level):
        server = movers[mover]
        crb, rrb, offers = _move(tables, here, price_crb, price_rrb, server, line, level)
        # The row's most_paid at every server: only the mover's bounds are used.
        paid = tables.most_paid[line, level]
        settled, value, lower, upper = first_pass(scenario, options, crb, rrb, offers, paid)
        return settled, value[server], lower[server], upper[server]

    def make(carry):
        block, passes = carry
        at = block * ROW_BLOCK + jnp.arange(ROW_BLOCK)
        new = jax.vmap(
            lambda mover: jax.vmap(
                lambda line: jax.vmap(lambda level: one(mover, line, level))(
                    jnp.minimum(at, levels - 1)
                )
            )(jnp.arange(lines))
        )(jnp.arange(movers.shape[0]))
        into = jnp.where(at < levels, at, levels)
        return block - 1, tuple(
            x.at[:, :, into].set(y, mode="drop") for x, y in zip(passes, new, strict=True)
        )

    first = jnp.min(tables.first_row) // ROW_BLOCK
    zero = jnp.zeros((movers.shape[0], lines, levels), price_crb.dtype)
    start = (jnp.ones(zero.shape, bool), zero, zero, zero)  # no offer: 0, known
    return jax.lax.while_loop(
        lambda carry: carry[0] >= first, make, (jnp.int32(blocks - 1), start)
    )[1]


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class OpenMoves:
    """The moves of :func:`best_on_table`: the utility of those known, and the others that
    may still be best, highest bound first."""

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


def open_moves(
    scenario: Scenario, options: Options, settings: GameSettings, tables: OfferTable, here,
    price_crb, price_rrb, movers, floor, skip=None,
) -> OpenMoves:  # fmt: skip
    """The moves of every mover that its first pass (:func:`move_passes`) leaves open and
    that may still hold its best or the first level of it; where ``skip`` (P,) holds,
    none of the mover's."""
    settled, value, lower, bound = move_passes(
        scenario, options, settings, tables, here, price_crb, price_rrb, movers
    )
    valid = jnp.arange(settings.price_levels) <= _top(scenario, options, movers)[:, None, None]
    known = jnp.where(valid & settled, value, -jnp.inf)
    # A move the first pass leaves open still earns its lower bound (its utility where
    # settled): no move below that can be best.
    reach, least = _reaching(settled, lower, bound, valid, floor)
    still = valid & ~settled & reach
    if skip is not None:
        still &= ~skip[:, None, None]
    return OpenMoves.of(known.ravel(), bound.ravel(), still.ravel(), least)


def settle_open(
    scenario: Scenario, options: Options, settings: GameSettings, tables: OfferTable, here,
    price_crb, price_rrb, movers, moves: OpenMoves,
):  # fmt: skip
    """Each mover's best utility over its grid moves and the level at which it first
    reaches it, (P,) each, even where below its floor (none of its moves reaches it, and
    those below it may not have been settled): the ``moves`` left open settled in full,
    highest bound first, on the slots of :func:`~edgesplit.game.market.fold_markets`
    (their first pass from the ``tables``, the others' offers ``here``), each passed over
    once its mover's best found is above its bound."""
    lines, levels = _lines(settings), settings.price_levels
    size = moves.order.shape[0]

    def move_of(index):
        move = moves.order[index]
        mover, line, level = move // (lines * levels), (move // levels) % lines, move % levels
        return mover, _move(tables, here, price_crb, price_rrb, movers[mover], line, level)

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
        scenario, options, settings, moves.count,
        lambda index: move_of(index)[1][:2], record, jnp.full_like(moves.known, -jnp.inf),
        first_request=lambda index: choose_offer(scenario, options, move_of(index)[1][2]),
        wanted=wanted,
    )  # fmt: skip
    values = jnp.maximum(moves.known, found).reshape(movers.shape[0], -1)
    index, best = first_maximum(values)
    return best, (index % levels).astype(jnp.int32)


def best_on_table(
    scenario: Scenario, options: Options, settings: GameSettings, tables: OfferTable, here,
    price_crb, price_rrb, movers, floor, skip=None,
):  # fmt: skip
    """:func:`settle_open` of the :func:`open_moves` from these prices (S,) each: each
    mover's best and its level, the first passes from the ``tables`` (:func:`line_tables`),
    the others' offers ``here`` (M, S); a mover's result where ``skip`` (P,) holds means
    nothing."""
    at = (tables, here, price_crb, price_rrb, movers)
    moves = open_moves(scenario, options, settings, *at, floor, skip)
    return settle_open(scenario, options, settings, *at, moves)


def _floored(best, level, floor):
    """``(best, level)``, or ``(floor, 0)`` where ``best`` is below ``floor``."""
    reaches = best >= floor
    return jnp.where(reaches, best, floor), jnp.where(reaches, level, 0).astype(jnp.int32)


def moves_from(scenario, options, settings, price_crb, price_rrb, table=None):
    """``(tables, here)``: the :func:`line_tables` of the moves from these prices (S,)
    each (the game's ``table`` where given), and the devices' offers there, every block
    free, (M, S)."""
    servers = scenario.servers
    free = jnp.where(servers.active, servers.crbs, 0), jnp.where(servers.active, servers.rrbs, 0)
    here = best_splits(options, offload_options(settings)(scenario, price_crb, price_rrb, *free))
    return line_tables(scenario, options, settings, price_crb, price_rrb, table), here


def server_regret(
    scenario: Scenario, options: Options, settings: GameSettings, price_crb, price_rrb,
    utility, table: OfferTable | None = None, remembered=None,
):  # fmt: skip
    """(S,) the most each server gains by moving its price anywhere on its grid, the
    others' fixed, from its ``utility`` (S,) at these prices: >= 0, and 0 for servers
    that do not play (:func:`best_on_table`, from the game's ``table`` of offers where
    given). ``remembered`` = (known, best), (S,) each, where given: a server whose best
    is known is not searched again. Exact with joint prices, a lower bound with separate
    ones; NaN without ``settings.grid_certificate``."""
    if not settings.grid_certificate:
        return jnp.full_like(utility, jnp.nan)
    movers = jnp.arange(scenario.servers.num_servers)
    known = None if remembered is None else remembered[0]
    at = moves_from(scenario, options, settings, price_crb, price_rrb, table)
    found = best_on_table(
        scenario, options, settings, *at, price_crb, price_rrb, movers, utility, known
    )
    best, _ = _floored(*found, utility)
    if remembered is not None:
        best = jnp.where(known, remembered[1], best)
    return regret_from(scenario, options, best, utility)


def regret_from(scenario, options, best, utility):
    """(S,) each server's gain from its ``best`` move, 0 for servers that do not play."""
    plays = scenario.servers.active & options.servers_play
    return jnp.where(plays, jnp.maximum(best - utility, 0.0), 0.0)
