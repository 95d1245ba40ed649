"""The leader rules: how the servers set their prices, on the grid of
:mod:`edgesplit.game.prices`. A rule is chosen once from the settings
(:func:`leader_rule`), and plays rounds (``local``, ``best_response``) or not
(``enumerate``).

* ``local``: Algorithm 1 (:mod:`edgesplit.game.algorithm1`), every server trying ±Δ.
* ``best_response``: from the maximum prices, in each round every server (all against
  the same prices when ``update = "simultaneous"``, one after another seeing the moves
  before it when ``"sequential"``) moves to its best price on its whole grid against the
  others' current prices (:mod:`edgesplit.game.grid`; among equally good prices the
  highest), if that gains more than ``min_gain`` over its utility where it is. The
  game's table of offers (:func:`~edgesplit.game.offers.offer_table`) serves every
  turn's moves and the final regrets. Algorithm 1's stop rule: converged when a round
  moves no price, then every server's regret is at most ``min_gain``, a pure equilibrium
  on the grid; a cycle when the prices return to an earlier state; or the round limit.
* ``enumerate``: every profile of grid prices (:mod:`edgesplit.game.profiles`: each
  market's first pass from the same table, settled in full only where that may decide
  the outcome). A profile is an equilibrium when no server gains more than ``min_gain``
  by moving to another price of its grid. The outcome is the equilibrium of largest
  total server utility (ties: the first, server 0's level slowest, highest prices
  first), status converged; with none, the profile whose largest regret is least (ties
  as before), status no_equilibrium.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import jax
import jax.numpy as jnp

from edgesplit.config import GameSettings
from edgesplit.game.algorithm1 import RUNNING, GameState, Status, Update, advance, end_round, start
from edgesplit.game.fast_forward import state_after_descent
from edgesplit.game.grid import best_on_table, moves_from
from edgesplit.game.market import fold_markets, markets_at
from edgesplit.game.offers import OfferTable, offer_table
from edgesplit.game.prices import prices_at
from edgesplit.game.profiles import enumerate_profiles
from edgesplit.model.scenario import Scenario
from edgesplit.model.schemes import Options

NOT_ENUMERATED = -1
"""``Outcome.equilibria`` of the rules that do not enumerate."""


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Outcome:
    """Where a leader rule left the prices."""

    steps: jax.Array  # (S, 2) int32, each server's price in steps Δ below its maximum
    rounds: jax.Array  # () int32, rounds played (0 for enumerate)
    status: jax.Array  # () int32, a Status
    cycle_length: jax.Array  # () int32, rounds of the cycle the prices ended in, or 0
    equilibria: jax.Array  # () int32, equilibria on the grid (enumerate), or NOT_ENUMERATED
    recent: jax.Array  # (W, S, 2) int32, the steps of the rounds before the last, newest first

    @classmethod
    def of_game(cls, state: GameState) -> Outcome:
        return cls(
            state.steps, state.rounds, state.status, state.cycle_length,
            jnp.full_like(state.rounds, NOT_ENUMERATED), state.recent,
        )  # fmt: skip


@dataclass(frozen=True)
class LeaderRule:
    """A leader rule with its settings: the table of offers its rounds use, where its
    game starts, one round of it and the stop rule, and its whole game
    (:meth:`play`: the rounds from :meth:`first_round_state` by
    :meth:`next_round_state` until the game ends)."""

    settings: GameSettings

    queued: ClassVar[bool] = False  # its games share the lanes of sweep.batch.play_queue

    @property
    def update(self) -> Update:
        return Update(self.settings.update)

    def rounds_table(self, scenario: Scenario, options: Options) -> OfferTable | None:
        """The game's table of offers that the rule's rounds use, or None."""
        return offer_table(scenario, options, self.settings)

    def first_round_state(self, scenario: Scenario, options: Options, table=None):
        """``(state, memory)`` where the rule's rounds start."""
        raise NotImplementedError

    def next_round_state(self, scenario: Scenario, options: Options, table, carry):
        """``(state, memory)`` after one more round and the stop rule, from ``carry`` as
        :meth:`first_round_state` gives it; a game that has ended stays as it is."""
        raise NotImplementedError

    def play(
        self, scenario: Scenario, options: Options, table=None
    ) -> tuple[Outcome, LineMemory | None]:  # fmt: skip
        """The price game to its end, and the lines whose best ``best_response``
        remembers (:class:`LineMemory`; None for the other rules)."""
        state, lines = jax.lax.while_loop(
            lambda carry: carry[0].running,
            partial(self.next_round_state, scenario, options, table),
            self.first_round_state(scenario, options, table),
        )
        return Outcome.of_game(state), lines


