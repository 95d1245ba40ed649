"""Solve one scenario: play the price game, settle the devices, certify the result.

:func:`solve` and :func:`solve_at_prices` take one scenario, unbatched, and can be
``jax.vmap``-ed over a batch; :func:`~edgesplit.sweep.batch.solve_batch` solves a batch
with game lanes that never wait for the longest game (the sweeps use it). They are
jit-compiled with the settings static, so a new scenario of the same shapes reuses the
compiled program.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from edgesplit.config import GameSettings
from edgesplit.game.algorithm1 import Status, final_markets
from edgesplit.game.best_response import Choice
from edgesplit.game.certificate import device_gains, moved_prices, server_gains
from edgesplit.game.grid import server_regret
from edgesplit.game.leaders import NOT_ENUMERATED, Outcome, cycle_means, leader_rule
from edgesplit.game.market import markets_at, server_sales
from edgesplit.game.prices import prices_at
from edgesplit.model.scenario import Scenario
from edgesplit.model.schemes import scheme_options


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Solution:
    """A solved scenario."""

    devices: Choice  # what each device does, (M,)
    price_crb: jax.Array  # (S,) final CRB price g^(c)
    price_rrb: jax.Array  # (S,) final RRB price g^(r)
    server_utility: jax.Array  # (S,) eq. (11)
    crbs_sold: jax.Array  # (S,) int32
    rrbs_sold: jax.Array  # (S,) int32
    rounds: jax.Array  # () int32, rounds of the leader rule played
    status: jax.Array  # () int32, a Status
    cycle_length: jax.Array  # () int32, rounds of the cycle the prices ended in (CYCLE), else 0
    cycle_device_utility: jax.Array  # (M,) eq. (10) averaged over the cycle's states
    cycle_server_utility: jax.Array  # (S,) eq. (11) averaged over the cycle's states
    equilibria: jax.Array  # () int32, equilibria on the grid (enumerate), else -1
    device_violation: jax.Array  # () largest gain of a device deviating alone
    server_regret: jax.Array  # (S,) largest gain of each server moving its price on its grid
    local_server_violation: jax.Array  # () largest gain of a server moving its price by ±Δ

    @property
    def converged(self) -> jax.Array:
        return self.status == Status.CONVERGED

    @property
    def certificate(self) -> jax.Array:
        """The largest gain any player could get by a unilateral deviation on the price
        grid (:mod:`edgesplit.game.grid`): 0 at an equilibrium. A lower bound with
        separate prices, whose servers' moves are tried along three lines only."""
        return jnp.maximum(self.device_violation, jnp.max(self.server_regret, axis=-1, initial=0.0))

    @property
    def local_certificate(self) -> jax.Array:
        """As :attr:`certificate`, with the servers held to Algorithm 1's ±Δ moves."""
        return jnp.maximum(self.device_violation, self.local_server_violation)


def certify(
    scenario, options, settings, price_crb, price_rrb, choice, market_utility, outcome: Outcome,
    regret=None, table=None, lines=None, cycle=None,
) -> Solution:  # fmt: skip
    """The solution whose devices settled on ``choice`` at these prices, where the leader
    rule's ``outcome`` left them, with its certificates; the servers' utility in the
    market there and after each of their ±Δ moves is ``market_utility`` (1 + S·C, S). The
    servers' ``regret`` (:func:`~edgesplit.game.grid.server_regret`) is computed here
    unless given, from the game's ``table`` of offers where given, and the best of the
    lines there that ``best_response`` remembers (``lines``, a
    :class:`~edgesplit.game.leaders.LineMemory`) where given; so are the devices' and
    servers' utilities averaged over a cycle (``cycle``,
    :func:`~edgesplit.game.leaders.cycle_means`)."""
    utility, crbs_sold, rrbs_sold = server_sales(scenario, choice, price_crb, price_rrb)
    if regret is None:
        remembered = None
        if lines is not None:  # joint prices: each server's level is its steps' first column
            movers = jnp.arange(scenario.servers.num_servers)
            remembered = lines.recall(movers, outcome.steps[:, 0])[:2]
        regret = server_regret(
            scenario, options, settings, price_crb, price_rrb, utility, table, remembered
        )
    if cycle is None:
        cycle = cycle_means(scenario, options, settings, outcome, choice.utility, utility)
    cycle_devices, cycle_servers = cycle
    return Solution(
        devices=choice,
        price_crb=price_crb,
        price_rrb=price_rrb,
        server_utility=utility,
        crbs_sold=crbs_sold,
        rrbs_sold=rrbs_sold,
        rounds=outcome.rounds,
        status=outcome.status,
        cycle_length=outcome.cycle_length,
        cycle_device_utility=cycle_devices,
        cycle_server_utility=cycle_servers,
        equilibria=outcome.equilibria,
        device_violation=jnp.max(device_gains(scenario, options, price_crb, price_rrb, choice)),
        server_regret=regret,
        local_server_violation=jnp.max(server_gains(scenario.servers, options, market_utility)),
    )


@partial(jax.jit, static_argnames="settings")
def solve(scenario: Scenario, scheme, settings: GameSettings = GameSettings()) -> Solution:
    """Play the price game of ``settings.leader`` (default: Algorithm 1) under ``scheme``
    (a :class:`~edgesplit.model.schemes.Scheme` or its int)."""
    options = scheme_options(scenario, jnp.asarray(scheme, jnp.int32))
    rule = leader_rule(settings)
    table = rule.rounds_table(scenario, options)
    outcome, lines = rule.play(scenario, options, table)
    choices, utility, _ = markets_at(
        scenario, options, settings,
        *jax.vmap(partial(prices_at, scenario.servers))(
            final_markets(scenario.servers, settings, outcome.steps)
        ),
    )  # fmt: skip
    price_crb, price_rrb = prices_at(scenario.servers, outcome.steps)
    return certify(
        scenario, options, settings, price_crb, price_rrb, jax.tree.map(lambda x: x[0], choices),
        utility, outcome, table=table, lines=lines,
    )  # fmt: skip


@partial(jax.jit, static_argnames="settings")
def solve_at_prices(
    scenario: Scenario, scheme, price_crb, price_rrb, settings: GameSettings = GameSettings()
) -> Solution:
    """The devices' response (with admission) to given prices; no price game."""
    options = scheme_options(scenario, jnp.asarray(scheme, jnp.int32))
    dtype = scenario.servers.crb_hz.dtype
    price_crb, price_rrb = jnp.asarray(price_crb, dtype), jnp.asarray(price_rrb, dtype)
    choices, utility, _ = markets_at(
        scenario, options, settings,
        *moved_prices(scenario.servers, settings, price_crb, price_rrb),
    )  # fmt: skip
    return certify(
        scenario, options, settings, price_crb, price_rrb, jax.tree.map(lambda x: x[0], choices),
        utility, Outcome(
            steps=jnp.zeros((scenario.servers.num_servers, 2), jnp.int32), rounds=jnp.int32(0),
            status=jnp.int32(Status.FIXED_PRICES), cycle_length=jnp.int32(0),
            equilibria=jnp.int32(NOT_ENUMERATED),
            recent=jnp.zeros((1, scenario.servers.num_servers, 2), jnp.int32),
        ),
    )  # fmt: skip
