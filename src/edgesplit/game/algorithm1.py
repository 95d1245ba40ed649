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

Prices live on the grid of :mod:`edgesplit.game.prices`; the opening rounds without
buyers are skipped by :mod:`edgesplit.game.fast_forward`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from functools import partial

import jax
import jax.numpy as jnp

from edgesplit.config import GameSettings
from edgesplit.game.fast_forward import rounds_without_buyers, state_after_descent
from edgesplit.game.market import markets_at
from edgesplit.game.prices import DESCENT, not_below_cost, prices_at, top_step
from edgesplit.model.scenario import Scenario, Servers
from edgesplit.model.schemes import Options


class Status(IntEnum):
    CONVERGED = 0  # a round changed no price
    CYCLE = 1  # prices came back to an earlier state
    ROUND_LIMIT = 2  # max_rounds played without either
    FIXED_PRICES = 3  # no game: the devices responded to given prices
    NO_EQUILIBRIUM = 4  # enumerate: no price profile on the grid is an equilibrium

    @property
    def label(self) -> str:
        return self.name.lower()


RUNNING = -1  # GameState.status of a game under way


class Update(Enum):
    """When the servers of a round decide (``GameSettings.update``)."""

    SIMULTANEOUS = "simultaneous"  # all against the same prices, applied together
    SEQUENTIAL = "sequential"  # one after another, each seeing the moves before it

    def turns(self, num_servers: int) -> int:
        """Turns of a round: one, or one per server."""
        return 1 if self is Update.SIMULTANEOUS else num_servers

    def movers(self, num_servers: int, turn):
        """The servers that try their moves in ``turn``: all, or server ``turn``."""
        if self is Update.SIMULTANEOUS:
            return jnp.arange(num_servers)
        return jnp.reshape(turn, (1,))


def _tried_rows(servers: Servers, settings: GameSettings, steps, server):
    """(C, 2) the steps server ``server`` tries: its own moved by each of the moves."""
    moves = jnp.asarray(settings.moves, steps.dtype)
    return jnp.clip(steps[server][None, :] + moves, 0, top_step(servers)[server])


def turn_markets(servers: Servers, settings: GameSettings, steps, movers):
    """(1 + P·C, S, 2) the steps of the markets a turn evaluates: the prices as they
    are, then each of the P movers' tries with everyone else's prices as they are."""
    tried = jax.vmap(
        lambda server: jax.vmap(lambda row: steps.at[server].set(row))(
            _tried_rows(servers, settings, steps, server)
        )
    )(movers)
    return jnp.concatenate([steps[None], tried.reshape(-1, *steps.shape)])


def turn_outcome(servers: Servers, settings: GameSettings, steps, movers, utility, sold):
    """The steps after a turn, from every server's utility (1 + P·C, S) and what it sold
    (CRBs + RRBs, (1 + P·C, S)) in each of :func:`turn_markets`."""
    tried = utility[1:].reshape(movers.shape[0], -1, utility.shape[1])  # (P, C, S)

    def decide(server, tried_utility):
        own = steps[server]
        rows = _tried_rows(servers, settings, steps, server)
        improves = tried_utility - utility[0, server] > settings.min_gain
        best_move = jnp.where(jnp.any(improves), rows[jnp.argmax(improves)], own)
        # No buyers and nothing better: step down to attract them, but not below cost.
        lower = own + jnp.asarray(DESCENT, steps.dtype)
        above_cost = not_below_cost(servers, steps.at[server].set(lower))[server]
        descends = (
            ~jnp.any(improves)
            & (sold[0, server] == 0)
            & above_cost
            & jnp.all(lower <= top_step(servers)[server])
        )
        return jnp.where(servers.active[server], jnp.where(descends, lower, best_move), own)

    rows = jax.vmap(lambda server, u: decide(server, u[:, server]))(movers, tried)
    return steps.at[movers].set(rows)