class Local(LeaderRule):
    """Algorithm 1, after its fast-forward (:func:`~edgesplit.game.algorithm1.start`)."""

    queued = True

    def rounds_table(self, scenario, options):
        return None  # Algorithm 1's rounds settle their ±Δ markets directly

    def first_round_state(self, scenario, options, table=None):
        return start(scenario, options, self.settings), None

    def next_round_state(self, scenario, options, table, carry):
        return advance(scenario, options, self.settings, self.update, carry[0]), carry[1]


class BestResponse(LeaderRule):
    """``best_response`` from the maximum prices, every move from the game's table of
    offers and the lines of its last ``cycle_window`` rounds remembered."""

    def first_round_state(self, scenario, options, table=None):
        servers, settings = scenario.servers, self.settings
        status = jnp.where(options.servers_play, RUNNING, Status.CONVERGED).astype(jnp.int32)
        steps, recent, checkpoint = state_after_descent(servers, 0, settings.cycle_window)
        size = settings.cycle_window * servers.num_servers  # every mover of those rounds
        memory = LineMemory.empty(servers.num_servers, size, servers.max_price.dtype)
        return GameState(steps, jnp.int32(0), status, recent, checkpoint, jnp.int32(0)), memory

    def next_round_state(self, scenario, options, table, carry):
        state, memory = carry
        steps, memory = jax.lax.fori_loop(
            0,
            self.update.turns(scenario.servers.num_servers),
            lambda turn, carry: best_response_turn(
                scenario, options, self.settings, self.update, table, *carry, turn
            ),
            (state.steps, memory),
        )
        return end_round(self.settings, state, steps), memory


class Enumerate(LeaderRule):
    """``enumerate``: no rounds; every profile from the game's table of offers."""

    def play(self, scenario, options, table=None):
        if table is None:
            table = self.rounds_table(scenario, options)
        steps, status, equilibria = enumerate_profiles(scenario, options, self.settings, table)
        zero = jnp.int32(0)
        return Outcome(steps, zero, status, zero, equilibria, steps[None]), None


RULES = {"local": Local, "best_response": BestResponse, "enumerate": Enumerate}


