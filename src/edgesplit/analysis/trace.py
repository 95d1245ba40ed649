"""One game, round by round: the prices, the servers' utilities and who buys from whom
after every round of the leader rule, to the state :func:`~edgesplit.game.solve.solve`
ends in.

The rounds are stepped one at a time with the very functions ``solve`` loops over
(:meth:`~edgesplit.game.leaders.LeaderRule.first_round_state`,
:meth:`~edgesplit.game.leaders.LeaderRule.next_round_state`), so the trace ends where ``solve``
ends: the same prices, the same round count and status. Algorithm 1's opening rounds
in which nobody buys and prices only fall, which ``solve`` skips exactly (the
fast-forward), are filled in from the same closed form
(:func:`~edgesplit.game.fast_forward.state_after_descent`) and marked. A trace serves
one game, never a sweep: each round is its own compiled call.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from edgesplit.api import checked_game
from edgesplit.config import GameSettings
from edgesplit.errors import InputError
from edgesplit.game.algorithm1 import Status
from edgesplit.game.best_response import IDLE
from edgesplit.game.fast_forward import state_after_descent
from edgesplit.game.leaders import Enumerate, leader_rule
from edgesplit.game.market import markets_at
from edgesplit.game.prices import prices_at
from edgesplit.model.scenario import Scenario
from edgesplit.model.schemes import Scheme, scheme_options


@dataclass(frozen=True)
class Trace:
    """A game's states, one row per round: row 0 where the rule starts (the maximum
    prices), row r the state after round r, the last row where the game ended. For
    ``enumerate``, which plays no rounds, the one row is its outcome."""

    scheme: Scheme
    settings: GameSettings
    steps: np.ndarray  # (R + 1, S, 2) int, each server's (CRB, RRB) price in steps Δ below max
    price_crb: np.ndarray  # (R + 1, S) each server's CRB price g^(c)
    price_rrb: np.ndarray  # (R + 1, S) each server's RRB price g^(r)
    server_utility: np.ndarray  # (R + 1, S) eq. (11)
    buyers: np.ndarray  # (R + 1, S) int, devices offloading to each server
    crbs_sold: np.ndarray  # (R + 1, S) int
    rrbs_sold: np.ndarray  # (R + 1, S) int
    local: np.ndarray  # (R + 1,) int, devices running every layer themselves
    idle: np.ndarray  # (R + 1,) int, devices doing nothing
    fast_forwarded: np.ndarray  # (R + 1,) bool, reached by rounds solve skips exactly
    in_cycle: np.ndarray  # (R + 1,) bool, one of the states of the cycle the game ends in
    status: Status
    cycle_length: int  # rounds of that cycle, else 0
    equilibria: int  # equilibria on the grid (enumerate), else -1

    @property
    def rounds(self) -> int:
        """Rounds played, as ``solve`` counts them (0 for enumerate)."""
        return 0 if self.settings.leader == "enumerate" else len(self.price_crb) - 1

    def figure(self):
        """The trace as a matplotlib Figure: each server's price, utility and buyers
        round by round, the fast-forwarded descent and the cycle shaded."""
        from edgesplit.analysis.plots import trace_figure

        return trace_figure(self)

    def to_json(self) -> dict:
        """The trace as a JSON document (strict JSON: every number finite)."""
        states = []
        for r in range(len(self.price_crb)):
            servers = [
                {
                    "price_crb": float(self.price_crb[r, s]),
                    "price_rrb": float(self.price_rrb[r, s]),
                    "utility": float(self.server_utility[r, s]),
                    "buyers": int(self.buyers[r, s]),
                    "crbs_sold": int(self.crbs_sold[r, s]),
                    "rrbs_sold": int(self.rrbs_sold[r, s]),
                }
                for s in range(self.price_crb.shape[1])
            ]
            states.append(
                {
                    "round": r,
                    "servers": servers,
                    "local": int(self.local[r]),
                    "idle": int(self.idle[r]),
                    "fast_forwarded": bool(self.fast_forwarded[r]),
                    "in_cycle": bool(self.in_cycle[r]),
                }
            )
        return {
            "scheme": self.scheme.label,
            "leader": self.settings.leader,
            "update": self.settings.update,
            "rounds": self.rounds,
            "status": self.status.label,
            "cycle_length": self.cycle_length,
            "equilibria": None if self.equilibria < 0 else self.equilibria,
            "states": states,
        }

    def table(self) -> str:
        """The trace as text: a line per round (the fast-forwarded descent in one)."""
        num_servers = self.price_crb.shape[1]
        joint = self.settings.joint_price
        price = "price" if joint else "CRB/RRB price"
        head = ["round"] + [
            f"ES{s} {col}" for s in range(num_servers) for col in (price, "utility", "buyers")
        ]
        head += ["local", "idle", ""]
        rows = []
        skipped = np.flatnonzero(self.fast_forwarded)
        for r in range(len(self.price_crb)):
            if len(skipped) > 1 and r in skipped[1:-1]:
                if r == skipped[1]:
                    rows.append([f"{skipped[1]}-{skipped[-2]}", *[""] * (len(head) - 2),
                                 "fast-forwarded: nobody buys, prices fall"])  # fmt: skip
                continue
            cells = [str(r)]
            for s in range(num_servers):
                shown = f"{self.price_crb[r, s]:.4g}"
                if not joint:
                    shown += f"/{self.price_rrb[r, s]:.4g}"
                cells += [shown, f"{self.server_utility[r, s]:.4f}", str(self.buyers[r, s])]
            mark = (
                "cycle"
                if self.in_cycle[r]
                else ("fast-forwarded" if self.fast_forwarded[r] else "")
            )
            rows.append([*cells, str(self.local[r]), str(self.idle[r]), mark])
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
        lines = ["  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
        lines += [
            "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
        ]
        ending = f"{self.scheme.label}, leader {self.settings.leader}"
        ending += f" ({self.settings.update}): {self.status.label} after {self.rounds} rounds"
        if self.cycle_length:
            ending += f", a cycle of {self.cycle_length} rounds"
        if self.equilibria >= 0:
            ending += f", {self.equilibria} equilibria on the grid"
        return "\n".join([*lines, ending]) + "\n"


def trace(scenario: Scenario, scheme, settings: GameSettings = GameSettings()) -> Trace:
    """``scenario``'s game under ``scheme`` (a :class:`~edgesplit.model.schemes.Scheme`,
    its int or its name) and ``settings``, round by round (see the module's docstring),
    its arguments checked and the settings fitted as ``edgesplit.solve`` checks them. The
    last row's prices and the round count are those of ``edgesplit.solve`` with the same
    arguments."""
    scheme, settings = checked_game(scenario, scheme, settings)
    if not isinstance(scheme, Scheme):
        raise InputError("scheme", "must be one scheme: a trace plays one game")
    options = _scheme_options(scenario, jnp.int32(scheme))
    rule = leader_rule(settings)
    table = _rounds_table(rule, scenario, options)
    if isinstance(rule, Enumerate):
        outcome, _ = _play(rule, scenario, options, table)
        steps = np.asarray(outcome.steps)[None]
        status, cycle_length = Status(int(outcome.status)), 0
        equilibria, skipped = int(outcome.equilibria), 0
    else:
        carry = _first_round_state(rule, scenario, options, table)
        skipped = int(carry[0].rounds)  # the opening rounds the fast-forward skipped
        steps = [np.asarray(_descent(scenario.servers, r)) for r in range(skipped)]
        while True:
            steps.append(np.asarray(carry[0].steps))
            if not bool(carry[0].running):
                break
            carry = _next_round_state(rule, scenario, options, table, carry)
        steps = np.stack(steps)
        status, cycle_length = Status(int(carry[0].status)), int(carry[0].cycle_length)
        equilibria = -1
    markets = _markets(scenario, options, settings, steps)
    in_cycle = np.zeros(len(steps), bool)
    if status == Status.CYCLE:
        in_cycle[len(steps) - cycle_length :] = True
    fast_forwarded = np.zeros(len(steps), bool)
    fast_forwarded[1 : skipped + 1] = True
    return Trace(
        scheme=scheme, settings=settings, steps=steps,
        **markets,
        fast_forwarded=fast_forwarded, in_cycle=in_cycle, status=status,
        cycle_length=cycle_length, equilibria=equilibria,
    )  # fmt: skip


# Each step compiled once per shape and rule (its settings), as solve is.
_scheme_options = jax.jit(scheme_options)
_rounds_table = jax.jit(lambda rule, *game: rule.rounds_table(*game), static_argnums=0)
_play = jax.jit(lambda rule, *game: rule.play(*game), static_argnums=0)
_first_round_state = jax.jit(lambda rule, *game: rule.first_round_state(*game), static_argnums=0)
_next_round_state = jax.jit(lambda rule, *game: rule.next_round_state(*game), static_argnums=0)


@jax.jit
def _descent(servers, rounds):
    """The steps after ``rounds`` rounds of the fast-forwarded descent."""
    return state_after_descent(servers, rounds, 1)[0]


STATES_AT_ONCE = 32
"""States whose markets one compiled call settles: a game of any length takes the same
program, its last call padded with copies of its last state."""


def _markets(scenario: Scenario, options, settings: GameSettings, steps: np.ndarray) -> dict:
    """:func:`_states` of every state of ``steps`` (R + 1, S, 2), as NumPy arrays."""
    count = len(steps)
    padded = np.concatenate([steps, np.repeat(steps[-1:], -count % STATES_AT_ONCE, axis=0)])
    parts = [
        _states(scenario, options, settings, jnp.asarray(padded[i : i + STATES_AT_ONCE]))
        for i in range(0, len(padded), STATES_AT_ONCE)
    ]
    return {k: np.concatenate([np.asarray(p[k]) for p in parts])[:count] for k in parts[0]}


@partial(jax.jit, static_argnums=2)
def _states(scenario: Scenario, options, settings: GameSettings, steps) -> dict:
    """What each state of ``steps`` (R + 1, S, 2) holds: its prices, and the market there."""
    price_crb, price_rrb = jax.vmap(partial(prices_at, scenario.servers))(steps)
    choices, utility, _ = markets_at(scenario, options, settings, price_crb, price_rrb)
    num_servers = scenario.servers.num_servers
    buys = choices.server[..., None] == jnp.arange(num_servers)  # (R + 1, M, S)
    real = scenario.devices.active[None, :]
    return {
        "price_crb": price_crb,
        "price_rrb": price_rrb,
        "server_utility": utility,
        "buyers": jnp.sum(buys & real[..., None], axis=1),
        "crbs_sold": jnp.sum(jnp.where(buys, choices.crbs[..., None], 0), axis=1),
        "rrbs_sold": jnp.sum(jnp.where(buys, choices.rrbs[..., None], 0), axis=1),
        "local": jnp.sum((choices.server == IDLE) & (choices.split != IDLE) & real, axis=1),
        "idle": jnp.sum((choices.split == IDLE) & real, axis=1),
    }
