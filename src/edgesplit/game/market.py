"""A market: the devices' choices at given prices, capacities enforced, and what each
server sells there (eq. 11); and many markets of one scenario settled on a few slots
(:func:`fold_markets`).

A vmapped :func:`market` runs every market's admission loop as long as the slowest one:
with hundreds of markets, most settled in one or two passes and a few needing five,
most of the work is spent on markets already settled. :func:`fold_markets` keeps
``slots`` markets under way at once, one admission pass each per step, and a slot whose
market is settled takes the next one; so the work is about the total passes of the
markets over the slots. Markets are numbered 0 .. count - 1 (``count`` traced) and made
on the fly by ``prices_of``, so that none is stored but those under way.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from edgesplit.config import GameSettings
from edgesplit.game.admission import (
    Admission,
    admission_pass,
    admitting,
    open_market,
    respond_with_admission,
)
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


def next_pass(
    scenario: Scenario, options: Options, settings: GameSettings, terms: OffloadTerms,
    price_crb, price_rrb, admission: Admission,
) -> Admission:  # fmt: skip
    """One more admission pass at these prices, where the market is still admitting (an
    ``admission`` settled stays as it is): a step of a market settled on a slot."""
    respond = responder(scenario, options, settings, price_crb, price_rrb, terms)
    after = admission_pass(scenario, price_crb, price_rrb, respond, admission)
    return jax.tree.map(partial(jnp.where, admitting(scenario, admission)), after, admission)


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


MARKET_SLOTS = 16
"""Markets under way at once per scenario: enough that a step's kernels are wide, few
enough that the last markets of a scenario do not leave most slots idle."""


def fold_markets(
    scenario: Scenario,
    options: Options,
    settings: GameSettings,
    count,
    prices_of,
    record,
    initial,
    slots: int | None = None,
    first_request=None,
    wanted=None,
):
    """Settle markets 0 .. ``count`` - 1 and fold each server's utility (eq. 11) in each
    into an accumulator.

    ``prices_of(index)`` gives market ``index``'s CRB and RRB prices, (S,) each;
    ``record(accumulated, indices, choice, utility, settled)`` folds the markets
    ``indices`` (slots,), with the devices' choices there (leaves (slots, M)) and each
    server's utility (slots, S), where ``settled`` (slots,) holds, and returns the new
    accumulator. Markets settle in an order that depends only on the scenario,
    so ``record`` sees the same sequence every time. ``first_request(index)``, where
    given, is the devices' best response (a :class:`~edgesplit.game.best_response.Choice`)
    in market ``index`` with every block free: its first admission pass is then made in
    the step that takes the market, beside its second. ``wanted(index, accumulated)``,
    where given, says whether market ``index`` is still worth settling when a slot would
    take it; one that is not is passed over.
    """
    slots = MARKET_SLOTS if slots is None else slots
    terms = offload_terms(scenario)  # price-free: once for every market
    free = count  # the index of a free slot's market: none

    def busy(carry):
        taken, market, *_ = carry
        return (taken < count) | jnp.any(market < free)

    def step(carry):
        taken, market, price_crb, price_rrb, admission, accumulated = carry
        # Free slots take the next markets, the k-th free slot market taken + k.
        idle = market >= free
        rank = jnp.cumsum(idle, dtype=jnp.int32) - 1
        offered = idle & (taken + rank < count)
        fresh = offered
        if wanted is not None:
            fresh &= jax.vmap(lambda index: wanted(index, accumulated))(
                jnp.minimum(taken + rank, count - 1)
            )
        market = jnp.where(fresh, taken + rank, jnp.where(idle, free, market))
        new_crb, new_rrb = jax.vmap(prices_of)(jnp.minimum(market, count - 1))
        price_crb = jnp.where(fresh[:, None], new_crb, price_crb)
        price_rrb = jnp.where(fresh[:, None], new_rrb, price_rrb)
        opened = jax.tree.map(
            lambda x: jnp.broadcast_to(x, (slots, *x.shape)), open_market(scenario)
        )
        if first_request is not None:
            opened = jax.vmap(
                lambda crb, rrb, request, admission: admission_pass(
                    scenario, crb, rrb, lambda *_: request, admission
                )
            )(new_crb, new_rrb, jax.vmap(first_request)(jnp.minimum(market, count - 1)), opened)
        admission = jax.tree.map(
            lambda new, old: jnp.where(fresh.reshape(-1, *(1,) * (new.ndim - 1)), new, old),
            opened,
            admission,
        )
        taken = taken + jnp.sum(offered, dtype=jnp.int32)
        # One admission pass in every slot; settled markets are folded in and freed.
        admission = jax.vmap(partial(next_pass, scenario, options, settings, terms))(
            price_crb, price_rrb, admission
        )
        settled = (market < free) & ~jax.vmap(partial(admitting, scenario))(admission)
        utility, _, _ = jax.vmap(partial(server_sales, scenario))(
            admission.choice, price_crb, price_rrb
        )
        accumulated = record(accumulated, market, admission.choice, utility, settled)
        market = jnp.where(settled, free, market)
        return taken, market, price_crb, price_rrb, admission, accumulated

    num_servers = scenario.servers.num_servers
    dtype = scenario.servers.crb_hz.dtype
    start = (
        jnp.int32(0),
        jnp.full(slots, free, jnp.int32),
        jnp.zeros((slots, num_servers), dtype),
        jnp.zeros((slots, num_servers), dtype),
        jax.tree.map(lambda x: jnp.broadcast_to(x, (slots, *x.shape)), open_market(scenario)),
        initial,
    )
    return jax.lax.while_loop(busy, step, start)[-1]
