"""A NumPy implementation of the game, the comparison baseline for the engine benchmark.

    python scripts/numpy_baseline.py [--timed 5]

times it on Fig. 3 solves; ``pytest tests/test_numpy_baseline.py`` checks its answers.

This is not used by the engine. It is the program one would write from the paper in
the style of public MEC game codes: NumPy vectorised across the mobile devices (MDs)
of one scenario, plain Python loops over servers, admission passes, price moves and
rounds, one scenario at a time. It plays Algorithm 1 round by round from the maximum
prices (no fast-forward over the opening rounds) and gives the same answers as the
plain-Python reference ``edgesplit.reference`` (the specification of the semantics)
and as the JAX engine, which is what ``tests/test_numpy_baseline.py`` verifies.

It reads a scenario in the JSON file form (the dicts and lists ``edgesplit.reference``
reads). The best response is the engine's default "exact" one: for a fixed server s
and split α, eq. (10) separates into a CRB term and an RRB term, each convex in its
block count, so the best integer counts are the floor or the ceiling of the
continuous optimum (:func:`best_block_count`).
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections import deque

import numpy as np

PROPOSED, EDGE_ONLY, HEURISTIC, USER_ONLY = 0, 1, 2, 3
CONVERGED, CYCLE, ROUND_LIMIT = 0, 1, 2
IDLE = -1  # ``server`` of a device that does not offload, ``split`` of an idle device
PRICE_TOLERANCE = 1e-9  # relative to max_price: grid prices are max_price - k·Δ in floating point
JOINT_MOVES = ((-1, -1), (1, 1))  # (CRB, RRB) steps below the maximum: -1 raises a price by Δ
SEPARATE_MOVES = ((-1, 0), (0, -1), (1, 0), (0, 1))


def service_rate(capacity, work):
    """μ = capacity / work, eqs. (2), (3), (5); ∞ where there is no work."""
    has_work = work > 0
    return np.where(has_work, capacity / np.where(has_work, work, 1.0), np.inf)


def sojourn_time(rate, arrival_rate):
    """Mean M/M/1 sojourn time 1 / (μ - λ), eqs. (6)-(8); ∞ when μ <= λ (unstable)."""
    stable = rate > arrival_rate
    return np.where(stable, 1.0 / np.where(stable, rate - arrival_rate, 1.0), np.inf)


def smallest_stable_count(rate, arrival_rate):
    """The smallest integer n >= 1 with n·μ > λ (as a float): floor(λ/μ) + 1 in exact
    arithmetic, λ/μ may round across an integer, so the neighbours are tested."""
    below = np.floor(arrival_rate / rate)
    smallest = np.where(
        (below >= 1) & (below * rate > arrival_rate),
        below,
        np.where((below + 1) * rate > arrival_rate, below + 1, below + 2),
    )
    return np.maximum(smallest, 1.0)


def prepare(problem: dict) -> dict:
    """The scenario as NumPy arrays, once per scenario.

    Split tables are (M, A) with A = max N_m + 1, padded past N_m by repeating the
    all-local entry; ``offload_split`` masks the splits a device may offload after
    (α < N_m). The price-independent parts of eqs. (2)-(8) are computed here: the
    service rates of one CRB and one RRB (M, S, A), the device's sojourn time (M, A)
    and the fewest blocks that keep each queue stable.
    """
    devices, servers = problem["devices"], problem["servers"]
    tables = []
    for device in devices:
        model = problem["models"][device["model"]]
        cycles = [layer["cycles"] for layer in model["layers"]]
        bits = [model["input_bits"]] + [layer["output_bits"] for layer in model["layers"]]
        splits = range(len(cycles) + 1)
        tables.append(
            (
                [math.fsum(cycles[:split]) for split in splits],  # layers 1..α, eq. (2)
                [math.fsum(cycles[split:]) for split in splits],  # layers α+1..N, eq. (3)
                bits,  # V_α, eq. (5)
            )
        )
    width = max(len(table[0]) for table in tables)

    def padded(column):
        rows = [
            np.pad(table[column], (0, width - len(table[column])), mode="edge") for table in tables
        ]
        return np.array(rows, dtype=float)

    def per_device(key):
        return np.array([device[key] for device in devices], dtype=float)

    def per_server(key, dtype=float):
        return np.array([server[key] for server in servers], dtype=dtype)

    a = {
        "device_cycles": padded(0),
        "server_cycles": padded(1),
        "sent_bits": padded(2),
        "num_layers": np.array([len(table[0]) - 1 for table in tables]),
        "arrival_rate": per_device("arrival_rate"),
        "reward": per_device("reward"),
        "delay_weight": per_device("delay_weight"),
        "payment_weight": per_device("payment_weight"),
        "cpu_hz": per_device("cpu_hz"),
        "crb_hz": per_server("crb_hz"),
        "crbs": per_server("crbs", int),
        "rrbs": per_server("rrbs", int),
        "cost_crb": per_server("cost_crb"),
        "cost_rrb": per_server("cost_rrb"),
        "max_price": per_server("max_price"),
        "price_step": per_server("price_step"),
        "result_delay": per_server("result_delay"),
        "rate_per_rrb": np.array(problem["rate_per_rrb"], dtype=float),
    }
    a["offload_split"] = np.arange(width)[None, :] < a["num_layers"][:, None]
    a["top_step"] = np.ceil(a["max_price"] / a["price_step"]).astype(int)
    lam = a["arrival_rate"]
    with np.errstate(invalid="ignore"):  # 0·∞ in branches that are not taken
        a["device_delay"] = sojourn_time(
            service_rate(a["cpu_hz"][:, None], a["device_cycles"]), lam[:, None]
        )  # eqs. (2), (6)
        a["crb_rate"] = service_rate(
            a["crb_hz"][None, :, None], a["server_cycles"][:, None, :]
        )  # eq. (3)
        a["rrb_rate"] = service_rate(
            a["rate_per_rrb"][:, :, None], a["sent_bits"][:, None, :]
        )  # eq. (5)
        a["fewest_crbs"] = smallest_stable_count(a["crb_rate"], lam[:, None, None])
        a["fewest_rrbs"] = smallest_stable_count(a["rrb_rate"], lam[:, None, None])
    local_delay = a["device_delay"][np.arange(len(devices)), a["num_layers"]]
    with np.errstate(invalid="ignore"):  # 0·∞ where the local queue is unstable
        local = device_utility(
            a["reward"], a["delay_weight"], a["payment_weight"], lam, local_delay, 0.0
        )
    a["local_utility"] = np.where(np.isfinite(local_delay), local, -np.inf)
    return a


def device_utility(reward, delay_weight, payment_weight, arrival_rate, delay, payment):
    """Utility of a mobile device, eq. (10): γλ - δT - ω (y g^(c) + z g^(r))."""
    return reward * arrival_rate - delay_weight * delay - payment_weight * payment


def best_block_count(rate, arrival_rate, delay_weight, unit_price, fewest, left):
    """The integer n in [1, left] minimising δ / (n·μ - λ) + ω g·n (eqs. 7, 8, 10).

    ``rate`` is μ of one block, ``unit_price`` is ω g, ``fewest`` the smallest stable n.
    The continuous optimum is n* = (λ + sqrt(δμ / (ωg))) / μ and the cost is convex in n
    on the stable range, so the integer optimum is floor(n*) or ceil(n*) clipped to
    [fewest, left] (ties to the floor). With g = 0 more blocks always help (n* = ∞); a
    queue with no work (μ = ∞) takes one block. Returns (n, sojourn time at n), n = 0
    and sojourn ∞ where no n is stable.
    """
    has_price = unit_price > 0
    spread = np.sqrt(delay_weight * rate / np.where(has_price, unit_price, 1.0))
    optimum = np.where(has_price, (arrival_rate + spread) / rate, np.inf)
    optimum = np.where(np.isinf(rate), 1.0, optimum)

    def cost(n):
        sojourn = sojourn_time(n * rate, arrival_rate)
        return delay_weight * sojourn + unit_price * n, sojourn

    low = np.clip(np.floor(optimum), fewest, left)
    high = np.clip(np.ceil(optimum), fewest, left)
    cost_low, sojourn_low = cost(low)
    cost_high, sojourn_high = cost(high)
    take_high = cost_high < cost_low
    blocks = np.where(take_high, high, low)
    sojourn = np.where(take_high, sojourn_high, sojourn_low)
    feasible = (fewest <= left) & np.isfinite(sojourn)
    return np.where(feasible, blocks, 0.0), np.where(feasible, sojourn, np.inf)


def allowed_offloads(a: dict, scheme: int, rows) -> np.ndarray:
    """(R, S, A) the (server, split) pairs ``scheme`` lets the devices ``rows`` offload to:
    every server (PROPOSED, EDGE_ONLY), the one with the highest rate per RRB (HEURISTIC,
    the first among equals), none (USER_ONLY); split 0 only under EDGE_ONLY."""
    rates = a["rate_per_rrb"][rows]
    servers = np.ones(rates.shape, dtype=bool)
    if scheme == USER_ONLY:
        servers[:] = False
    elif scheme == HEURISTIC:
        servers = np.arange(rates.shape[1])[None, :] == np.argmax(rates, axis=1)[:, None]
    splits = a["offload_split"][rows]
    if scheme == EDGE_ONLY:
        splits = splits & (np.arange(splits.shape[1]) == 0)
    return servers[:, :, None] & splits[:, None, :]


def best_responses(a: dict, price_crb, price_rrb, crbs_left, rrbs_left, scheme, pending_mask):
    """Eq. (12): each pending device's best option against what the servers have left.

    Vectorised over (pending device, server, split): the best (y, z) for each in closed
    form, then the best offload (first maximum in server-major, split-minor order),
    compared with running every layer locally (ties go local; not under EDGE_ONLY) and
    with idling (utility 0: a device offloads or runs locally only at positive utility).
    Returns a dict of (M,) arrays server, split, crbs, rrbs, utility; devices not
    pending come back idle.
    """
    rows = np.flatnonzero(pending_mask)
    price_crb, price_rrb = np.asarray(price_crb, float), np.asarray(price_rrb, float)
    reward = a["reward"][rows, None, None]
    lam = a["arrival_rate"][rows, None, None]
    delta = a["delay_weight"][rows, None, None]
    omega = a["payment_weight"][rows, None, None]
    left_crbs = np.asarray(crbs_left, dtype=float)[None, :, None]
    left_rrbs = np.asarray(rrbs_left, dtype=float)[None, :, None]
    with np.errstate(invalid="ignore", divide="ignore"):  # ∞/∞ and 0·∞ in unused branches
        crbs, server_delay = best_block_count(
            a["crb_rate"][rows], lam, delta, omega * price_crb[None, :, None],
            a["fewest_crbs"][rows], left_crbs,
        )  # fmt: skip
        rrbs, radio_delay = best_block_count(
            a["rrb_rate"][rows], lam, delta, omega * price_rrb[None, :, None],
            a["fewest_rrbs"][rows], left_rrbs,
        )  # fmt: skip
    device_delay = a["device_delay"][rows, None, :]
    delay = device_delay + radio_delay + server_delay + a["result_delay"][None, :, None]  # eq. (9)
    payment = crbs * price_crb[None, :, None] + rrbs * price_rrb[None, :, None]
    utility = device_utility(reward, delta, omega, lam, delay, payment)
    allowed = allowed_offloads(a, scheme, rows) & np.isfinite(delay)
    utility = np.where(allowed, utility, -np.inf).reshape(len(rows), -1)
    best = np.argmax(utility, axis=1)
    pick = (np.arange(len(rows)), best)
    best_offload = utility[pick]

    local = a["local_utility"][rows] if scheme != EDGE_ONLY else np.full(len(rows), -np.inf)
    goes_local = local >= best_offload
    chosen = np.maximum(local, best_offload)
    idle = ~(chosen > 0)
    offloads = ~goes_local & ~idle
    num_splits = a["device_cycles"].shape[1]

    picks = idle_picks(len(a["arrival_rate"]))
    picks["server"][rows] = np.where(offloads, best // num_splits, IDLE)
    picks["split"][rows] = np.where(
        idle, IDLE, np.where(goes_local, a["num_layers"][rows], best % num_splits)
    )
    picks["crbs"][rows] = np.where(offloads, crbs.reshape(utility.shape)[pick], 0)
    picks["rrbs"][rows] = np.where(offloads, rrbs.reshape(utility.shape)[pick], 0)
    picks["utility"][rows] = np.where(idle, 0.0, chosen)
    return picks


def idle_picks(num_devices: int) -> dict:
    """Every device idle."""
    return {
        "server": np.full(num_devices, IDLE),
        "split": np.full(num_devices, IDLE),
        "crbs": np.zeros(num_devices, dtype=int),
        "rrbs": np.zeros(num_devices, dtype=int),
        "utility": np.zeros(num_devices),
    }


def market(a: dict, price_crb, price_rrb, scheme) -> dict:
    """Best responses with admission: every pending device best-responds to what is left;
    each server ranks its requesters by profit (its term of eq. 11), highest first, ties
    to the lower device index, and admits the longest prefix that fits both its CRBs and
    its RRBs; admitted devices and those not offloading settle; the rest go again."""
    num_devices = len(a["arrival_rate"])
    price_crb, price_rrb = np.asarray(price_crb, float), np.asarray(price_rrb, float)
    crbs_left, rrbs_left = a["crbs"].copy(), a["rrbs"].copy()
    picks = idle_picks(num_devices)
    pending = np.ones(num_devices, dtype=bool)
    while pending.any():
        request = best_responses(a, price_crb, price_rrb, crbs_left, rrbs_left, scheme, pending)
        settles = pending & (request["server"] == IDLE)
        for s in range(len(crbs_left)):
            asking = np.flatnonzero(pending & (request["server"] == s))
            if not len(asking):
                continue
            crbs, rrbs = request["crbs"][asking], request["rrbs"][asking]
            profit = crbs * (price_crb[s] - a["cost_crb"][s]) + rrbs * (
                price_rrb[s] - a["cost_rrb"][s]
            )
            order = np.argsort(-profit, kind="stable")
            fits = (np.cumsum(crbs[order]) <= crbs_left[s]) & (
                np.cumsum(rrbs[order]) <= rrbs_left[s]
            )  # running totals only grow: "fits" holds for a prefix
            admitted = order[fits]
            settles[asking[admitted]] = True
            crbs_left[s] -= crbs[admitted].sum()
            rrbs_left[s] -= rrbs[admitted].sum()
        for key, value in picks.items():
            value[settles] = request[key][settles]
        pending &= ~settles
    return picks


def server_sales(a: dict, picks: dict, price_crb, price_rrb):
    """Eq. (11) for every server, and the CRBs and RRBs it sold, (S,) each."""
    buys = picks["server"][:, None] == np.arange(len(a["crbs"]))[None, :]
    crbs_sold = np.where(buys, picks["crbs"][:, None], 0).sum(axis=0)
    rrbs_sold = np.where(buys, picks["rrbs"][:, None], 0).sum(axis=0)
    utility = crbs_sold * (price_crb - a["cost_crb"]) + rrbs_sold * (price_rrb - a["cost_rrb"])
    return utility, crbs_sold, rrbs_sold


def prices_at(a: dict, steps):
    """Prices (CRB, RRB) ``steps`` (S, 2) steps Δ below the maximum, clipped to [0, max]."""
    top = a["max_price"][:, None]
    prices = np.minimum(np.maximum(top - steps * a["price_step"][:, None], 0.0), top)
    return prices[:, 0], prices[:, 1]


def sales_at(a: dict, steps, scheme):
    """(utility, crbs sold, rrbs sold) of every server with prices at ``steps``."""
    price_crb, price_rrb = prices_at(a, steps)
    return server_sales(a, market(a, price_crb, price_rrb, scheme), price_crb, price_rrb)


def decide(a: dict, steps, s, scheme, joint, min_gain, current, sold_nothing):
    """Server s's next steps (2,): the first move (up before down) that raises its utility
    by more than ``min_gain``; else, if it sold nothing, one step down but not below
    cost; else where it is."""
    top = a["top_step"][s]
    for move in JOINT_MOVES if joint else SEPARATE_MOVES:
        tentative = steps.copy()
        tentative[s] = np.clip(steps[s] + move, 0, top)
        if sales_at(a, tentative, scheme)[0][s] - current > min_gain:
            return tentative[s]
    tentative = steps.copy()
    tentative[s] = steps[s] + 1
    price_crb, price_rrb = prices_at(a, tentative)
    slack = PRICE_TOLERANCE * a["max_price"][s]
    if (
        sold_nothing
        and price_crb[s] >= a["cost_crb"][s] - slack
        and price_rrb[s] >= a["cost_rrb"][s] - slack
        and tentative[s].max() <= top
    ):
        return tentative[s]
    return steps[s]


def play(
    problem: dict,
    scheme: int,
    update: str = "simultaneous",
    joint: bool = True,
    max_rounds: int = 2000,
    min_gain: float = 1e-4,
    window: int = 8,
):
    """Algorithm 1 from the maximum prices, round by round.

    Returns (steps, rounds, status): steps a list of [k_crb, k_rrb] per server (prices
    k steps Δ below the maximum), status 0 converged (a round changed no price), 1 cycle
    (prices came back to one of the last ``window`` states or to the checkpoint taken
    after every power-of-two round), 2 round limit.
    """
    a = prepare(problem)
    num_servers = len(a["crbs"])
    steps = np.zeros((num_servers, 2), dtype=int)
    if scheme == USER_ONLY:
        return steps.tolist(), 0, CONVERGED
    recent = deque(maxlen=window)
    checkpoint = None
    rounds = 0
    while True:
        if update == "simultaneous":
            current, crbs, rrbs = sales_at(a, steps, scheme)
            sold_nothing = (crbs == 0) & (rrbs == 0)
            new = np.array(
                [
                    decide(a, steps, s, scheme, joint, min_gain, current[s], sold_nothing[s])
                    for s in range(num_servers)
                ]
            )
        else:
            new = steps.copy()
            for s in range(num_servers):
                current, crbs, rrbs = sales_at(a, new, scheme)
                sold_nothing = crbs[s] == 0 and rrbs[s] == 0
                new[s] = decide(a, new, s, scheme, joint, min_gain, current[s], sold_nothing)
        rounds += 1
        if np.array_equal(new, steps):
            return new.tolist(), rounds, CONVERGED
        if any(np.array_equal(new, old) for old in recent) or (
            checkpoint is not None and np.array_equal(new, checkpoint)
        ):
            return new.tolist(), rounds, CYCLE
        if rounds >= max_rounds:
            return new.tolist(), rounds, ROUND_LIMIT
        recent.appendleft(steps)
        if rounds & (rounds - 1) == 0:
            checkpoint = new
        steps = new


def final_market(problem: dict, steps, scheme: int) -> dict:
    """The devices' choices at the prices ``steps`` (as :func:`play` returns them): a dict
    of (M,) arrays server, split, crbs, rrbs, utility (server and split -1 when idle, split
    N_m when local), plus the prices price_crb and price_rrb, (S,) each."""
    a = prepare(problem)
    price_crb, price_rrb = prices_at(a, np.asarray(steps))
    picks = market(a, price_crb, price_rrb, scheme)
    return {**picks, "price_crb": price_crb, "price_rrb": price_rrb}


def as_problem(topology, setup) -> dict:
    """A topology sampled by the engine (unbatched) under ``setup`` (an
    ``edgesplit.config.Setup``), in the scenario-file form this module and
    ``edgesplit.reference`` read."""
    import jax  # only to convert; the baseline itself is NumPy

    from edgesplit.model.dnn import builtin_model

    models = {}
    for name in setup.models:
        model = builtin_model(name)
        models[name] = {
            "input_bits": model.input_bits,
            "layers": [
                {"name": n, "cycles": c, "output_bits": b}
                for n, c, b in zip(
                    model.layer_names, model.layer_cycles, model.output_bits, strict=True
                )
            ],
        }
    scenario = jax.tree.map(np.asarray, topology.scenario)
    d = scenario.devices
    devices = [
        {
            "model": setup.models[int(topology.model[m])],
            "cpu_hz": float(d.cpu_hz[m]),
            "arrival_rate": float(d.arrival_rate[m]),
            "reward": float(d.reward[m]),
            "delay_weight": float(d.delay_weight[m]),
            "payment_weight": float(d.payment_weight[m]),
        }
        for m in range(setup.num_devices)
    ]
    s = scenario.servers
    servers = [
        {
            "crb_hz": float(s.crb_hz[j]),
            "crbs": int(s.crbs[j]),
            "rrbs": int(s.rrbs[j]),
            "cost_crb": float(s.cost_crb[j]),
            "cost_rrb": float(s.cost_rrb[j]),
            "max_price": float(s.max_price[j]),
            "price_step": float(s.price_step[j]),
            "result_delay": float(s.result_delay[j]),
        }
        for j in range(setup.num_servers)
    ]
    return {
        "models": models,
        "devices": devices,
        "servers": servers,
        "rate_per_rrb": scenario.rate_per_rrb.tolist(),
    }


@functools.cache
def _sampler():
    """The engine's topology sampler, jitted (one compilation per number of MDs and ESs)."""
    import jax

    from edgesplit.sweep.topology import sample_topology

    return jax.jit(sample_topology, static_argnums=(2, 3))


