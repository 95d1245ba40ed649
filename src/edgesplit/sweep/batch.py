"""Solve a batch of scenarios: Algorithm 1's games on a queue of lanes, each lane taking
the next game when its own ends, so that no lane waits for the longest game.

``vmap(play)`` would step every game until the longest one ends (a vmapped
``while_loop`` steps all lanes together), and every round until the market needing the
most admission passes is settled. Here each lane has a few market slots, and each step
of the queue makes one admission pass in every slot. A slot whose market is settled
takes the turn's next market; a lane whose turn's markets are all settled decides its
turn and opens the next. A game that has ended plays its final markets in one more
turn, and its lane then takes the next waiting game (those likely to last longest wait
least, so that no lane is left alone with a long game at the end). A market the lane's
previous turn played is not played again: after a price move of one server, two of the
2S + 1 markets of a round were played in the round before, and a converged game has
played all its final markets. So the queue runs for about the total admission passes of
the markets not yet played, over the slots. Each game follows exactly the rounds
:meth:`~edgesplit.game.leaders.LeaderRule.play` (rule ``local``) would. What is left to do
after the games (the servers' regrets, the cycle means) is done for groups of games alike
in work (:func:`in_groups`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from edgesplit.config import GameSettings
from edgesplit.game.admission import Admission, admitting, idle_choice, open_market
from edgesplit.game.algorithm1 import (
    RUNNING,
    GameState,
    Update,
    end_round,
    final_markets,
    start,
    turn_markets,
    turn_outcome,
)
from edgesplit.game.best_response import Choice, OffloadTerms, offload_terms
from edgesplit.game.fast_forward import descent_floor, first_sale
from edgesplit.game.grid import moves_from, open_moves, regret_from, server_regret, settle_open
from edgesplit.game.leaders import Outcome, cycle_means, leader_rule
from edgesplit.game.market import next_pass, server_sales
from edgesplit.game.prices import prices_at
from edgesplit.game.solve import Solution, certify, solve
from edgesplit.model.scenario import Scenario
from edgesplit.model.schemes import Options, scheme_options


@partial(jax.jit, static_argnames=("settings", "lanes"))
def solve_batch(
    scenarios: Scenario, scheme, settings: GameSettings = GameSettings(), lanes: int = 16
) -> Solution:
    """:func:`~edgesplit.game.solve.solve` for a batch of scenarios (leading axis), all
    under ``scheme``.

    The price games share ``lanes`` lanes, each lane taking the next game when its own
    ends (:func:`play_queue`), and the final markets come from the markets the queue
    played (all of them, for a converged game). The games are those of
    ``vmap(solve)``: the same rounds, status and choices, and floats equal to rounding
    (the programs are fused differently); sooner when game lengths vary. The one
    exception is a market at a near-tie (two requests of equal profit, a device
    indifferent between options), which rounding can settle either way: ``solve``
    plays its final markets again, with its own rounding, where the queue reuses those
    its rounds played, so a converged game's server gains are those its stop rule saw.
    The servers' regrets over their grids are settled for games of about as many open
    moves together (:func:`batch_regret`), and the utilities averaged over a cycle for
    games of about as long a cycle (:func:`in_groups`).

    Jit-compiled with ``settings`` and ``lanes`` static; lanes change the speed, never
    the results. The other leader rules (``settings.leader``) play their games without
    a queue, one game at a time: a vmapped game would run as long as the longest beside
    it, its rounds and each round's markets, and each game's own market queues are wide
    enough (results/bench/best-response-tables.md compares 1 to 16 games at once)."""
    if not leader_rule(settings).queued:
        # A batch of one, as the stores were measured with (a plain map fuses the cycle
        # means' sums differently, to within an ulp).
        return jax.lax.map(
            lambda scenario: solve(scenario, scheme, settings), scenarios, batch_size=1
        )
    scheme = jnp.asarray(scheme, jnp.int32)
    options = jax.vmap(lambda scenario: scheme_options(scenario, scheme))(scenarios)
    ending = play_queue(scenarios, options, settings, lanes)
    price_crb, price_rrb = jax.vmap(prices_at)(scenarios.servers, ending.state.steps)
    utility = jax.vmap(server_sales)(scenarios, ending.choice, price_crb, price_rrb)[0]
    outcome = jax.vmap(Outcome.of_game)(ending.state)
    # Most games end in no cycle: grouped by cycle length, they settle no market for it.
    cycle = in_groups(
        outcome.cycle_length,
        lambda game: cycle_means(game[0], game[1], settings, *game[2:]),
        (scenarios, options, outcome, ending.choice.utility, utility),
    )
    return jax.vmap(partial(certify, settings=settings))(
        scenarios, options, price_crb=price_crb, price_rrb=price_rrb, choice=ending.choice,
        market_utility=ending.utility, outcome=outcome,
        regret=batch_regret(scenarios, options, settings, price_crb, price_rrb, utility),
        cycle=cycle,
    )  # fmt: skip


GAMES_TOGETHER = 16
"""Games whose work :func:`in_groups` does in one vmapped step: games of about as much
work, so that none waits long for the others, and enough of them that each step's
kernels are wide."""


def in_groups(key, work, games):
    """``work`` mapped over a batch of ``games`` (leading axis), :data:`GAMES_TOGETHER` at
    a time in the order of ``key`` (N,) and returned in the batch's order: a vmapped loop
    runs as long as the longest game beside it, so games of about as much work (as
    ``key`` ranks them) go together, and a group with none to do costs nothing. The last
    group is filled up with copies of the first game in that order (the least work): a
    smaller group would be another program, whose rounding may differ, and a game's
    results would then depend on the batch around it."""
    count = key.shape[0]
    # Index arithmetic alike for every batch size, so that the program's structure does
    # not depend on how many games fill the last group up.
    position = jnp.arange(-(-count // GAMES_TOGETHER) * GAMES_TOGETHER)
    game = jnp.argsort(key)[jnp.where(position < count, position, 0)]
    done = jax.lax.map(work, jax.tree.map(lambda x: x[game], games), batch_size=GAMES_TOGETHER)
    into = jnp.where(position < count, game, count)  # the copies' results are dropped
    return jax.tree.map(
        lambda x: jnp.zeros((count, *x.shape[1:]), x.dtype).at[into].set(x, mode="drop"), done
    )


def batch_regret(scenarios, options, settings, price_crb, price_rrb, utility):
    """:func:`~edgesplit.game.grid.server_regret` for a batch of games (leading axis), in groups
    (:func:`in_groups`): first each game's tables and first passes, the games ordered by
    the first price anybody buys at (the rows their tables make); then their open moves,
    ordered by how many they have."""
    games = (scenarios, options, price_crb, price_rrb, utility)
    if not settings.grid_certificate:
        return jax.vmap(lambda game: server_regret(*game[:2], settings, *game[2:]))(games)
    movers = jnp.arange(scenarios.servers.crb_hz.shape[-1])

    def screened(game):
        scenario, option, crb, rrb, floor = game
        tables, here = moves_from(scenario, option, settings, crb, rrb)
        moves = open_moves(scenario, option, settings, tables, here, crb, rrb, movers, floor)
        return tables, here, moves

    def settled(game):
        (scenario, option, crb, rrb, floor), (tables, here, moves) = game
        best, _ = settle_open(scenario, option, settings, tables, here, crb, rrb, movers, moves)
        return regret_from(scenario, option, best, floor)

    first = jax.vmap(lambda sc, op: jnp.min(first_sale(sc, op, settings)))(scenarios, options)
    opened = in_groups(first, screened, games)
    return in_groups(opened[2].count, settled, (games, opened))


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Ending:
    """How a game ended: its state, and the markets of
    :func:`~edgesplit.game.algorithm1.final_markets`."""

    state: GameState
    choice: Choice  # (M,) the devices' market at the final prices
    utility: jax.Array  # (1 + S·C, S) each server's utility in each final market


def play_queue(scenarios: Scenario, options: Options, settings: GameSettings, lanes: int) -> Ending:
    """Algorithm 1 for a batch of N games (leading axis) on ``lanes`` lanes, to its end,
    and the final markets of each game (see the module's docstring)."""
    count = jax.tree.leaves(scenarios)[0].shape[0]
    plan = QueuePlan.of(settings, count, scenarios.servers.crb_hz.shape[-1], lanes)
    games = _queued_games(scenarios, options, settings)
    final = Ending(
        games.first,
        _broadcast_rows(games.idle, count),
        jnp.zeros((count, plan.markets, plan.num_servers), games.idle.utility.dtype),
    )
    lane = jax.vmap(partial(_open_lane, plan, games))(
        _game_at(plan, games, jnp.arange(plan.lanes, dtype=jnp.int32))
    )
    return jax.lax.while_loop(
        _busy(plan), partial(_step, plan, games), (lane, jnp.int32(plan.lanes), final)
    )[2]


@dataclass(frozen=True)
class QueuePlan:
    """The queue's static shape: the numbers every lane's arrays are sized by."""

    settings: GameSettings
    update: Update
    games: int  # N, the batch
    lanes: int
    num_servers: int
    turns: int  # turns of a round: 1 (simultaneous) or S (sequential)
    num_moves: int  # C, the moves each server tries
    markets: int  # of a turn, the final ones included: 1 + S·C
    play_markets: int  # of a turn of play: the prices as they are and the movers' tries
    slots: int  # markets each lane plays at once

    @classmethod
    def of(cls, settings: GameSettings, games: int, num_servers: int, lanes: int) -> QueuePlan:
        num_moves = len(settings.moves)
        update = leader_rule(settings).update
        play_markets = 1 + update.movers(num_servers, 0).shape[0] * num_moves
        return cls(
            settings=settings,
            update=update,
            games=games,
            lanes=min(lanes, games),
            num_servers=num_servers,
            turns=update.turns(num_servers),
            num_moves=num_moves,
            markets=1 + num_servers * num_moves,
            play_markets=play_markets,
            slots=_market_slots(update, play_markets),
        )


def _market_slots(update: Update, play_markets: int) -> int:
    """Slots per lane: the markets of a turn of play that the previous turn has not
    played, when one server moved. Simultaneous: the prices as they are and the mover's
    move back were played; sequential: the prices as they are."""
    return max(play_markets - (2 if update is Update.SIMULTANEOUS else 1), 1)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class _Games:
    """The batch as the queue takes it: per game (leading axis N), its scenario, options,
    price-free offload terms and state after the fast-forward; the order lanes take the
    games in; and the idle choice unplayed markets start from."""

    scenarios: Scenario
    options: Options
    terms: OffloadTerms
    first: GameState
    order: jax.Array  # (N,) int32, game indices, the longest guessed first
    idle: Choice  # (M,)


def _queued_games(scenarios: Scenario, options: Options, settings: GameSettings) -> _Games:
    first = jax.vmap(lambda sc, op: start(sc, op, settings))(scenarios, options)
    terms = jax.vmap(offload_terms)(scenarios)  # price-free: once per game
    # The queue's order: a game's length guessed from how far its prices may still fall
    # after the fast-forward (rank correlation 0.52 with Fig. 3's played rounds).
    floor = jax.vmap(lambda sc: descent_floor(sc.servers))(scenarios)  # (N, S)
    floor = jnp.where(scenarios.servers.active, floor, 0)
    room = jnp.max(floor - first.steps[..., 0], axis=1)
    room = jnp.where(first.status == RUNNING, room, -1)
    order = jnp.argsort(-room, stable=True).astype(jnp.int32)
    idle = idle_choice(scenarios.devices.arrival_rate.shape[-1], scenarios.servers.crb_hz.dtype)
    return _Games(scenarios, options, terms, first, order, idle)


def _game_at(plan: QueuePlan, games: _Games, place):
    """The game at ``place`` in the queue; N (no game) past its end."""
    count = plan.games
    return jnp.where(place < count, games.order[jnp.minimum(place, count - 1)], count)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class _Turn:
    """The markets a lane plays in a turn, and what is known of them.

    Markets a turn does not need (those past a sequential turn's 1 + C, the moves of a
    server that does not play) are known from the start, with steps -1: no later turn
    takes their results."""

    steps: jax.Array  # (T, S, 2) each market's price steps
    utility: jax.Array  # (T, S) each server's utility (eq. 11) in each market
    sold: jax.Array  # (T, S) CRBs + RRBs each server sold in each market
    choice: Choice  # (T, M) the devices' choices in each market
    known: jax.Array  # (T,) bool, the market's results are in


def _open_turn(markets, needed, previous: _Turn) -> _Turn:
    """A turn of the ``markets`` (T, S, 2) marked ``needed`` (T,), with the results of
    those the ``previous`` turn played. A price move of one server leaves most of the
    next round's markets already played: the prices as they were, and the move back."""
    markets = jnp.where(needed[:, None, None], markets, -1)
    reusable = previous.known & (previous.steps[:, 0, 0] >= 0)
    same = jnp.all(markets[:, None] == previous.steps[None], axis=(2, 3)) & reusable[None]
    source = jnp.argmax(same, axis=1)
    return _Turn(
        steps=markets,
        utility=previous.utility[source],
        sold=previous.sold[source],
        choice=jax.tree.map(lambda x: x[source], previous.choice),
        known=jnp.any(same, axis=1) | ~needed,
    )


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class _Lane:
    """One lane of the queue: its game, and the markets of the turn under way."""

    game: jax.Array  # () int32, the game's index in the batch; N once the queue is empty
    scenario: Scenario  # the game's, and its options and price-free offload terms
    options: Options
    terms: OffloadTerms
    state: GameState  # as at the start of the round
    steps: jax.Array  # (S, 2) the steps as at the start of the turn
    turn: jax.Array  # () int32, the turn under way
    ending: jax.Array  # () bool, the game has ended: the turn plays its final markets
    markets: _Turn  # the turn's markets
    slot_market: jax.Array  # (L,) int32, the market each slot plays; T when free
    slots: Admission  # (L,) the slots' admission under way


def _next_turn(plan: QueuePlan, lane: _Lane, steps, turn, ending, previous: _Turn) -> _Turn:
    """The turn at ``steps``: the markets of play, or the final ones when ``ending``."""
    settings, servers = plan.settings, lane.scenario.servers
    market_index = jnp.arange(plan.markets)
    of_play = turn_markets(servers, settings, steps, plan.update.movers(plan.num_servers, turn))
    of_play = jnp.concatenate(
        [of_play, jnp.zeros((plan.markets - plan.play_markets, *steps.shape), steps.dtype)]
    )
    plays = servers.active & lane.options.servers_play
    # A final market moves server (t - 1) // C; only those of servers that play count.
    needed = jnp.where(
        ending,
        (market_index == 0) | plays[jnp.maximum(market_index - 1, 0) // plan.num_moves],
        market_index < plan.play_markets,
    )
    markets = jnp.where(ending, final_markets(servers, settings, steps), of_play)
    return _open_turn(markets, needed, previous)


def _fill_slots(plan: QueuePlan, lane: _Lane) -> _Lane:
    """Free slots take the turn's markets that are neither known nor being played, in
    order, each with a fresh admission."""
    market_index = jnp.arange(plan.markets)
    waiting = ~lane.markets.known & ~jnp.any(lane.slot_market[:, None] == market_index, axis=0)
    free = lane.slot_market == plan.markets
    rank = jnp.where(free, jnp.cumsum(free) - 1, -1)  # the k-th free slot
    position = jnp.cumsum(waiting) - 1  # takes the k-th waiting market
    match = waiting[None, :] & (position[None, :] == rank[:, None])  # (L, T)
    taken = jnp.any(match, axis=1)
    slot_market = jnp.where(taken, jnp.argmax(match, axis=1), lane.slot_market)
    fresh = _broadcast_rows(open_market(lane.scenario), plan.slots)
    slots = jax.tree.map(partial(_where_rows, taken), fresh, lane.slots)
    return dataclasses.replace(lane, slot_market=slot_market.astype(jnp.int32), slots=slots)


def _open_lane(plan: QueuePlan, games: _Games, game) -> _Lane:
    """A lane starting ``game`` (N: none; the lane idles on a copy of the last game)."""
    here = jnp.minimum(game, plan.games - 1)
    take = lambda tree: jax.tree.map(lambda x: x[here], tree)  # noqa: E731
    scenario, state = take(games.scenarios), take(games.first)
    nothing = _Turn(
        steps=jnp.full((plan.markets, plan.num_servers, 2), -1, jnp.int32),
        utility=jnp.zeros((plan.markets, plan.num_servers), games.idle.utility.dtype),
        sold=jnp.zeros((plan.markets, plan.num_servers), jnp.int32),
        choice=_broadcast_rows(games.idle, plan.markets),
        known=jnp.zeros(plan.markets, bool),
    )
    lane = _Lane(
        game=game,
        scenario=scenario,
        options=take(games.options),
        terms=take(games.terms),
        state=state,
        steps=state.steps,
        turn=jnp.int32(0),
        ending=~state.running,
        markets=nothing,
        slot_market=jnp.full(plan.slots, plan.markets, jnp.int32),
        slots=_broadcast_rows(open_market(scenario), plan.slots),
    )
    lane = dataclasses.replace(
        lane, markets=_next_turn(plan, lane, state.steps, 0, ~state.running, nothing)
    )
    return _fill_slots(plan, lane)


def _admission_step(plan: QueuePlan, lane: _Lane) -> _Lane:
    """One admission pass in every slot of the lane; a turn whose markets are all known
    is decided and the next one opened (the game's final markets once it has ended)."""
    settings, size = plan.settings, plan.markets
    scenario, options, terms = lane.scenario, lane.options, lane.terms
    servers = scenario.servers
    playing = lane.slot_market < size
    slot_steps = lane.markets.steps[jnp.minimum(lane.slot_market, size - 1)]
    price_crb, price_rrb = jax.vmap(partial(prices_at, servers))(slot_steps)

    slots = jax.vmap(partial(next_pass, scenario, options, settings, terms))(
        price_crb, price_rrb, lane.slots
    )
    settles = playing & ~jax.vmap(partial(admitting, scenario))(slots)
    utility, crbs, rrbs = jax.vmap(partial(server_sales, scenario))(
        slots.choice, price_crb, price_rrb
    )
    into = jnp.where(settles, lane.slot_market, size)  # settled slots' markets
    record = lambda turn, slot: turn.at[into].set(slot, mode="drop")  # noqa: E731
    markets = _Turn(
        steps=lane.markets.steps,
        utility=record(lane.markets.utility, utility),
        sold=record(lane.markets.sold, crbs + rrbs),
        choice=jax.tree.map(record, lane.markets.choice, slots.choice),
        known=record(lane.markets.known, True),
    )
    lane = dataclasses.replace(
        lane, markets=markets, slots=slots, slot_market=jnp.where(settles, size, lane.slot_market)
    )

    movers = plan.update.movers(plan.num_servers, lane.turn)
    played = plan.play_markets
    steps = turn_outcome(
        servers, settings, lane.steps, movers, markets.utility[:played], markets.sold[:played]
    )
    round_ends = lane.turn == plan.turns - 1
    state = jax.tree.map(
        partial(jnp.where, round_ends), end_round(settings, lane.state, steps), lane.state
    )
    turn = (lane.turn + 1) % plan.turns
    following = dataclasses.replace(
        lane, state=state, steps=steps, turn=turn, ending=~state.running,
        markets=_next_turn(plan, lane, steps, turn, ~state.running, markets),
    )  # fmt: skip
    decided = jnp.all(markets.known) & ~lane.ending
    return _fill_slots(plan, jax.tree.map(partial(jnp.where, decided), following, lane))


def _busy(plan: QueuePlan):
    def busy(carry):
        lane, *_ = carry
        return jnp.any(lane.game < plan.games)

    return busy


def _step(plan: QueuePlan, games: _Games, carry):
    """The queue's loop body, carrying (lanes, games taken, endings): an admission step in
    every lane, then lanes whose game has ended take the next ones."""
    lane, taken, final = carry
    lane = jax.vmap(partial(_admission_step, plan))(lane)
    ended = (lane.game < plan.games) & lane.ending & jnp.all(lane.markets.known, axis=1)
    # Most steps end no game: skip the gathers then.
    return jax.lax.cond(
        jnp.any(ended),
        partial(_take_next_games, plan, games, ended),
        lambda carry: carry,
        (lane, taken, final),
    )


def _take_next_games(plan: QueuePlan, games: _Games, ended, carry):
    """Record the ``ended`` lanes' games, and open the next waiting games on them."""
    lane, taken, final = carry
    count = plan.games
    ending = Ending(
        lane.state, jax.tree.map(lambda x: x[:, 0], lane.markets.choice), lane.markets.utility
    )
    final = jax.tree.map(
        lambda f, s: f.at[jnp.where(ended, lane.game, count)].set(s, mode="drop"), final, ending
    )
    queued = jnp.cumsum(ended, dtype=jnp.int32)  # the k-th lane to end takes the k-th game
    fresh = jax.vmap(partial(_open_lane, plan, games))(
        jnp.where(ended, _game_at(plan, games, taken + queued - 1), lane.game)
    )
    lane = jax.tree.map(partial(_where_rows, ended), fresh, lane)
    return lane, taken + queued[-1], final


def _broadcast_rows(tree, n):
    """``n`` copies of ``tree`` on a new leading axis: a broadcast, since a stack of n
    operands made the program, and its compile time, grow with the batch."""
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *x.shape)), tree)


def _where_rows(rows, new, old):
    """``new`` in the rows (leading axis) where ``rows`` holds, ``old`` elsewhere."""
    return jnp.where(rows.reshape(-1, *(1,) * (new.ndim - 1)), new, old)