def _play_turn(scenario: Scenario, options: Options, settings: GameSettings, movers, steps):
    servers = scenario.servers
    markets = turn_markets(servers, settings, steps, movers)
    prices = jax.vmap(partial(prices_at, servers))(markets)
    _, utility, sold = markets_at(scenario, options, settings, *prices)
    return turn_outcome(servers, settings, steps, movers, utility, sold)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class GameState:
    """Where one game of Algorithm 1 stands between rounds."""

    steps: jax.Array  # (S, 2) int32, each server's (CRB, RRB) price in steps Δ below the maximum
    rounds: jax.Array  # () int32, rounds played (skipped opening rounds included)
    status: jax.Array  # () int32, a Status, or RUNNING
    recent: jax.Array  # (cycle_window, S, 2) the steps of the last rounds, newest first
    checkpoint: jax.Array  # (S, 2) the steps after the last power-of-two round
    cycle_length: jax.Array  # () int32, rounds of the cycle found (status CYCLE), else 0

    @property
    def running(self) -> jax.Array:
        return self.status == RUNNING


def start(scenario: Scenario, options: Options, settings: GameSettings) -> GameState:
    """The game at the maximum prices, advanced exactly through the opening rounds in
    which nobody buys (when ``settings.fast_forward``)."""
    status = jnp.where(options.servers_play, RUNNING, Status.CONVERGED).astype(jnp.int32)
    if settings.fast_forward:
        skipped = jnp.where(
            options.servers_play, rounds_without_buyers(scenario, options, settings), 0
        )
    else:
        skipped = jnp.int32(0)
    steps, recent, checkpoint = state_after_descent(
        scenario.servers, skipped, settings.cycle_window
    )
    return GameState(steps, skipped, status, recent, checkpoint, jnp.int32(0))


def end_round(settings: GameSettings, state: GameState, new) -> GameState:
    """The game after a round that moved the steps to ``new``: the stop rule applied; a
    game that has ended stays as it is."""
    rounds = state.rounds + 1
    # A short memory catches short cycles at once; a checkpoint taken at every power of
    # two rounds (Brent) catches a cycle of any length within twice its reach.
    # recent[j] holds the steps after round rounds - 2 - j, the checkpoint those after
    # the last power of two rounds before this one.
    in_recent = jnp.all(state.recent == new[None], axis=(1, 2))
    at_checkpoint = jnp.all(state.checkpoint == new)
    seen = jnp.any(in_recent) | at_checkpoint
    last_power = jnp.left_shift(1, 31 - jax.lax.clz(jnp.maximum(rounds - 1, 1)))
    cycle_length = jnp.where(
        jnp.any(in_recent),
        jnp.argmax(in_recent) + 2,
        jnp.where(at_checkpoint, rounds - last_power, 0),
    )
    status = jnp.where(
        jnp.all(new == state.steps),
        Status.CONVERGED,
        jnp.where(
            seen,
            Status.CYCLE,
            jnp.where(rounds >= settings.max_rounds, Status.ROUND_LIMIT, RUNNING),
        ),
    ).astype(jnp.int32)
    after = GameState(
        steps=new,
        rounds=rounds,
        status=status,
        recent=jnp.roll(state.recent, 1, axis=0).at[0].set(state.steps),
        checkpoint=jnp.where((rounds & (rounds - 1)) == 0, new, state.checkpoint),
        cycle_length=jnp.where(status == Status.CYCLE, cycle_length, 0).astype(jnp.int32),
    )
    return jax.tree.map(lambda a, b: jnp.where(state.running, a, b), after, state)


def advance(
    scenario: Scenario, options: Options, settings: GameSettings, update: Update,
    state: GameState,
) -> GameState:  # fmt: skip
    """One round of Algorithm 1 and the stop rule; a game that has ended stays as it is."""
    num_servers = scenario.servers.num_servers
    steps = jax.lax.fori_loop(
        0,
        update.turns(num_servers),
        lambda turn, steps: _play_turn(
            scenario, options, settings, update.movers(num_servers, turn), steps
        ),
        state.steps,
    )
    return end_round(settings, state, steps)


def final_markets(servers: Servers, settings: GameSettings, steps):
    """(1 + S·C, S, 2) the markets that certify a game ended at ``steps``: the prices as
    they are, then each server's moves of Algorithm 1 (a simultaneous round's markets)."""
    return turn_markets(servers, settings, steps, jnp.arange(steps.shape[0]))