def sampled_problem(setup, key: int, index: int):
    """Topology ``index`` of the stream ``key`` that the engine samples under ``setup``
    (float64 when JAX runs with x64), and the same topology as a scenario file
    (:func:`as_problem`)."""
    import jax

    topology = _sampler()(
        jax.random.fold_in(jax.random.key(key), index),
        setup, setup.num_devices, setup.num_servers,
    )  # fmt: skip
    return topology, as_problem(topology, setup)


def time_solves(games: int = 5) -> list[float]:
    """Seconds per Fig. 3 solve (20 MDs, 2 ESs, λ = 10, PROPOSED) on the first topologies
    scripts/bench.py times, each printed."""
    from edgesplit.config import Setup

    fig3 = Setup().replace(mean_arrival_rate=10.0)
    seconds = []
    for i in range(games):
        _, problem = sampled_problem(fig3, 0, i)
        begin = time.perf_counter()
        steps, played, _ = play(problem, PROPOSED)
        final_market(problem, steps, PROPOSED)
        seconds.append(time.perf_counter() - begin)
        print(f"NumPy Fig. 3 solve {i} (proposed, λ = 10): {played} rounds, {seconds[-1]:.2f} s")
    if seconds:
        print(f"      {np.mean(seconds):.2f} s a solve, {1 / np.mean(seconds):.2f} solves/s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Its agreement with the reference and the engine: "
        "pytest tests/test_numpy_baseline.py",
    )
    parser.add_argument("--timed", type=int, default=5, help="Fig. 3 solves timed")
    args = parser.parse_args()
    import jax

    jax.config.update("jax_enable_x64", True)  # topologies sampled as sweeps sample them
    time_solves(args.timed)


if __name__ == "__main__":
    main()
