"""The servers' price game, Algorithm 1 of the paper.

Prices start at the maximum, where no device offloads. In each round every server
tries its price one step Δ up and one step down against the devices' best responses
(with admission, :mod:`edgesplit.game.admission`), and keeps the first move, up before
down as in the listing, that raises its utility (eq. 11) by more than ``min_gain``.

What the paper leaves open, settled here:

* **No buyers.** At the maximum price nobody buys and every move leaves a server's
  utility at 0, so the listing would never move, yet the prose has prices "adjusting
  down step-by-step to attract the MDs". A server that sells nothing and finds no
  improving move lowers its price by Δ, but never below its cost (the price at which
  a sale would lose money).
* **Order.** ``simultaneous`` (default, the listing): every server decides against
  the same prices and all apply their moves at the end of the round. ``sequential``
  (the prose): servers decide one after another within a round, each seeing the
  moves made before it.
* **Stop rule.** The game stops when a round changes no price (converged: every
  move gains at most ``min_gain``, the paper's threshold), when the prices return to
  an earlier state (a cycle: two servers undercutting each other in turn, the
  Edgeworth cycles of price competition under capacity limits, have no pure
  equilibrium to converge to), or after ``max_rounds`` rounds. Only the first counts
  as converged; the others report the last prices played.
* **Joint or separate prices.** Joint (default, the paper's g^(c) = g^(r)): one price
  per server moves both. Separate: a server tries CRB up, RRB up, CRB down, RRB down,
  and keeps the first that improves.

Prices live on the grid max_price - k·Δ (clipped at 0), stored as the integer k, so
that rounds compare exactly and no rounding drifts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum
from functools import partial

import jax
import jax.numpy as jnp

from edgesplit.config import GameSettings
from edgesplit.game.admission import (
    Admission,
    admission_pass,
    admitting,
    idle_choice,
    open_market,
    respond_with_admission,
)
from edgesplit.game.best_response import (
    Choice,
    OffloadTerms,
    choose,
    local_option,
    offload_options_exact,
    offload_options_exhaustive,
    offload_terms,
)
from edgesplit.model.scenario import Scenario, Servers
from edgesplit.model.schemes import Options


class Status(IntEnum):
    CONVERGED = 0  # a round changed no price
    CYCLE = 1  # prices came back to an earlier state
    ROUND_LIMIT = 2  # max_rounds played without either
    FIXED_PRICES = 3  # no game: the devices responded to given prices

    @property
    def label(self) -> str:
        return self.name.lower()


_RUNNING = -1

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


def _not_below_cost(servers: Servers, steps):
    """(S,) whether both prices at ``steps`` are at or above cost (up to the rounding of
    max_price - k·Δ, so that a grid price equal to cost counts as at cost)."""
    price_crb, price_rrb = prices_at(servers, steps)
    slack = PRICE_TOLERANCE * servers.max_price
    return (price_crb >= servers.cost_crb - slack) & (price_rrb >= servers.cost_rrb - slack)


def market(
    scenario: Scenario, options: Options, settings: GameSettings, price_crb, price_rrb
) -> Choice:
    """The devices' choices at these prices, capacities enforced."""
    respond = responder(scenario, options, settings, price_crb, price_rrb)
    return respond_with_admission(scenario, price_crb, price_rrb, respond)


def responder(
    scenario: Scenario,
    options: Options,
    settings: GameSettings,
    price_crb,
    price_rrb,
    terms: OffloadTerms | None = None,
):
    """The devices' unconstrained best response to these prices, as a function of what
    the servers have left (``respond`` of :mod:`edgesplit.game.admission`)."""
    # Price-free terms outside the admission loop; under a vmap over the prices tried
    # they stay unbatched, so one computation serves every try of a round.
    terms = offload_terms(scenario) if terms is None else terms
    kernel = offload_options(settings)

    def respond(crbs_left, rrbs_left):
        offload = kernel(scenario, price_crb, price_rrb, crbs_left, rrbs_left, terms=terms)
        return choose(scenario, options, offload)

    return respond


def offload_options(settings: GameSettings):
    """The offload-option kernel ``settings`` asks for (exact or exhaustive)."""
    if settings.best_response == "exact":
        return offload_options_exact
    return partial(
        offload_options_exhaustive, crb_grid=settings.crb_grid, rrb_grid=settings.rrb_grid
    )


