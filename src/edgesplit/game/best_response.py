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

import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp

from edgesplit.config import GameSettings
from edgesplit.model.delays import device_utility, service_delay, service_rate, sojourn_time
from edgesplit.model.scenario import Scenario
from edgesplit.model.schemes import Options

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


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class BlockTerms:
    """What the best count of one kind of block needs that no price changes; arrays
    broadcastable to (M, S, A). Computed once per market, shared by its admission
    passes and by every price tried in a round."""

    rate: jax.Array  # μ of one block (eq. 3 or 5), tasks/s
    arrival_rate: jax.Array  # λ
    smallest: jax.Array  # the fewest blocks whose queue is stable (n·μ > λ), >= 1
    load: jax.Array  # λ/μ
    root_weight_per_rate: jax.Array  # sqrt(δ/μ)
    weight_rate: jax.Array  # δ·μ


def block_terms(rate_per_block, arrival_rate, delay_weight) -> BlockTerms:
    """The price-free part of :func:`best_block_count` for blocks of rate μ each."""
    # The smallest stable n is floor(λ/μ) + 1 in exact arithmetic; λ/μ may round across
    # an integer either way, so test the neighbours with the delay's own predicate.
    load = arrival_rate / rate_per_block
    below = jnp.floor(load)
    smallest = jnp.where(
        (below >= 1) & (below * rate_per_block > arrival_rate),
        below,
        jnp.where((below + 1) * rate_per_block > arrival_rate, below + 1, below + 2),
    )
    return BlockTerms(
        rate=rate_per_block,
        arrival_rate=arrival_rate,
        smallest=jnp.maximum(smallest, 1.0),
        load=load,
        root_weight_per_rate=jnp.sqrt(delay_weight / rate_per_block),
        weight_rate=delay_weight * rate_per_block,
    )


def best_block_count(terms: BlockTerms, unit_price, max_blocks):
    """The integer n in [1, max_blocks] that minimises δ / (n·μ - λ) + ω g·n (eqs. 7, 8, 10).

    ``unit_price`` is ω·g. Returns (n, sojourn time at n); n = 0 and an infinite
    sojourn time when no n in range is stable. The continuous optimum solves
    (nμ - λ)² = δμ / (ωg), n* = λ/μ + sqrt(δ/(μ ωg)); the cost is convex in n on the
    stable range, so the integer optimum is the floor or the ceiling of n*, clipped to
    the range. A queue with no work (μ = ∞) has n* = 0 and buys the least, one block.
    """
    max_blocks = jnp.asarray(max_blocks, terms.smallest.dtype)
    has_price = unit_price > 0
    # sqrt(δ/μ) is price-free; the price's root is taken once per (device, server).
    # Rounding may move n* across an integer k only when n* is within an ulp of k, and
    # then k is among the floor and ceiling either way and wins the comparison below.
    optimum = jnp.where(
        has_price,
        terms.load + terms.root_weight_per_rate / jnp.sqrt(jnp.where(has_price, unit_price, 1.0)),
        jnp.inf,
    )
    low = jnp.clip(jnp.floor(optimum), terms.smallest, max_blocks)
    high = jnp.clip(jnp.ceil(optimum), terms.smallest, max_blocks)
    # high is low or low + 1, both stable; then cost(high) < cost(low) exactly when
    # δμ > ωg (high·μ - λ)(low·μ - λ), which needs no division.
    rate, arrival_rate = terms.rate, terms.arrival_rate
    take_high = (high > low) & (
        terms.weight_rate > unit_price * (high * rate - arrival_rate) * (low * rate - arrival_rate)
    )
    blocks = jnp.where(take_high, high, low)
    sojourn = sojourn_time(blocks * rate, arrival_rate)
    feasible = (terms.smallest <= max_blocks) & jnp.isfinite(sojourn)
    return jnp.where(feasible, blocks, 0.0).astype(jnp.int32), jnp.where(feasible, sojourn, jnp.inf)


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class OffloadTerms:
    """The price-free part of every offload option, broadcastable to (M, S, A)."""

    crb: BlockTerms  # one CRB of server s for the layers after α (eq. 3)
    rrb: BlockTerms  # one RRB from device m to server s for layer α's output (eq. 5)
    device_delay: jax.Array  # sojourn time of layers 1..α on the device (eqs. 2, 6)


