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
scenario files fit), the moves are screened (:func:`screen`) and only those that may be
best are settled in full; otherwise every move is settled, the number of levels then
traced (it follows max_price / Δ). Either way the markets are settled a few at a time
per scenario (:mod:`edgesplit.game.market_queue`), none stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from edgesplit.config import GameSettings
from edgesplit.game.admission import admission_pass, admitting, open_market
from edgesplit.game.best_response import best_splits, choose_offer, first_maximum, offload_terms
from edgesplit.game.market import offload_options, server_sales
from edgesplit.game.market_queue import fold_markets
from edgesplit.game.prices import top_step
from edgesplit.model.scenario import Scenario
from edgesplit.model.schemes import Options

LEVEL_BLOCK = 8
"""Grid levels whose option tables are held at once per scenario in :func:`screen`."""


def _lines(settings: GameSettings) -> int:
    return 1 if settings.joint_price else 3


def move_prices(servers, settings: GameSettings, price_crb, price_rrb, levels):
    """(L, B, S) the CRB and RRB prices each server moves to, at each of ``levels`` (B,)
    and on each line (joint: both prices; separate: both, CRB alone, RRB alone)."""
    top = servers.max_price[None, :]
    price = jnp.clip(top - levels[:, None] * servers.price_step[None, :], 0.0, top)  # (B, S)
    if settings.joint_price:
        return price[None], price[None]
    keep_crb, keep_rrb = (jnp.broadcast_to(p, price.shape) for p in (price_crb, price_rrb))
    return jnp.stack([price, price, keep_crb]), jnp.stack([price, keep_rrb, price])


def screen(scenario: Scenario, options: Options, settings: GameSettings, price_crb, price_rrb):
    """Every move's market (each server, line and level of ``settings.price_levels``, the
    others at ``price_crb``/``price_rrb``) after its first admission pass: whether that
    settled it, the mover's utility there if so, and a bound on its utility however the
    market settles; (S, L, K) each.

    With every server's blocks all free, the devices' options at a server depend only
    on that server's prices: one table of options per level serves every server's move
    to it, and the others' options are those at the prices as they are. The bound:
    whatever capacity is left, a device buys no more blocks of a split than it would
    with all of them, and never an option whose utility would be <= 0 with all of them
    (its utility only falls with less); so the mover earns at most what every device's
    largest such purchase would pay it, and at most its capacity's worth.
    """
    servers = scenario.servers
    terms = offload_terms(scenario)
    kernel = offload_options(settings)
    all_crbs = jnp.where(servers.active, servers.crbs, 0)
    all_rrbs = jnp.where(servers.active, servers.rrbs, 0)
    here = best_splits(
        options, kernel(scenario, price_crb, price_rrb, all_crbs, all_rrbs, terms=terms)
    )

    def first_pass(table, offers, crb, rrb, server):
        """One move: ``server`` at (``crb``, ``rrb``), its options ``table`` (M, S, A) and
        their best ``offers`` (M, S)."""
        moved_crb = price_crb.at[server].set(crb[server])
        moved_rrb = price_rrb.at[server].set(rrb[server])
        mine = (jnp.arange(servers.num_servers) == server)[None, :]
        request = choose_offer(
            scenario, options, jax.tree.map(lambda t, h: jnp.where(mine, t, h), offers, here)
        )
        first = admission_pass(
            scenario, moved_crb, moved_rrb, lambda *_: request, open_market(scenario)
        )
        value = server_sales(scenario, first.choice, moved_crb, moved_rrb)[0][server]
        margin_crb = jnp.maximum(crb[server] - servers.cost_crb[server], 0.0)
        margin_rrb = jnp.maximum(rrb[server] - servers.cost_rrb[server], 0.0)
        pays = table.crbs[:, server, :] * margin_crb + table.rrbs[:, server, :] * margin_rrb
        usable = options.offload[:, server, :] & (table.utility[:, server, :] > 0)
        demand = jnp.sum(jnp.max(jnp.where(usable, pays, 0.0), axis=1))
        capacity = all_crbs[server] * margin_crb + all_rrbs[server] * margin_rrb
        return ~admitting(scenario, first), value, jnp.minimum(demand, capacity)

    def block(start):
        levels = start + jnp.arange(LEVEL_BLOCK, dtype=jnp.int32)
        crb, rrb = move_prices(servers, settings, price_crb, price_rrb, levels)  # (L, B, S)
        tables = jax.vmap(
            jax.vmap(lambda c, r: kernel(scenario, c, r, all_crbs, all_rrbs, terms=terms))
        )(crb, rrb)  # (L, B, M, S, A)
        offers = jax.vmap(jax.vmap(partial(best_splits, options)))(tables)  # (L, B, M, S)
        over_lines_and_levels = (0, 0, 0, 0, None)
        per_move = jax.vmap(  # servers, lines, levels
            jax.vmap(
                jax.vmap(first_pass, in_axes=over_lines_and_levels), in_axes=over_lines_and_levels
            ),
            in_axes=(None, None, None, None, 0),
        )
        return per_move(tables, offers, crb, rrb, jnp.arange(servers.num_servers))  # (S, L, B)

    blocks = -(-settings.price_levels // LEVEL_BLOCK)
    starts = jnp.arange(blocks, dtype=jnp.int32) * LEVEL_BLOCK
    screened = jax.lax.map(block, starts)  # (blocks, S, L, B)
    return tuple(
        jnp.moveaxis(x, 0, 2).reshape(*x.shape[1:3], -1)[..., : settings.price_levels]
        for x in screened
    )


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
    moves = open_moves(scenario, options, settings, price_crb, price_rrb, movers, floor)
    return settle_open(scenario, options, settings, price_crb, price_rrb, movers, floor, moves)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class OpenMoves:
    """The screened moves of :func:`best_on_grid`: the utility of those known, and the
    others that may still be best, in order."""

    known: jax.Array  # (P·L·K,) the mover's utility where the first pass settled, else -inf
    order: jax.Array  # (P·L·K,) int32, the open moves' indices first, then P·L·K
    count: jax.Array  # () int32, open moves


def open_moves(scenario, options, settings, price_crb, price_rrb, movers, floor) -> OpenMoves:
    """The moves :func:`screen` leaves open: not settled by their first pass, with a
    bound at least the best known (or ``floor``)."""
    servers = scenario.servers
    plays = (servers.active & options.servers_play)[movers]
    top = jnp.where(plays, top_step(servers)[movers], -1)
    settled, value, bound = (
        x[movers] for x in screen(scenario, options, settings, price_crb, price_rrb)
    )  # (P, L, K)
    valid = jnp.arange(settings.price_levels)[None, None, :] <= top[:, None, None]
    known = jnp.where(valid & settled, value, -jnp.inf)
    lower = jnp.maximum(jnp.max(known, axis=(1, 2)), floor)
    slack = 1e-12 * jnp.maximum(jnp.abs(lower), 1.0)
    still = (valid & ~settled & (bound >= (lower - slack)[:, None, None])).ravel()
    order = jnp.nonzero(still, size=still.size, fill_value=still.size)[0].astype(jnp.int32)
    return OpenMoves(known.ravel(), order, jnp.sum(still, dtype=jnp.int32))


def settle_open(scenario, options, settings, price_crb, price_rrb, movers, floor, moves):
    """:func:`best_on_grid` from its :class:`OpenMoves`: the open moves' markets settled
    on the slots of :func:`~edgesplit.game.market_queue.fold_markets`."""
    servers = scenario.servers
    lines, levels = _lines(settings), settings.price_levels
    size = moves.order.shape[0]

    def prices_of(index):
        move = moves.order[index]
        mover, line, level = move // (lines * levels), (move // levels) % lines, move % levels
        crb, rrb = move_prices(servers, settings, price_crb, price_rrb, level[None])
        server = movers[mover]
        return (
            price_crb.at[server].set(crb[line, 0, server]),
            price_rrb.at[server].set(rrb[line, 0, server]),
        )

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
    )
    values = jnp.maximum(moves.known, found).reshape(movers.shape[0], -1)
    index, best = first_maximum(values)
    reaches = best >= floor
    return jnp.where(reaches, best, floor), jnp.where(reaches, index % levels, 0).astype(jnp.int32)


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
    reaches = best >= floor
    return jnp.where(reaches, best, floor), jnp.where(reaches, level, 0).astype(jnp.int32)