def leader_rule(settings: GameSettings) -> LeaderRule:
    """The rule ``settings.leader`` names, with the settings."""
    return RULES[settings.leader](settings)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class LineMemory:
    """The best moves ``best_response`` found on its recent lines, so that a line met
    again is not searched again: a mover's best depends only on the others' levels (and
    its floor only decides whether it moves). A ring of entries, the oldest overwritten
    first; an entry is kept only where its best reached the floor it was searched with,
    and so is what the search finds from any floor."""

    mover: jax.Array  # (W,) int32, the entry's mover; -1 where empty
    levels: jax.Array  # (W, S) int32, every server's level there, the mover's own -1
    best: jax.Array  # (W,) the mover's best utility on the line
    level: jax.Array  # (W,) int32, the level of its first best
    written: jax.Array  # () int32, entries written so far

    @classmethod
    def empty(cls, num_servers: int, size: int, dtype) -> LineMemory:
        return cls(
            jnp.full(size, -1, jnp.int32), jnp.full((size, num_servers), -1, jnp.int32),
            jnp.zeros(size, dtype), jnp.zeros(size, jnp.int32), jnp.int32(0),
        )  # fmt: skip

    @staticmethod
    def _lines(movers, levels):
        """(P, S) each mover's line: the servers' ``levels`` (S,), its own as -1."""
        own = jnp.arange(levels.shape[0])[None, :] == movers[:, None]
        return jnp.where(own, -1, levels[None, :])

    def recall(self, movers, levels):
        """``(known, best, level)``, (P,) each: whether each mover's line at ``levels``
        is remembered, and its best there."""
        match = (self.mover[None, :] == movers[:, None]) & jnp.all(
            self.levels[None] == self._lines(movers, levels)[:, None], axis=2
        )  # (P, W)
        entry = jnp.argmax(match, axis=1)
        return jnp.any(match, axis=1), self.best[entry], self.level[entry]

    def remember(self, movers, levels, best, level, keep) -> LineMemory:
        """With each mover's ``best`` and ``level`` (P,) on its line at ``levels`` added
        where ``keep`` (P,) holds."""
        lines, memory = self._lines(movers, levels), self
        for p in range(movers.shape[0]):
            at = memory.written % memory.mover.shape[0]
            old = (memory.mover, memory.levels, memory.best, memory.level)
            new = (movers[p].astype(jnp.int32), lines[p], best[p], level[p])
            pairs = zip(old, new, strict=True)
            put = [x.at[at].set(jnp.where(keep[p], y, x[at])) for x, y in pairs]
            memory = LineMemory(*put, memory.written + keep[p].astype(jnp.int32))
        return memory


def best_response_turn(
    scenario: Scenario, options: Options, settings: GameSettings, update: Update, table,
    steps, memory: LineMemory, turn,
):  # fmt: skip
    """The steps after the movers of ``turn`` each take their best grid price, where it
    gains more than ``min_gain``, and the :class:`LineMemory` after it; from the game's
    table of offers, searching only the lines not remembered."""
    servers = scenario.servers
    movers = update.movers(servers.num_servers, turn)
    price_crb, price_rrb = prices_at(servers, steps)
    _, here, _ = markets_at(scenario, options, settings, price_crb[None], price_rrb[None])
    floor = here[0, movers]
    levels = steps[:, 0]
    known, known_best, known_level = memory.recall(movers, levels)
    tables, here = moves_from(scenario, options, settings, price_crb, price_rrb, table)
    best, level = best_on_table(
        scenario, options, settings, tables, here, price_crb, price_rrb, movers, floor, known
    )
    best = jnp.where(known, known_best, best)
    level = jnp.where(known, known_level, level)
    memory = memory.remember(movers, levels, best, level, ~known & (best >= floor))
    # A best below the floor (where none reaches it) gains nothing: no move.
    moves = (best - floor > settings.min_gain) & servers.active[movers]
    rows = jnp.where(moves[:, None], level[:, None], steps[movers])
    return steps.at[movers].set(rows), memory


def cycle_means(
    scenario: Scenario, options: Options, settings: GameSettings, outcome: Outcome,
    device_utility, server_utility,
):  # fmt: skip
    """Each device's and server's utility (eqs. 10, 11), (M,) and (S,), averaged over the
    states the prices end in: the ``outcome.cycle_length`` states of a cycle (the last,
    where they are ``device_utility`` and ``server_utility``, and those before it, from
    the game's memory of its last rounds; NaN for a cycle longer than that memory, which
    only the checkpoint caught); otherwise the last state's own."""
    length = outcome.cycle_length
    remembered = length <= outcome.recent.shape[0] + 1

    def record(sums, indices, choice, utility, settled):
        devices, servers = sums
        return (
            devices + jnp.sum(jnp.where(settled[:, None], choice.utility, 0.0), axis=0),
            servers + jnp.sum(jnp.where(settled[:, None], utility, 0.0), axis=0),
        )

    devices, servers = fold_markets(
        scenario, options, settings, jnp.where(remembered, jnp.maximum(length - 1, 0), 0),
        lambda index: prices_at(scenario.servers, outcome.recent[index]), record,
        (device_utility, server_utility),
    )  # fmt: skip
    states = jnp.where(remembered, jnp.maximum(length, 1), jnp.nan)
    return devices / states, servers / states
