"""Capacity and admission: the devices' best responses, held to what the servers have.

Rule (the paper leaves it open): every pending device best-responds to what the
servers have left. Each server ranks the requests it receives by the profit they bring
it (its term of eq. 11), highest first, ties to the lower device index, and admits
them in that order while the running totals of CRBs and RRBs fit; it refuses the
first request that does not fit and every one after it. Devices that chose to run
locally or stay idle are settled too. Refused devices best-respond again to what is
left (other servers, the rest of this one, local, idle), until every device is
settled. The top-ranked request at each server always fits, so each pass settles at
least one device per requested server and the loop ends within M passes. It is also
stopped there: if a request ever broke that (a kernel asking for more than is left,
or XLA computing one request twice with different rounding, so that two devices each
rank behind the other), the devices still pending stay idle rather than the market
looping forever.

No server ever allocates more than it has: a device only asks for what is left, and a
server admits only what fits. Every admitted device's choice stays a best response at
the end, since others only take capacity away and its own purchase stays feasible.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from edgesplit.game.best_response import IDLE, Choice
from edgesplit.model.delays import server_profit
from edgesplit.model.scenario import Scenario


def idle_choice(num_devices: int, dtype) -> Choice:
    """Every device idle."""
    ints = jnp.full(num_devices, IDLE, jnp.int32)
    return Choice(
        server=ints,
        split=ints,
        crbs=jnp.zeros(num_devices, jnp.int32),
        rrbs=jnp.zeros(num_devices, jnp.int32),
        utility=jnp.zeros(num_devices, dtype),
        delay=jnp.full(num_devices, jnp.nan, dtype),
    )


def admit_in_profit_order(
    scenario: Scenario, request: Choice, pending, price_crb, price_rrb, crbs_left, rrbs_left
):
    """Which pending requests each server admits: the longest profit-ranked prefix that fits."""
    servers = scenario.servers
    target = jnp.where(pending, request.server, IDLE)
    asks = target != IDLE
    server = jnp.where(asks, target, 0)
    profit = server_profit(
        request.crbs, request.rrbs, price_crb[server], price_rrb[server],
        servers.cost_crb[server], servers.cost_rrb[server],
    )  # fmt: skip
    # ahead[i, j]: j asks i's server and is ranked at or before i (more profit, or as
    # much and a lower index). Counting with it, rather than sorting, keeps every pass
    # a few small vectorised operations; the totals are those of the sorted prefix. A
    # matrix product sums them: a sum over j would be fused with everything computing
    # the requests, recomputed for each of the M² pairs.
    device = jnp.arange(target.shape[0])
    ahead = (target[:, None] == target[None, :]) & (
        (profit[None, :] > profit[:, None])
        | ((profit[None, :] == profit[:, None]) & (device[None, :] <= device[:, None]))
    )
    blocks = jnp.stack([request.crbs, request.rrbs], axis=1)
    through = jnp.dot(ahead.astype(jnp.int32), blocks, preferred_element_type=jnp.int32)
    crbs_through, rrbs_through = through[:, 0], through[:, 1]
    # Running totals only grow down a ranking, so "fits" holds for a prefix of each.
    return asks & (crbs_through <= crbs_left[server]) & (rrbs_through <= rrbs_left[server])


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Admission:
    """A market's admission in progress: who is settled, and what is left."""

    settled: jax.Array  # (M,) bool
    choice: Choice  # what the settled devices do; idle for the others
    crbs_left: jax.Array  # (S,) int32
    rrbs_left: jax.Array  # (S,) int32
    passes: jax.Array  # () int32, passes made


def open_market(scenario: Scenario) -> Admission:
    """Nobody settled but the padding; every server with all its blocks."""
    devices, servers = scenario.devices, scenario.servers
    return Admission(
        settled=~devices.active,
        choice=idle_choice(devices.num_devices, devices.arrival_rate.dtype),
        crbs_left=jnp.where(servers.active, servers.crbs, 0),
        rrbs_left=jnp.where(servers.active, servers.rrbs, 0),
        passes=jnp.int32(0),
    )


def admitting(scenario: Scenario, admission: Admission):
    """Whether the market needs another pass: a device is pending, and fewer than M
    passes were made."""
    return ~jnp.all(admission.settled) & (admission.passes < scenario.devices.num_devices)


def admission_pass(
    scenario: Scenario, price_crb, price_rrb, respond, admission: Admission
) -> Admission:
    """One pass: the pending devices respond to what is left, the servers admit what fits.

    ``respond(crbs_left, rrbs_left)`` is the devices' unconstrained best response
    (a :class:`Choice`) to what the servers have left, (S,) each.
    """
    settled, crbs_left, rrbs_left = admission.settled, admission.crbs_left, admission.rrbs_left
    request = respond(crbs_left, rrbs_left)
    pending = ~settled
    admitted = admit_in_profit_order(
        scenario, request, pending, price_crb, price_rrb, crbs_left, rrbs_left
    )
    settles = pending & ((request.server == IDLE) | admitted)
    server = jnp.arange(scenario.servers.num_servers)
    bought = (request.server[:, None] == server) & admitted[:, None]
    return Admission(
        settled=settled | settles,
        choice=jax.tree.map(
            lambda new, old: jnp.where(settles, new, old), request, admission.choice
        ),
        crbs_left=crbs_left
        - jnp.sum(jnp.where(bought, request.crbs[:, None], 0), axis=0, dtype=jnp.int32),
        rrbs_left=rrbs_left
        - jnp.sum(jnp.where(bought, request.rrbs[:, None], 0), axis=0, dtype=jnp.int32),
        passes=admission.passes + 1,
    )


def respond_with_admission(scenario: Scenario, price_crb, price_rrb, respond) -> Choice:
    """Every device's choice at these prices, with the servers' capacities enforced:
    :func:`admission_pass` until every device is settled (``respond`` as there)."""
    return jax.lax.while_loop(
        lambda admission: admitting(scenario, admission),
        lambda admission: admission_pass(scenario, price_crb, price_rrb, respond, admission),
        open_market(scenario),
    ).choice