def server_sales(scenario: Scenario, choice: Choice, price_crb, price_rrb):
    """Each server's utility (eq. 11) and the CRBs and RRBs it sold, (S,) each."""
    servers = scenario.servers
    buys = choice.server[:, None] == jnp.arange(servers.num_servers)[None, :]  # (M, S)
    crbs_sold = jnp.sum(jnp.where(buys, choice.crbs[:, None], 0), axis=0, dtype=jnp.int32)
    rrbs_sold = jnp.sum(jnp.where(buys, choice.rrbs[:, None], 0), axis=0, dtype=jnp.int32)
    utility = crbs_sold * (price_crb - servers.cost_crb) + rrbs_sold * (
        price_rrb - servers.cost_rrb
    )
    return utility, crbs_sold, rrbs_sold


def _movers(settings: GameSettings, num_servers: int, turn):
    """The servers that try their moves in this turn of a round: all of them at once
    (simultaneous, one turn), or server ``turn`` (sequential, S turns)."""
    if settings.update == "simultaneous":
        return jnp.arange(num_servers)
    return jnp.reshape(turn, (1,))


def _turns(settings: GameSettings, num_servers: int) -> int:
    return 1 if settings.update == "simultaneous" else num_servers


def _tried_rows(servers: Servers, settings: GameSettings, steps, server):
    """(C, 2) the steps server ``server`` tries: its own moved by each of the moves."""
    moves = jnp.asarray(settings.moves, steps.dtype)
    return jnp.clip(steps[server][None, :] + moves, 0, top_step(servers)[server])


def _turn_markets(servers: Servers, settings: GameSettings, steps, movers):
    """(1 + P·C, S, 2) the steps of the markets a turn evaluates: the prices as they
    are, then each of the P movers' tries with everyone else's prices as they are."""
    tried = jax.vmap(
        lambda server: jax.vmap(lambda row: steps.at[server].set(row))(
            _tried_rows(servers, settings, steps, server)
        )
    )(movers)
    return jnp.concatenate([steps[None], tried.reshape(-1, *steps.shape)])


def _turn_outcome(servers: Servers, settings: GameSettings, steps, movers, utility, sold):
    """The steps after a turn, from every server's utility (1 + P·C, S) and what it sold
    (CRBs + RRBs, (1 + P·C, S)) in each of :func:`_turn_markets`."""
    tried = utility[1:].reshape(movers.shape[0], -1, utility.shape[1])  # (P, C, S)

    def decide(server, tried_utility):
        own = steps[server]
        rows = _tried_rows(servers, settings, steps, server)
        improves = tried_utility - utility[0, server] > settings.min_gain
        best_move = jnp.where(jnp.any(improves), rows[jnp.argmax(improves)], own)
        # No buyers and nothing better: step down to attract them, but not below cost.
        lower = own + jnp.asarray(DESCENT, steps.dtype)
        above_cost = _not_below_cost(servers, steps.at[server].set(lower))[server]
        descends = (
            ~jnp.any(improves)
            & (sold[0, server] == 0)
            & above_cost
            & jnp.all(lower <= top_step(servers)[server])
        )
        return jnp.where(servers.active[server], jnp.where(descends, lower, best_move), own)

    rows = jax.vmap(lambda server, u: decide(server, u[:, server]))(movers, tried)
    return steps.at[movers].set(rows)


def _play_turn(scenario: Scenario, options: Options, settings: GameSettings, steps, turn):
    servers = scenario.servers
    movers = _movers(settings, servers.num_servers, turn)
    markets = _turn_markets(servers, settings, steps, movers)
    prices = jax.vmap(partial(prices_at, servers))(markets)
    _, utility, sold = markets_at(scenario, options, settings, *prices)
    return _turn_outcome(servers, settings, steps, movers, utility, sold)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class GameState:
    """Where one game of Algorithm 1 stands between rounds."""

    steps: jax.Array  # (S, 2) int32, each server's (CRB, RRB) price in steps Δ below the maximum
    rounds: jax.Array  # () int32, rounds played (skipped opening rounds included)
    status: jax.Array  # () int32, a Status, or _RUNNING
    recent: jax.Array  # (cycle_window, S, 2) the steps of the last rounds, newest first
    checkpoint: jax.Array  # (S, 2) the steps after the last power-of-two round

    @property
    def running(self) -> jax.Array:
        return self.status == _RUNNING