def server_regret(
    scenario: Scenario, options: Options, settings: GameSettings, price_crb, price_rrb, utility
):
    """(S,) the most each server gains by moving its price anywhere on its grid, the
    others' fixed, from its ``utility`` (S,) at these prices: >= 0, and 0 for servers
    that do not play. Exact with joint prices, a lower bound with separate ones; NaN
    without ``settings.grid_certificate``."""
    if not settings.grid_certificate:
        return jnp.full_like(utility, jnp.nan)
    servers = scenario.servers
    movers = jnp.arange(servers.num_servers)
    best, _ = best_on_grid(scenario, options, settings, price_crb, price_rrb, movers, utility)
    plays = servers.active & options.servers_play
    return jnp.where(plays, jnp.maximum(best - utility, 0.0), 0.0)


SETTLED_TOGETHER = 16
"""Games whose open moves :func:`batch_regret` settles in one vmapped queue: games of
about as many open moves, so that none waits long for the others."""


def batch_regret(scenarios, options, settings, price_crb, price_rrb, utility):
    """:func:`server_regret` for a batch of games (leading axis). The games' open moves
    are settled :data:`SETTLED_TOGETHER` at a time, ordered by how many they have: a
    vmapped queue runs as long as its game with the most."""
    num_servers = scenarios.servers.crb_hz.shape[-1]
    movers = jnp.arange(num_servers)
    if not settings.price_levels or not settings.grid_certificate:
        return jax.vmap(partial(server_regret, settings=settings))(
            scenarios, options, price_crb=price_crb, price_rrb=price_rrb, utility=utility
        )
    games = (scenarios, options, price_crb, price_rrb, utility)
    moves = jax.vmap(lambda sc, op, crb, rrb, u: open_moves(sc, op, settings, crb, rrb, movers, u))(
        *games
    )
    order = jnp.argsort(moves.count)
    take = lambda tree: jax.tree.map(lambda x: x[order], tree)  # noqa: E731

    def settle(game):
        (scenario, option, crb, rrb, here), opened = game
        best, _ = settle_open(scenario, option, settings, crb, rrb, movers, here, opened)
        plays = scenario.servers.active & option.servers_play
        return jnp.where(plays, jnp.maximum(best - here, 0.0), 0.0)

    regret = jax.lax.map(settle, (take(games), take(moves)), batch_size=SETTLED_TOGETHER)
    return jnp.zeros_like(regret).at[order].set(regret)