def offload_terms(scenario: Scenario) -> OffloadTerms:
    """What every offload option needs that the prices do not change."""
    devices, servers = scenario.devices, scenario.servers
    arrival_rate = devices.arrival_rate[:, None, None]
    delay_weight = devices.delay_weight[:, None, None]
    return OffloadTerms(
        crb=block_terms(
            service_rate(servers.crb_hz[None, :, None], devices.server_cycles[:, None, :]),
            arrival_rate,
            delay_weight,
        ),
        rrb=block_terms(
            service_rate(scenario.rate_per_rrb[:, :, None], devices.sent_bits[:, None, :]),
            arrival_rate,
            delay_weight,
        ),
        device_delay=sojourn_time(
            service_rate(devices.cpu_hz[:, None], devices.device_cycles),
            devices.arrival_rate[:, None],
        )[:, None, :],
    )


def _options(scenario: Scenario, device_delay, server_delay, radio_delay, payment):
    """Eqs. (9), (10) for the purchases of every (device, server, split[, y, z]): their
    utility (-inf where a queue is unstable) and delay."""
    devices = scenario.devices
    extra = (1,) * (jnp.ndim(server_delay) - 3)  # the exhaustive kernel's (y, z) axes
    per_device = lambda x: x.reshape((*x.shape, 1, 1, *extra))  # noqa: E731
    result_delay = scenario.servers.result_delay.reshape((1, -1, 1, *extra))
    delay = service_delay(
        device_delay.reshape((*device_delay.shape, *extra)), radio_delay, server_delay, result_delay
    )
    utility = device_utility(
        per_device(devices.reward), per_device(devices.delay_weight),
        per_device(devices.payment_weight), per_device(devices.arrival_rate), delay, payment,
    )  # fmt: skip
    return jnp.where(jnp.isfinite(delay), utility, -jnp.inf), delay


def offload_options_exact(
    scenario: Scenario,
    price_crb,
    price_rrb,
    crbs_left,
    rrbs_left,
    terms: OffloadTerms | None = None,
):
    """Best (y, z) for every (device, server, split) in closed form.

    ``crbs_left``/``rrbs_left`` are what each server has for each device, (M, S) or (S,);
    ``terms`` (default: computed here) is :func:`offload_terms` of the scenario.
    """
    terms = offload_terms(scenario) if terms is None else terms
    shape = scenario.rate_per_rrb.shape
    weight = scenario.devices.payment_weight[:, None, None]
    price_crb, price_rrb = price_crb[None, :, None], price_rrb[None, :, None]
    crbs, server_delay = best_block_count(
        terms.crb, weight * price_crb, jnp.broadcast_to(crbs_left, shape)[:, :, None]
    )
    rrbs, radio_delay = best_block_count(
        terms.rrb, weight * price_rrb, jnp.broadcast_to(rrbs_left, shape)[:, :, None]
    )
    utility, delay = _options(
        scenario, terms.device_delay, server_delay, radio_delay, crbs * price_crb + rrbs * price_rrb
    )
    feasible = utility > -jnp.inf
    return OffloadOptions(
        utility=utility,
        crbs=jnp.where(feasible, crbs, 0),
        rrbs=jnp.where(feasible, rrbs, 0),
        delay=delay,
    )


def offload_options_exhaustive(
    scenario: Scenario,
    price_crb,
    price_rrb,
    crbs_left,
    rrbs_left,
    crb_grid: int,
    rrb_grid: int,
    terms: OffloadTerms | None = None,
):
    """Best (y, z) for every (device, server, split) by evaluating every y <= crb_grid
    and z <= rrb_grid (static grid sizes, at least the largest server capacity)."""
    terms = offload_terms(scenario) if terms is None else terms
    grid = lambda x: x[..., None, None]  # noqa: E731
    dtype = terms.crb.rate.dtype
    crbs = jnp.arange(1, crb_grid + 1, dtype=dtype)[:, None]  # (Y, 1)
    rrbs = jnp.arange(1, rrb_grid + 1, dtype=dtype)[None, :]  # (1, Z)
    # eqs. (8), (7)
    server_delay = sojourn_time(crbs * grid(terms.crb.rate), grid(terms.crb.arrival_rate))
    radio_delay = sojourn_time(rrbs * grid(terms.rrb.rate), grid(terms.rrb.arrival_rate))
    payment = crbs * grid(price_crb[None, :, None]) + rrbs * grid(price_rrb[None, :, None])
    utility, delay = _options(
        scenario, terms.device_delay, server_delay, radio_delay, payment
    )  # (M, S, A, Y, Z)
    shape = scenario.rate_per_rrb.shape
    crbs_left = jnp.broadcast_to(crbs_left, shape)[:, :, None, None, None]
    rrbs_left = jnp.broadcast_to(rrbs_left, shape)[:, :, None, None, None]
    utility = jnp.where((crbs <= crbs_left) & (rrbs <= rrbs_left), utility, -jnp.inf)

    flat = utility.reshape(*utility.shape[:3], -1)
    best, best_utility = first_maximum(flat)  # fewest CRBs, then fewest RRBs
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