def start(scenario: Scenario, options: Options, settings: GameSettings) -> GameState:
    """The game at the maximum prices, advanced exactly through the opening rounds in
    which nobody buys (when ``settings.fast_forward``)."""
    status = jnp.where(options.servers_play, _RUNNING, Status.CONVERGED).astype(jnp.int32)
    if settings.fast_forward:
        skipped = jnp.where(
            options.servers_play, _rounds_without_buyers(scenario, options, settings), 0
        )
    else:
        skipped = jnp.int32(0)
    steps, recent, checkpoint = _state_after_descent(
        scenario.servers, skipped, settings.cycle_window
    )
    return GameState(steps, skipped, status, recent, checkpoint)


def end_round(settings: GameSettings, state: GameState, new) -> GameState:
    """The game after a round that moved the steps to ``new``: the stop rule applied; a
    game that has ended stays as it is."""
    rounds = state.rounds + 1
    # A short memory catches short cycles at once; a checkpoint taken at every power of
    # two rounds (Brent) catches a cycle of any length within twice its reach.
    seen = jnp.any(jnp.all(state.recent == new[None], axis=(1, 2))) | jnp.all(
        state.checkpoint == new
    )
    status = jnp.where(
        jnp.all(new == state.steps),
        Status.CONVERGED,
        jnp.where(
            seen,
            Status.CYCLE,
            jnp.where(rounds >= settings.max_rounds, Status.ROUND_LIMIT, _RUNNING),
        ),
    ).astype(jnp.int32)
    after = GameState(
        steps=new,
        rounds=rounds,
        status=status,
        recent=jnp.roll(state.recent, 1, axis=0).at[0].set(state.steps),
        checkpoint=jnp.where((rounds & (rounds - 1)) == 0, new, state.checkpoint),
    )
    return jax.tree.map(lambda a, b: jnp.where(state.running, a, b), after, state)


def advance(
    scenario: Scenario, options: Options, settings: GameSettings, state: GameState
) -> GameState:
    """One round of Algorithm 1 and the stop rule; a game that has ended stays as it is."""
    new = jax.lax.fori_loop(
        0,
        _turns(settings, scenario.servers.num_servers),
        lambda turn, steps: _play_turn(scenario, options, settings, steps, turn),
        state.steps,
    )
    return end_round(settings, state, new)


def play(scenario: Scenario, options: Options, settings: GameSettings) -> GameState:
    """Algorithm 1 from the maximum prices, to its end."""
    return jax.lax.while_loop(
        lambda state: state.running,
        lambda state: advance(scenario, options, settings, state),
        start(scenario, options, settings),
    )


def markets_at(scenario: Scenario, options: Options, settings: GameSettings, price_crb, price_rrb):
    """The devices' markets at K price vectors, (K, S) each: their choices (leading axes
    K, M), and each server's utility and CRBs + RRBs sold in each (K, S), as one
    vmapped market."""
    choices = jax.vmap(lambda c, r: market(scenario, options, settings, c, r))(price_crb, price_rrb)
    utility, crbs, rrbs = jax.vmap(partial(server_sales, scenario))(choices, price_crb, price_rrb)
    return choices, utility, crbs + rrbs


