"""The ``enumerate`` rule: every profile of grid prices (joint prices), and which of them
are equilibria.

A profile is an equilibrium when no server gains more than ``min_gain`` by moving to
another price of its grid, the others' held: its regret is its line's best utility
less its own. Deciding that needs each server's utility (eq. 11) at the profile and
the best of its line, not at every profile. So every profile's market gets its first
admission pass from the game's :class:`~edgesplit.game.offers.OfferTable`, which settles
it or bounds each server's utility there (:func:`first_passes`), and only the markets
that may decide the outcome are settled in full (:func:`settle_needed`), a round of
the most promising at a time, until what is known decides it exactly: the equilibria,
their number and the outcome are those of settling every market.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from edgesplit.config import GameSettings
from edgesplit.game.algorithm1 import Status
from edgesplit.game.best_response import choose_offer
from edgesplit.game.market import fold_markets
from edgesplit.game.offers import OfferTable, first_pass, offer_table, offers_at, paid_at
from edgesplit.game.prices import top_step
from edgesplit.model.scenario import Scenario
from edgesplit.model.schemes import Options

PROFILE_SLOTS = 128
"""Markets under way at once in a game's queue of profiles to settle."""

SETTLED_PER_ROUND = 512
"""Markets a round of :func:`settle_needed` settles at most: the bounds are tightened
between rounds, so smaller rounds settle fewer markets in all, in more rounds."""


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class ProfileBounds:
    """Each server's utility (eq. 11) at every profile, or bounds on it."""

    lower: jax.Array  # (P, S) at least
    upper: jax.Array  # (P, S) at most; equal to lower, the utility, where known
    known: jax.Array  # (P,) bool: the profile's market is settled


