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
from edgesplit.game.algorithm1 import Status, final_markets, play
from edgesplit.game.best_response import Choice
from edgesplit.game.certificate import device_gains, moved_prices, server_gains
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
    rounds: jax.Array  # () int32, rounds of Algorithm 1 played
    status: jax.Array  # () int32, a Status
    device_violation: jax.Array  # () largest gain of a device deviating alone
    server_violation: jax.Array  # () largest gain of a server moving its price by Δ

    @property
    def converged(self) -> jax.Array:
        return self.status == Status.CONVERGED

    @property
    def certificate(self) -> jax.Array:
        """The largest gain any player could get by deviating: 0 at an equilibrium."""
        return jnp.maximum(self.device_violation, self.server_violation)


def certify(
    scenario, options, price_crb, price_rrb, choice, market_utility, rounds, status
) -> Solution:
    """The solution whose devices settled on ``choice`` at these prices, with its
    certificate; the servers' utility in the market there and after each of their moves
    is ``market_utility`` (1 + S·C, S)."""
    utility, crbs_sold, rrbs_sold = server_sales(scenario, choice, price_crb, price_rrb)
    return Solution(
        devices=choice,
        price_crb=price_crb,
        price_rrb=price_rrb,
        server_utility=utility,
        crbs_sold=crbs_sold,
        rrbs_sold=rrbs_sold,
        rounds=rounds,
        status=status,
        device_violation=jnp.max(device_gains(scenario, options, price_crb, price_rrb, choice)),
        server_violation=jnp.max(server_gains(scenario.servers, options, market_utility)),
    )


@partial(jax.jit, static_argnames="settings")
def solve(scenario: Scenario, scheme, settings: GameSettings = GameSettings()) -> Solution:
    """Play Algorithm 1 under ``scheme`` (a :class:`~edgesplit.model.schemes.Scheme` or its int)."""
    options = scheme_options(scenario, jnp.asarray(scheme, jnp.int32))
    game = play(scenario, options, settings)
    choices, utility, _ = markets_at(
        scenario, options, settings,
        *jax.vmap(partial(prices_at, scenario.servers))(
            final_markets(scenario.servers, settings, game.steps)
        ),
    )  # fmt: skip
    price_crb, price_rrb = prices_at(scenario.servers, game.steps)
    return certify(
        scenario, options, price_crb, price_rrb, jax.tree.map(lambda x: x[0], choices), utility,
        game.rounds, game.status,
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
        scenario, options, price_crb, price_rrb, jax.tree.map(lambda x: x[0], choices), utility,
        jnp.int32(0), jnp.int32(Status.FIXED_PRICES),
    )  # fmt: skip
