"""Solve one scenario: play the price game, settle the devices, certify the result.

:func:`solve` and :func:`solve_at_prices` take one scenario, unbatched, and can be
``jax.vmap``-ed over a batch; :func:`solve_batch` solves a batch with game lanes that
never wait for the longest game (the sweeps use it). They are jit-compiled with the
settings static, so a new scenario of the same shapes reuses the compiled program.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from edgesplit.best_response import Choice
from edgesplit.certificate import device_gains, settled_market
from edgesplit.config import GameSettings
from edgesplit.price_game import Status, play, play_queue, prices_at, server_sales
from edgesplit.scenario import Scenario
from edgesplit.schemes import scheme_options


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


def _settle(scenario, options, settings, price_crb, price_rrb, rounds, status) -> Solution:
    choice, server_gain = settled_market(scenario, options, settings, price_crb, price_rrb)
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
        server_violation=jnp.max(server_gain),
    )


@partial(jax.jit, static_argnames="settings")
def solve(scenario: Scenario, scheme, settings: GameSettings = GameSettings()) -> Solution:
    """Play Algorithm 1 under ``scheme`` (a :class:`~edgesplit.schemes.Scheme` or its int)."""
    options = scheme_options(scenario, jnp.asarray(scheme, jnp.int32))
    game = play(scenario, options, settings)
    price_crb, price_rrb = prices_at(scenario.servers, game.steps)
    return _settle(scenario, options, settings, price_crb, price_rrb, game.rounds, game.status)


def solve_batch(
    scenarios: Scenario, scheme, settings: GameSettings = GameSettings(), lanes: int = 16
) -> Solution:
    """:func:`solve` for a batch of scenarios (leading axis), all under ``scheme``.

    The price games share ``lanes`` lanes, each lane taking the next game when its own
    ends (:func:`~edgesplit.price_game.play_queue`). The games are those of
    ``vmap(solve)``: the same rounds, status and choices, and floats equal to rounding
    (the programs are fused differently); sooner when game lengths vary."""
    count = jax.tree.leaves(scenarios)[0].shape[0]
    scheme = jnp.asarray(scheme, jnp.int32)
    options = jax.vmap(lambda scenario: scheme_options(scenario, scheme))(scenarios)
    game = play_queue(scenarios, options, settings, lanes)
    price_crb, price_rrb = jax.vmap(prices_at)(scenarios.servers, game.steps)
    # A batch's admission loops run as many passes as its slowest market needs, so the
    # games are settled a few per lane at a time (64 on CPU: faster than 16 or 256),
    # padded with copies of the last game to whole batches (a partial batch would be
    # compiled a second time).
    batch = min(4 * lanes, count)
    padded = jnp.minimum(jnp.arange(-(-count // batch) * batch), count - 1)
    settled = jax.lax.map(
        lambda args: _settle(args[0], args[1], settings, *args[2:]),
        jax.tree.map(
            lambda x: x[padded],
            (scenarios, options, price_crb, price_rrb, game.rounds, game.status),
        ),
        batch_size=batch,
    )
    return jax.tree.map(lambda x: x[:count], settled)


@partial(jax.jit, static_argnames="settings")
def solve_at_prices(
    scenario: Scenario, scheme, price_crb, price_rrb, settings: GameSettings = GameSettings()
) -> Solution:
    """The devices' response (with admission) to given prices; no price game."""
    options = scheme_options(scenario, jnp.asarray(scheme, jnp.int32))
    dtype = scenario.servers.crb_hz.dtype
    return _settle(
        scenario, options, settings,
        jnp.asarray(price_crb, dtype), jnp.asarray(price_rrb, dtype),
        jnp.int32(0), jnp.int32(Status.FIXED_PRICES),
    )  # fmt: skip
