"""The mobile devices' best response to the servers' prices (Section III, eq. 12).

Each device picks the option of highest utility (eq. 10) among: offload to server s
after split α with y CRBs and z RRBs (1 <= y, z <= what s has left for it), run
everything locally, or stay idle (utility 0: an overloaded device processes nothing).
Options whose queues are unstable are unavailable.

Two implementations that must agree:

* :func:`offload_options_exact` (default): for fixed (s, α), eq. (10) separates into
  a CRB term and an RRB term, each of the form δ·W/(nK - λW) + ω·g·n, convex in n;
  the best integer n is the floor or ceiling of the continuous optimum clipped to the
  feasible range. O(S·A) per device.
* :func:`offload_options_exhaustive`: every (s, α, y, z) on the integer grid, the
  literal form of the problem and the oracle for the exact one. O(S·A·Y·Z).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from edgesplit.delays import device_utility, service_delay, service_rate, sojourn_time
from edgesplit.scenario import Scenario
from edgesplit.schemes import Options

IDLE = -1
"""``server`` of a device that does not offload, and ``split`` of an idle device."""


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Choice:
    """What each device does; leading axis M."""

    server: jax.Array  # int32, the server offloaded to, or IDLE
    split: jax.Array  # int32, α = layers run on the device (N_m: all local), or IDLE
    crbs: jax.Array  # int32, CRBs bought (0 unless offloading)
    rrbs: jax.Array  # int32, RRBs bought (0 unless offloading)
    utility: jax.Array  # eq. (10); 0 when idle
    delay: jax.Array  # T, seconds (eq. 6 when local, eq. 9 when offloading); NaN when idle


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class OffloadOptions:
    """The best purchase for every (device, server, split); shape (M, S, A) each."""

    utility: jax.Array  # -inf where no purchase is feasible
    crbs: jax.Array
    rrbs: jax.Array
    delay: jax.Array


def best_block_count(rate_per_block, arrival_rate, delay_weight, unit_price, max_blocks):
    """The integer n in [1, max_blocks] that minimises δ / (n·μ - λ) + ω g·n (eqs. 7, 8, 10).

    ``rate_per_block`` is μ of one block (eq. 3 or 5), ``unit_price`` is ω·g. Returns
    (n, sojourn time at n); n = 0 and an infinite sojourn time when no n in range is
    stable. The continuous optimum solves (nμ - λ)² = δμ / (ωg); the cost is convex in
    n on the stable range, so the integer optimum is the floor or the ceiling of it,
    clipped to the range.
    """
    # The smallest stable n is floor(λ/μ) + 1 in exact arithmetic; λ/μ may round across
    # an integer either way, so test the neighbours with the delay's own predicate.
    below = jnp.floor(arrival_rate / rate_per_block)
    smallest = jnp.where(
        (below >= 1) & (below * rate_per_block > arrival_rate),
        below,
        jnp.where((below + 1) * rate_per_block > arrival_rate, below + 1, below + 2),
    )
    smallest = jnp.maximum(smallest, 1.0)
    max_blocks = jnp.asarray(max_blocks, smallest.dtype)

    has_price = unit_price > 0
    spread = jnp.sqrt(delay_weight * rate_per_block / jnp.where(has_price, unit_price, 1.0))
    optimum = jnp.where(has_price, (arrival_rate + spread) / rate_per_block, jnp.inf)
    optimum = jnp.where(jnp.isinf(rate_per_block), 1.0, optimum)  # no work: buy the least

    def cost(n):
        sojourn = sojourn_time(n * rate_per_block, arrival_rate)
        return delay_weight * sojourn + unit_price * n, sojourn

    low = jnp.clip(jnp.floor(optimum), smallest, max_blocks)
    high = jnp.clip(jnp.ceil(optimum), smallest, max_blocks)
    cost_low, sojourn_low = cost(low)
    cost_high, sojourn_high = cost(high)
    take_high = cost_high < cost_low
    blocks = jnp.where(take_high, high, low)
    sojourn = jnp.where(take_high, sojourn_high, sojourn_low)

    feasible = (smallest <= max_blocks) & jnp.isfinite(sojourn)
    return jnp.where(feasible, blocks, 0.0).astype(jnp.int32), jnp.where(feasible, sojourn, jnp.inf)


def _offload_terms(scenario: Scenario, price_crb, price_rrb):
    """Broadcastable (M, S, A) pieces shared by both implementations."""
    devices, servers = scenario.devices, scenario.servers
    per_device = lambda x: x[:, None, None]  # noqa: E731
    per_server = lambda x: x[None, :, None]  # noqa: E731
    return dict(
        arrival_rate=per_device(devices.arrival_rate),
        delay_weight=per_device(devices.delay_weight),
        payment_weight=per_device(devices.payment_weight),
        reward=per_device(devices.reward),
        # μ of one CRB (eq. 3) and of one RRB (eq. 5) for each (device, server, split).
        crb_rate=service_rate(per_server(servers.crb_hz), devices.server_cycles[:, None, :]),
        rrb_rate=service_rate(scenario.rate_per_rrb[:, :, None], devices.sent_bits[:, None, :]),
        price_crb=per_server(price_crb),
        price_rrb=per_server(price_rrb),
        # The device's part (eqs. 2, 6) depends on the split only.
        device_delay=sojourn_time(
            service_rate(devices.cpu_hz[:, None], devices.device_cycles),
            devices.arrival_rate[:, None],
        )[:, None, :],
        result_delay=per_server(servers.result_delay),
    )


def offload_options_exact(scenario: Scenario, price_crb, price_rrb, crbs_left, rrbs_left):
    """Best (y, z) for every (device, server, split) in closed form.

    ``crbs_left``/``rrbs_left`` are what each server has for each device, (M, S) or (S,).
    """
    t = _offload_terms(scenario, price_crb, price_rrb)
    crbs_left = jnp.broadcast_to(crbs_left, scenario.rate_per_rrb.shape)[:, :, None]
    rrbs_left = jnp.broadcast_to(rrbs_left, scenario.rate_per_rrb.shape)[:, :, None]
    crbs, server_delay = best_block_count(
        t["crb_rate"], t["arrival_rate"], t["delay_weight"],
        t["payment_weight"] * t["price_crb"], crbs_left,
    )  # fmt: skip
    rrbs, radio_delay = best_block_count(
        t["rrb_rate"], t["arrival_rate"], t["delay_weight"],
        t["payment_weight"] * t["price_rrb"], rrbs_left,
    )  # fmt: skip
    delay = service_delay(t["device_delay"], radio_delay, server_delay, t["result_delay"])
    payment = crbs * t["price_crb"] + rrbs * t["price_rrb"]
    utility = device_utility(
        t["reward"], t["delay_weight"], t["payment_weight"], t["arrival_rate"], delay, payment
    )
    feasible = jnp.isfinite(delay)
    return OffloadOptions(
        utility=jnp.where(feasible, utility, -jnp.inf),
        crbs=jnp.where(feasible, crbs, 0),
        rrbs=jnp.where(feasible, rrbs, 0),
        delay=delay,
    )


def offload_options_exhaustive(
    scenario: Scenario, price_crb, price_rrb, crbs_left, rrbs_left, crb_grid: int, rrb_grid: int
):
    """Best (y, z) for every (device, server, split) by evaluating every y <= crb_grid
    and z <= rrb_grid (static grid sizes, at least the largest server capacity)."""
    t = {k: v[..., None, None] for k, v in _offload_terms(scenario, price_crb, price_rrb).items()}
    dtype = t["crb_rate"].dtype
    crbs = jnp.arange(1, crb_grid + 1, dtype=dtype)[:, None]  # (Y, 1)
    rrbs = jnp.arange(1, rrb_grid + 1, dtype=dtype)[None, :]  # (1, Z)
    server_delay = sojourn_time(crbs * t["crb_rate"], t["arrival_rate"])  # eq. (8)
    radio_delay = sojourn_time(rrbs * t["rrb_rate"], t["arrival_rate"])  # eq. (7)
    delay = service_delay(t["device_delay"], radio_delay, server_delay, t["result_delay"])
    payment = crbs * t["price_crb"] + rrbs * t["price_rrb"]
    utility = device_utility(
        t["reward"], t["delay_weight"], t["payment_weight"], t["arrival_rate"], delay, payment
    )  # (M, S, A, Y, Z)
    shape = scenario.rate_per_rrb.shape
    crbs_left = jnp.broadcast_to(crbs_left, shape)[:, :, None, None, None]
    rrbs_left = jnp.broadcast_to(rrbs_left, shape)[:, :, None, None, None]
    feasible = (crbs <= crbs_left) & (rrbs <= rrbs_left) & jnp.isfinite(delay)
    utility = jnp.where(feasible, utility, -jnp.inf)

    flat = utility.reshape(*utility.shape[:3], -1)
    best = jnp.argmax(flat, axis=-1)  # first maximum: fewest CRBs, then fewest RRBs
    best_utility = jnp.max(flat, axis=-1)
    found = best_utility > -jnp.inf
    best_delay = jnp.take_along_axis(
        jnp.broadcast_to(delay, utility.shape).reshape(flat.shape), best[..., None], axis=-1
    )[..., 0]
    return OffloadOptions(
        utility=best_utility,
        crbs=jnp.where(found, best // rrb_grid + 1, 0).astype(jnp.int32),
        rrbs=jnp.where(found, best % rrb_grid + 1, 0).astype(jnp.int32),
        delay=jnp.where(found, best_delay, jnp.inf),
    )


def choice_utility(scenario: Scenario, choice: Choice, price_crb, price_rrb):
    """Eq. (10) recomputed from what each device does, at these prices; 0 when idle."""
    devices = scenario.devices
    offloads = choice.server != IDLE
    server = jnp.where(offloads, choice.server, 0)
    payment = jnp.where(
        offloads, choice.crbs * price_crb[server] + choice.rrbs * price_rrb[server], 0.0
    )
    utility = device_utility(
        devices.reward, devices.delay_weight, devices.payment_weight, devices.arrival_rate,
        choice.delay, payment,
    )  # fmt: skip
    return jnp.where(choice.split == IDLE, 0.0, utility)


def local_option(scenario: Scenario, options: Options):
    """(utility, delay) of running every layer on the device (eqs. 2, 6, 10), (M,) each;
    utility -inf where the scheme forbids it or the queue is unstable."""
    devices = scenario.devices
    cycles = jnp.take_along_axis(devices.device_cycles, devices.num_layers[:, None], axis=1)[:, 0]
    delay = sojourn_time(service_rate(devices.cpu_hz, cycles), devices.arrival_rate)
    utility = device_utility(
        devices.reward, devices.delay_weight, devices.payment_weight, devices.arrival_rate,
        delay, 0.0,
    )  # fmt: skip
    return jnp.where(options.local & jnp.isfinite(delay), utility, -jnp.inf), delay


def choose(scenario: Scenario, options: Options, offload: OffloadOptions) -> Choice:
    """Each device's best option: the best allowed offload, all-local, or idle (eq. 12).

    Offloading is chosen only when it beats both the local option (ties go local) and
    idling (utility 0)."""
    devices = scenario.devices
    num_splits = offload.utility.shape[2]
    local_utility, local_delay = local_option(scenario, options)

    offload_utility = jnp.where(options.offload, offload.utility, -jnp.inf)
    flat = offload_utility.reshape(offload_utility.shape[0], -1)
    best = jnp.argmax(flat, axis=1)
    best_offload = jnp.max(flat, axis=1)
    pick = lambda x: jnp.take_along_axis(x.reshape(flat.shape), best[:, None], axis=1)[:, 0]  # noqa: E731

    goes_local = local_utility >= best_offload  # ties go local: it uses no server
    utility = jnp.maximum(local_utility, best_offload)
    idle = ~(utility > 0)  # no option with positive utility: process nothing
    offloads = ~goes_local & ~idle
    return Choice(
        server=jnp.where(offloads, best // num_splits, IDLE).astype(jnp.int32),
        split=jnp.where(
            idle, IDLE, jnp.where(goes_local, devices.num_layers, best % num_splits)
        ).astype(jnp.int32),
        crbs=jnp.where(offloads, pick(offload.crbs), 0).astype(jnp.int32),
        rrbs=jnp.where(offloads, pick(offload.rrbs), 0).astype(jnp.int32),
        utility=jnp.where(idle, 0.0, utility),
        delay=jnp.where(idle, jnp.nan, jnp.where(goes_local, local_delay, pick(offload.delay))),
    )