def offload_options(settings: GameSettings):
    """The offload-option kernel ``settings.best_response`` names: ``exact``, or
    ``exhaustive`` on the settings' grids."""
    kernels = {
        "exact": offload_options_exact,
        "exhaustive": partial(
            offload_options_exhaustive, crb_grid=settings.crb_grid, rrb_grid=settings.rrb_grid
        ),
    }
    return kernels[settings.best_response]


def first_maximum(values, axes: int = 1):
    """(index, value) of the first maximum over the last ``axes`` axes, the index into
    their flattened (row-major) order, where values within 1e-12 (relative) of the
    maximum count as maximal; as ``jnp.argmax`` and ``jnp.max`` of the flattened axes
    for values without NaN or near-ties.

    XLA:CPU runs argmax's (value, index) reduction an element at a time, and fuses the
    whole best-response kernel into that scalar loop; a max and a min over the indices
    that hold it both vectorise, as long as no reshape sits between the kernel and the
    reductions (flattening the axes first makes XLA recompute every element's indices
    in the fused loop, four times slower). XLA also recomputes the values inside each
    of the two reductions, with rounding that can differ by an ulp (a fused
    multiply-add in one of them), so the index cannot ask for exact equality with the
    maximum: it takes the first value within 1e-12 of it, a gap far below any
    difference in utility that matters and far above the rounding of one
    recomputation.
    """
    reduced = tuple(range(values.ndim - axes, values.ndim))
    shape = values.shape[values.ndim - axes :]
    count = math.prod(shape)
    best = jnp.max(values, axis=reduced, keepdims=True)
    slack = 1e-12 * jnp.maximum(jnp.abs(best), 1.0)
    positions = jnp.arange(count, dtype=jnp.int32).reshape(shape)
    index = jnp.min(jnp.where(values >= best - slack, positions, count - 1), axis=reduced)
    return index, jnp.squeeze(best, reduced)


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
    num_splits = offload.utility.shape[2]
    offload_utility = jnp.where(options.offload, offload.utility, -jnp.inf)
    best, best_offload = first_maximum(offload_utility, axes=2)
    server, split = best // num_splits, best % num_splits
    pick = lambda x: x[jnp.arange(x.shape[0]), server, split]  # noqa: E731
    return _settle(
        scenario, options, best_offload, server, split,
        pick(offload.crbs), pick(offload.rrbs), pick(offload.delay),
    )  # fmt: skip


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class ServerOffers:
    """Each device's best allowed purchase from each server, over the splits; (M, S) each."""

    utility: jax.Array  # -inf where none is feasible or allowed
    split: jax.Array
    crbs: jax.Array
    rrbs: jax.Array
    delay: jax.Array


def best_splits(options: Options, offload: OffloadOptions) -> ServerOffers:
    """The best allowed split of every (device, server)."""
    split, utility = first_maximum(jnp.where(options.offload, offload.utility, -jnp.inf))
    pick = lambda x: jnp.take_along_axis(x, split[..., None], axis=2)[..., 0]  # noqa: E731
    return ServerOffers(utility, split, pick(offload.crbs), pick(offload.rrbs), pick(offload.delay))


def choose_offer(scenario: Scenario, options: Options, offers: ServerOffers) -> Choice:
    """:func:`choose` from each server's best offer: the same choice but where two offers
    are within 1e-12 (relative) of each other, which the two may settle apart."""
    server, best_offload = first_maximum(offers.utility)
    pick = lambda x: x[jnp.arange(x.shape[0]), server]  # noqa: E731
    return _settle(
        scenario, options, best_offload, server, pick(offers.split),
        pick(offers.crbs), pick(offers.rrbs), pick(offers.delay),
    )  # fmt: skip


def _settle(scenario, options, best_offload, server, split, crbs, rrbs, delay) -> Choice:
    """The choice between the best offload (its utility, server, split, purchase and
    delay, (M,) each), all-local (ties go local: it uses no server) and idle."""
    devices = scenario.devices
    local_utility, local_delay = local_option(scenario, options)
    goes_local = local_utility >= best_offload
    utility = jnp.maximum(local_utility, best_offload)
    idle = ~(utility > 0)  # no option with positive utility: process nothing
    offloads = ~goes_local & ~idle
    return Choice(
        server=jnp.where(offloads, server, IDLE).astype(jnp.int32),
        split=jnp.where(idle, IDLE, jnp.where(goes_local, devices.num_layers, split)).astype(
            jnp.int32
        ),
        crbs=jnp.where(offloads, crbs, 0).astype(jnp.int32),
        rrbs=jnp.where(offloads, rrbs, 0).astype(jnp.int32),
        utility=jnp.where(idle, 0.0, utility),
        delay=jnp.where(idle, jnp.nan, jnp.where(goes_local, local_delay, delay)),
    )