def final_markets(servers: Servers, settings: GameSettings, steps):
    """(1 + S·C, S, 2) the markets that certify a game ended at ``steps``: the prices as
    they are, then each server's moves of Algorithm 1 (a simultaneous round's markets)."""
    return _turn_markets(servers, settings, steps, jnp.arange(steps.shape[0]))


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Ending:
    """How a game ended: its state, and the markets of :func:`final_markets`."""

    state: GameState
    choice: Choice  # (M,) the devices' market at the final prices
    utility: jax.Array  # (1 + S·C, S) each server's utility in each final market


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class _Turn:
    """The markets a lane of :func:`play_queue` plays in a turn, and what is known of them.

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
    played = previous.known & (previous.steps[:, 0, 0] >= 0)
    same = jnp.all(markets[:, None] == previous.steps[None], axis=(2, 3)) & played[None]
    source = jnp.argmax(same, axis=1)
    return _Turn(
        steps=markets,
        utility=previous.utility[source],
        sold=previous.sold[source],
        choice=jax.tree.map(lambda x: x[source], previous.choice),
        known=jnp.any(same, axis=1) | ~needed,
    )


def _market_slots(settings: GameSettings, markets: int) -> int:
    """Markets a lane of :func:`play_queue` plays at once: those of a turn of ``markets``
    that the previous turn has not played, when one server moved. Simultaneous: the
    prices as they are and the mover's move back were played; sequential: the prices
    as they are."""
    return max(markets - (2 if settings.update == "simultaneous" else 1), 1)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class _Lane:
    """One lane of :func:`play_queue`: its game, and the markets of the turn under way."""

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


def play_queue(scenarios: Scenario, options: Options, settings: GameSettings, lanes: int) -> Ending:
    """Algorithm 1 for a batch of N games (leading axis) on ``lanes`` lanes, to its end,
    and the :func:`final_markets` of each game.

    ``vmap(play)`` would step every game until the longest one ends (a vmapped
    ``while_loop`` steps all lanes together), and every round until the market needing
    the most admission passes is settled. Here each lane has a few market slots, and
    each step makes one admission pass in every slot. A slot whose market is settled
    takes the turn's next market; a lane whose turn's markets are all settled decides
    its turn and opens the next. A game that has ended plays its final markets in one
    more turn, and its lane then takes the next waiting game (those likely to last
    longest wait least, so that no lane is left alone with a long game at the end:
    about 8% off Fig. 3's chunks). A market the lane's
    previous turn played is not played again: after a price move of one server, two of
    the 2S + 1 markets of a round were played in the round before, and a converged
    game has played all its final markets. So the loop runs for about the total
    admission passes of the markets not yet played, over the slots. Each game follows
    exactly the rounds :func:`play` would.
    """
    count = jax.tree.leaves(scenarios)[0].shape[0]
    lanes = min(lanes, count)
    num_servers = scenarios.servers.crb_hz.shape[-1]
    turns = _turns(settings, num_servers)
    num_moves = len(settings.moves)
    size = 1 + num_servers * num_moves  # markets of a turn, the final ones included
    played = 1 + _movers(settings, num_servers, 0).shape[0] * num_moves  # of a turn of play
    num_slots = _market_slots(settings, played)
    take = lambda tree, index: jax.tree.map(lambda x: x[index], tree)  # noqa: E731

    def stacked(tree, n):
        """``n`` copies of ``tree`` on a new leading axis: a broadcast, since a stack of n
        operands made the program, and its compile time, grow with the batch."""
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *x.shape)), tree)

    first = jax.vmap(lambda sc, op: start(sc, op, settings))(scenarios, options)
    terms = jax.vmap(offload_terms)(scenarios)  # price-free: once per game
    # The queue's order: a game's length guessed from how far its prices may still fall
    # after the fast-forward (rank correlation 0.52 with Fig. 3's played rounds).
    floor = jax.vmap(lambda sc: _descent_floor(sc.servers))(scenarios)  # (N, S)
    floor = jnp.where(scenarios.servers.active, floor, 0)
    room = jnp.max(floor - first.steps[..., 0], axis=1)
    room = jnp.where(first.status == _RUNNING, room, -1)
    order = jnp.argsort(-room, stable=True).astype(jnp.int32)

    def game_at(place):
        """The game at ``place`` in the queue; ``count`` (no game) past its end."""
        return jnp.where(place < count, order[jnp.minimum(place, count - 1)], count)

    dtype = scenarios.servers.crb_hz.dtype
    idle = idle_choice(scenarios.devices.arrival_rate.shape[-1], dtype)

    def next_turn(lane: _Lane, steps, turn, ending, previous: _Turn) -> _Turn:
        """The turn at ``steps``: the markets of play, or the final ones when ``ending``."""
        servers = lane.scenario.servers
        market = jnp.arange(size)
        of_play = _turn_markets(servers, settings, steps, _movers(settings, num_servers, turn))
        of_play = jnp.concatenate([of_play, jnp.zeros((size - played, *steps.shape), steps.dtype)])
        plays = servers.active & lane.options.servers_play
        # A final market moves server (t - 1) // C; only those of servers that play count.
        needed = jnp.where(
            ending,
            (market == 0) | plays[jnp.maximum(market - 1, 0) // num_moves],
            market < played,
        )
        markets = jnp.where(ending, final_markets(servers, settings, steps), of_play)
        return _open_turn(markets, needed, previous)

    def fill_slots(lane: _Lane) -> _Lane:
        """Free slots take the turn's markets that are neither known nor being played,
        in order, each with a fresh admission."""
        market = jnp.arange(size)
        waiting = ~lane.markets.known & ~jnp.any(lane.slot_market[:, None] == market, axis=0)
        free = lane.slot_market == size
        rank = jnp.where(free, jnp.cumsum(free) - 1, -1)  # the k-th free slot
        order = jnp.cumsum(waiting) - 1  # takes the k-th waiting market
        match = waiting[None, :] & (order[None, :] == rank[:, None])  # (L, T)
        taken = jnp.any(match, axis=1)
        slot_market = jnp.where(taken, jnp.argmax(match, axis=1), lane.slot_market)
        fresh = stacked(open_market(lane.scenario), num_slots)
        slots = jax.tree.map(partial(_where_rows, taken), fresh, lane.slots)
        return dataclasses.replace(lane, slot_market=slot_market.astype(jnp.int32), slots=slots)

    def opened(game) -> _Lane:
        here = jnp.minimum(game, count - 1)  # lanes past the last game idle on a copy
        scenario, state = take(scenarios, here), take(first, here)
        nothing = _Turn(
            steps=jnp.full((size, num_servers, 2), -1, jnp.int32),
            utility=jnp.zeros((size, num_servers), dtype),
            sold=jnp.zeros((size, num_servers), jnp.int32),
            choice=stacked(idle, size),
            known=jnp.zeros(size, bool),
        )
        lane = _Lane(
            game, scenario, take(options, here), take(terms, here), state, state.steps,
            jnp.int32(0), ~state.running, nothing, jnp.full(num_slots, size, jnp.int32),
            stacked(open_market(scenario), num_slots),
        )  # fmt: skip
        lane = dataclasses.replace(
            lane, markets=next_turn(lane, state.steps, 0, ~state.running, nothing)
        )
        return fill_slots(lane)

    def admission_step(lane: _Lane) -> _Lane:
        scenario, options, terms = lane.scenario, lane.options, lane.terms
        servers = scenario.servers
        playing = lane.slot_market < size
        slot_steps = lane.markets.steps[jnp.minimum(lane.slot_market, size - 1)]
        price_crb, price_rrb = jax.vmap(partial(prices_at, servers))(slot_steps)

        def one_pass(price_crb, price_rrb, admission):
            respond = responder(scenario, options, settings, price_crb, price_rrb, terms)
            after = admission_pass(scenario, price_crb, price_rrb, respond, admission)
            return jax.tree.map(
                partial(jnp.where, admitting(scenario, admission)), after, admission
            )

        slots = jax.vmap(one_pass)(price_crb, price_rrb, lane.slots)
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
            lane, markets=markets, slots=slots,
            slot_market=jnp.where(settles, size, lane.slot_market),
        )  # fmt: skip

        # A turn of play whose markets are all known is decided, and the next one opened:
        # the game's final markets once it has ended.
        movers = _movers(settings, num_servers, lane.turn)
        steps = _turn_outcome(
            servers, settings, lane.steps, movers, markets.utility[:played], markets.sold[:played]
        )
        round_ends = lane.turn == turns - 1
        state = jax.tree.map(
            partial(jnp.where, round_ends), end_round(settings, lane.state, steps), lane.state
        )
        turn = (lane.turn + 1) % turns
        following = dataclasses.replace(
            lane, state=state, steps=steps, turn=turn, ending=~state.running,
            markets=next_turn(lane, steps, turn, ~state.running, markets),
        )  # fmt: skip
        decided = jnp.all(markets.known) & ~lane.ending
        return fill_slots(jax.tree.map(partial(jnp.where, decided), following, lane))

    def busy(carry):
        lane, *_ = carry
        return jnp.any(lane.game < count)

    def one_step(carry):
        lane, waiting, final = carry
        lane = jax.vmap(admission_step)(lane)
        ended = (lane.game < count) & lane.ending & jnp.all(lane.markets.known, axis=1)

        def next_games(carry):
            lane, waiting, final = carry
            ending = Ending(
                lane.state, jax.tree.map(lambda x: x[:, 0], lane.markets.choice),
                lane.markets.utility,
            )  # fmt: skip
            final = jax.tree.map(
                lambda f, s: f.at[jnp.where(ended, lane.game, count)].set(s, mode="drop"),
                final,
                ending,
            )
            queued = jnp.cumsum(ended, dtype=jnp.int32)  # the k-th lane to end takes the k-th game
            fresh = jax.vmap(opened)(jnp.where(ended, game_at(waiting + queued - 1), lane.game))
            lane = jax.tree.map(partial(_where_rows, ended), fresh, lane)
            return lane, waiting + queued[-1], final

        # Most steps end no game: skip the gathers then.
        return jax.lax.cond(jnp.any(ended), next_games, lambda carry: carry, (lane, waiting, final))

    final = Ending(first, stacked(idle, count), jnp.zeros((count, size, num_servers), dtype))
    lane = jax.vmap(opened)(game_at(jnp.arange(lanes, dtype=jnp.int32)))
    return jax.lax.while_loop(busy, one_step, (lane, jnp.int32(lanes), final))[2]


def _where_rows(rows, new, old):
    """``new`` in the rows (leading axis) where ``rows`` holds, ``old`` elsewhere."""
    return jnp.where(rows.reshape(-1, *(1,) * (new.ndim - 1)), new, old)


def _binary_search(predicate, low, high):
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


def _descent_floor(servers: Servers):
    """(S,) the step a server without buyers descends to: the last one not below cost."""
    top = top_step(servers)
    first_below = _binary_search(
        lambda k: ~_not_below_cost(servers, jnp.stack([k, k], -1)) | (k > top),
        jnp.ones_like(top),
        top + 1,
    )
    return first_below - 1


def _first_sale(scenario: Scenario, options: Options, settings: GameSettings):
    """(S,) the first step k at which some device would buy from server s, its prices k
    steps below the maximum and every other server unattractive; top + 1 if none.

    A device buys from s when its best offload to s beats both running locally and
    idling, exactly as :func:`choose` decides; with nobody else buying, s has all its
    blocks to offer."""
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
    return _binary_search(someone_buys, jnp.zeros_like(top), top + 1)


def _rounds_without_buyers(scenario: Scenario, options: Options, settings: GameSettings):
    """How many opening rounds of Algorithm 1 only lower prices, nobody buying: in them
    every server with no improving move and no buyer steps down (to its floor), and no
    server finds a buyer at its price or one step below. Those rounds can be skipped:
    the game after them is exactly the game played through them."""
    servers = scenario.servers
    floor = _descent_floor(servers)
    first = _first_sale(scenario, options, settings)
    # At round r a server is min(r, floor) steps down; it sees a buyer at its tentative
    # one-step cut once min(r, floor) + 1 >= first.
    sees_buyer = servers.active & (first <= floor + 1)
    quiet = jnp.min(jnp.where(sees_buyer, first - 1, jnp.iinfo(jnp.int32).max))
    falling = jnp.max(jnp.where(servers.active, floor, 0))  # rounds in which a price falls
    return jnp.clip(jnp.minimum(quiet, falling), 0, settings.max_rounds - 1).astype(jnp.int32)


def _state_after_descent(servers: Servers, rounds, window: int):
    """(steps, recent, checkpoint) of the game loop after ``rounds`` rounds of pure descent."""
    floor = jnp.where(servers.active, _descent_floor(servers), 0)

    def steps_after(r):
        return jnp.where(r >= 0, jnp.minimum(r, floor), -1)[:, None].repeat(2, axis=1)

    recent = jax.vmap(steps_after)(rounds - 1 - jnp.arange(window))
    # The checkpoint holds the state after the last power-of-two round.
    power = jnp.where(rounds > 0, jnp.left_shift(1, 31 - jax.lax.clz(jnp.maximum(rounds, 1))), -1)
    return steps_after(jnp.maximum(rounds, 0)), recent, steps_after(power)