def profile_numbering(servers, levels: int):
    """``(count, top, profile)``: the number of profiles of ``levels`` levels, each
    server's last level (S,), and ``profile(index)``, each server's level (S,) at profile
    ``index`` (server 0's level slowest)."""
    place = levels ** jnp.arange(servers.num_servers - 1, -1, -1)
    top = jnp.where(servers.active, top_step(servers), 0)
    return levels**servers.num_servers, top, lambda index: (index // place) % levels


def _request(scenario: Scenario, options: Options, table: OfferTable, levels):
    """The devices' best response with every server at its level ``levels`` (S,) and
    every block free, from the table."""
    return choose_offer(scenario, options, offers_at(table, levels))


def first_passes(
    scenario: Scenario, options: Options, settings: GameSettings, table: OfferTable
) -> ProfileBounds:  # fmt: skip
    """Every profile's first admission pass, a choice among its servers' table entries.

    A pass after which every device is settled settles the market; otherwise it bounds
    each server's utility there (:func:`~edgesplit.game.grid.pass_bounds`). Where no
    server plays, every utility is 0 and known."""
    servers = scenario.servers
    count, _, profile = profile_numbering(servers, settings.price_levels)
    columns = jnp.arange(servers.num_servers)

    def one(index):
        level = profile(index)
        price = table.price[level, columns]
        offers, paid = offers_at(table, level), paid_at(table, level)
        settled, _, lower, upper = first_pass(scenario, options, price, price, offers, paid)
        return lower, upper, settled

    # 16 lines of profiles at a time: faster than 1, 4 or 64 (measured).
    lower, upper, settled = jax.lax.map(
        one, jnp.arange(count), batch_size=16 * settings.price_levels
    )
    plays = jnp.any(servers.active) & options.servers_play
    zero = jnp.zeros_like(lower)
    return ProfileBounds(
        jnp.where(plays, lower, zero), jnp.where(plays, upper, zero), ~plays | settled
    )


def settle(
    scenario: Scenario, options: Options, settings: GameSettings, table: OfferTable,
    bounds: ProfileBounds, wanted, most: int,
) -> ProfileBounds:  # fmt: skip
    """``bounds`` with the markets of the profiles ``wanted`` (P,), the first ``most``
    of them, settled in full (on :data:`PROFILE_SLOTS` slots of
    :func:`~edgesplit.game.market.fold_markets`, their first pass from the
    table): each server's utility there known."""
    servers = scenario.servers
    count, _, profile = profile_numbering(servers, settings.price_levels)
    columns = jnp.arange(servers.num_servers)
    order = jnp.nonzero(wanted, size=most, fill_value=count)[0].astype(jnp.int32)
    at = lambda index: profile(order[index])  # noqa: E731

    def prices_of(index):
        price = table.price[at(index), columns]
        return price, price

    def record(bounds, indices, _, utility, settled):
        index = jnp.where(settled, order[jnp.minimum(indices, most - 1)], count)
        return ProfileBounds(
            bounds.lower.at[index].set(utility, mode="drop"),
            bounds.upper.at[index].set(utility, mode="drop"),
            bounds.known.at[index].set(True, mode="drop"),
        )

    count_wanted = jnp.minimum(jnp.sum(wanted, dtype=jnp.int32), most)
    return fold_markets(
        scenario, options, settings, count_wanted, prices_of, record, bounds,
        slots=PROFILE_SLOTS,
        first_request=lambda index: _request(scenario, options, table, at(index)),
    )  # fmt: skip


def profile_utilities(scenario: Scenario, options: Options, settings: GameSettings):
    """(P, S) each server's utility (eq. 11) at every profile of grid levels
    (:func:`profile_numbering`; a level past a server's last as its last), and (P,)
    which were known from their market's first admission pass; zeros, all known, where
    no server plays. Every market settled: :func:`enumerate_profiles` needs far fewer."""
    count = settings.price_levels**scenario.servers.num_servers
    table = offer_table(scenario, options, settings)
    first = first_passes(scenario, options, settings, table)
    every = settle(scenario, options, settings, table, first, ~first.known, count)
    return every.lower, first.known


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Search:
    """What the bounds on every profile's utilities decide."""

    regret: jax.Array  # (P,) each profile's largest regret, at least; exact where decided
    candidate: jax.Array  # (P,) bool: may be an equilibrium or the outcome
    unsettled: jax.Array  # (P,) bool: candidates whose market is not settled
    line_raisers: jax.Array  # (P,) bool: unsettled, may hold a candidate's line best
    rise: jax.Array  # (P,) how far each line raiser's bound is above its line's best known


def search(scenario: Scenario, settings: GameSettings, bounds: ProfileBounds) -> Search:
    """The :class:`Search` from ``bounds``.

    Each server's line best lies between the largest lower and the largest upper bound
    along it, so each profile's regret lies between the lower line best less its upper
    bound and the upper line best less its lower bound. The least largest regret over
    the profiles is at most the least of the latter; with ``min_gain`` above it, that is
    the threshold: a profile whose regret may be at or below it is a candidate. A
    candidate is decided when its market is settled and its lines' best are known: no
    unsettled profile on them has an upper bound above the largest lower one."""
    servers = scenario.servers
    num_servers, levels = servers.num_servers, settings.price_levels
    _, top, _ = profile_numbering(servers, levels)
    shape = (levels,) * num_servers
    level = jnp.arange(levels)
    lower, upper = bounds.lower.reshape(*shape, -1), bounds.upper.reshape(*shape, -1)
    known = bounds.known.reshape(shape)
    valid = jnp.ones(shape, bool)  # every server at or below its last level
    lines = []
    for s in range(num_servers):
        own = level.reshape([-1 if axis == s else 1 for axis in range(num_servers)]) <= top[s]
        valid &= own
        best_low = jnp.max(jnp.where(own, lower[..., s], -jnp.inf), axis=s, keepdims=True)
        best_high = jnp.max(jnp.where(own, upper[..., s], -jnp.inf), axis=s, keepdims=True)
        lines.append((s, own, best_low, best_high))
    regret_low = regret_high = jnp.zeros(shape, lower.dtype)
    for s, _, best_low, best_high in lines:
        active = servers.active[s]
        regret_low = jnp.maximum(regret_low, jnp.where(active, best_low - upper[..., s], 0.0))
        regret_high = jnp.maximum(regret_high, jnp.where(active, best_high - lower[..., s], 0.0))
    threshold = jnp.maximum(settings.min_gain, jnp.min(jnp.where(valid, regret_high, jnp.inf)))
    candidate = valid & (regret_low <= threshold)
    raisers, rise = jnp.zeros(shape, bool), jnp.full(shape, -jnp.inf, lower.dtype)
    for s, own, best_low, _ in lines:
        lined = jnp.any(candidate, axis=s, keepdims=True)
        above = servers.active[s] & own & lined & ~known & (upper[..., s] > best_low)
        raisers |= above
        rise = jnp.maximum(rise, jnp.where(above, upper[..., s] - best_low, -jnp.inf))
    return Search(
        regret_low.ravel(),
        candidate.ravel(),
        (candidate & ~known).ravel(),
        raisers.ravel(),
        rise.ravel(),
    )


def _most_promising(key, among, most):
    """(P,) bool: ``most`` (traced) of ``among`` with the least ``key``, or all of them
    where fewer (the least threshold on the key, bisected, that takes enough; ties at it
    to the lowest indices)."""

    def taken(threshold):
        return among & (key <= threshold)

    def halve(_, bounds):
        low, high = bounds
        middle = low + (high - low) / 2
        enough = jnp.sum(taken(middle)) >= most
        return jnp.where(enough, low, middle), jnp.where(enough, middle, high)

    low = jnp.min(jnp.where(among, key, jnp.inf))
    high = jnp.max(jnp.where(among, key, -jnp.inf))
    chosen = taken(jax.lax.fori_loop(0, 24, halve, (low, high))[1])
    return chosen & (jnp.cumsum(chosen) <= most)


def settle_needed(
    scenario: Scenario, options: Options, settings: GameSettings, table: OfferTable,
    bounds: ProfileBounds,
) -> ProfileBounds:  # fmt: skip
    """``bounds`` with markets settled until every candidate is decided (:func:`search`).

    Each round settles up to :data:`SETTLED_PER_ROUND` markets: up to half of them
    unsettled candidates, least regret first, and the rest unsettled profiles that may
    raise a candidate's line best, furthest above it first."""

    def open_work(state):
        return jnp.any(state[1].unsettled | state[1].line_raisers)

    def round_(state):
        bounds, found = state
        candidates = _most_promising(found.regret, found.unsettled, SETTLED_PER_ROUND // 2)
        room = SETTLED_PER_ROUND - jnp.sum(candidates)
        wanted = candidates | _most_promising(-found.rise, found.line_raisers & ~candidates, room)
        bounds = settle(scenario, options, settings, table, bounds, wanted, SETTLED_PER_ROUND)
        return bounds, search(scenario, settings, bounds)

    return jax.lax.while_loop(open_work, round_, (bounds, search(scenario, settings, bounds)))[0]


def enumerate_profiles(
    scenario: Scenario, options: Options, settings: GameSettings, table: OfferTable | None = None
):
    """The ``enumerate`` rule's outcome, as :class:`~edgesplit.game.leaders.Outcome`
    fields (steps, status, equilibria), from what :func:`settle_needed` decides, with the
    game's ``table`` of offers (made here unless given). ``settings.price_levels`` (K,
    static) bounds every server's grid."""
    servers = scenario.servers
    _, _, profile = profile_numbering(servers, settings.price_levels)
    plays = jnp.any(servers.active) & options.servers_play
    if table is None:
        table = offer_table(scenario, options, settings)
    bounds = settle_needed(
        scenario, options, settings, table, first_passes(scenario, options, settings, table)
    )
    found = search(scenario, settings, bounds)
    worst = jnp.where(found.candidate, found.regret, jnp.inf)
    equilibrium = found.candidate & (worst <= settings.min_gain)
    equilibria = jnp.sum(equilibrium, dtype=jnp.int32)
    total = jnp.sum(bounds.lower, axis=1)
    chosen = jnp.where(
        equilibria > 0, jnp.argmax(jnp.where(equilibrium, total, -jnp.inf)), jnp.argmin(worst)
    )
    level = jnp.where(plays, profile(chosen), 0)
    status = jnp.where(plays & (equilibria == 0), Status.NO_EQUILIBRIUM, Status.CONVERGED)
    steps = jnp.stack([level, level], axis=1).astype(jnp.int32)
    return steps, status.astype(jnp.int32), jnp.where(plays, equilibria, 1)
