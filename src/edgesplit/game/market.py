"""A market: the devices' choices at given prices, capacities enforced, and what each
server sells there (eq. 11)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from edgesplit.config import GameSettings
from edgesplit.game.admission import respond_with_admission
from edgesplit.game.best_response import (
    Choice,
    OffloadTerms,
    choose,
    offload_options,
    offload_terms,
)
from edgesplit.model.scenario import Scenario
from edgesplit.model.schemes import Options


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


def markets_at(scenario: Scenario, options: Options, settings: GameSettings, price_crb, price_rrb):
    """The devices' markets at K price vectors, (K, S) each: their choices (leading axes
    K, M), and each server's utility and CRBs + RRBs sold in each (K, S), as one
    vmapped market."""
    choices = jax.vmap(lambda c, r: market(scenario, options, settings, c, r))(price_crb, price_rrb)
    utility, crbs, rrbs = jax.vmap(partial(server_sales, scenario))(choices, price_crb, price_rrb)
    return choices, utility, crbs + rrbs
