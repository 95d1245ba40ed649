"""A slow, plain-Python reference of the paper's model, written apart from the kernels.

It reads a scenario in the JSON file format (plain dicts and lists) and loops over
devices, servers, split points, CRBs and RRBs, using eqs. (2)-(11) in the paper's own
form (service rates μ and sojourn times 1 / (μ - λ)). Admission and Algorithm 1 follow
the rules documented in ``edgesplit.game.admission`` and ``edgesplit.game.algorithm1``,
written out as loops.

It ships in the package so that the tests and the benchmark scripts import it from the
installed package (``from edgesplit import reference``), but it is the independent
oracle the engine is checked against: it imports only the standard library, nothing
else from edgesplit (not even NumPy or JAX), and nothing in edgesplit imports it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PROPOSED, EDGE_ONLY, HEURISTIC, USER_ONLY = 0, 1, 2, 3
PRICE_TOLERANCE = 1e-9


@dataclass
class Pick:
    utility: float = 0.0
    server: int | None = None
    split: int | None = None  # None when idle
    crbs: int = 0
    rrbs: int = 0
    delay: float | None = None


def layers_of(problem, m):
    """(F_1..F_N, V_0..V_N) of device m's model."""
    model = problem["models"][problem["devices"][m]["model"]]
    cycles = [layer["cycles"] for layer in model["layers"]]
    bits = [model["input_bits"]] + [layer["output_bits"] for layer in model["layers"]]
    return cycles, bits


def sojourn(service_rate, arrival_rate):
    """Eqs. (6)-(8): 1 / (μ - λ); None when the queue is unstable."""
    if service_rate == math.inf:
        return 0.0
    if service_rate <= arrival_rate:
        return None
    return 1.0 / (service_rate - arrival_rate)


def offload_delay(problem, m, s, split, crbs, rrbs):
    """T_ms of eq. (9) for offloading after ``split`` with ``crbs`` CRBs and ``rrbs`` RRBs."""
    device = problem["devices"][m]
    server = problem["servers"][s]
    cycles, bits = layers_of(problem, m)
    lam = device["arrival_rate"]
    on_device = math.fsum(cycles[:split])  # correctly rounded, as the partition table
    on_server = math.fsum(cycles[split:])
    mu_device = device["cpu_hz"] / on_device if on_device > 0 else math.inf  # eq. (2)
    mu_crb = server["crb_hz"] / on_server if on_server > 0 else math.inf  # eq. (3)
    mu_rrb = problem["rate_per_rrb"][m][s] / bits[split] if bits[split] > 0 else math.inf  # eq. (5)
    parts = [
        sojourn(mu_device, lam),  # eq. (6)
        sojourn(rrbs * mu_rrb, lam),  # eq. (7)
        sojourn(crbs * mu_crb, lam),  # eq. (8)
    ]
    if any(p is None for p in parts):
        return None
    return parts[0] + parts[1] + parts[2] + server["result_delay"]  # eq. (9)


def local_delay(problem, m):
    device = problem["devices"][m]
    cycles, _ = layers_of(problem, m)
    total = math.fsum(cycles)
    return sojourn(
        device["cpu_hz"] / total if total > 0 else math.inf, device["arrival_rate"]
    )  # eqs. (2), (6)


def utility(problem, m, delay, payment):
    """Eq. (10)."""
    d = problem["devices"][m]
    return (
        d["reward"] * d["arrival_rate"] - d["delay_weight"] * delay - d["payment_weight"] * payment
    )


def pick_utility(problem, m, pick: Pick, price_crb, price_rrb):
    """Eq. (10) recomputed from a device's choice."""
    if pick.split is None:
        return 0.0
    if pick.server is None:
        return utility(problem, m, local_delay(problem, m), 0.0)
    s = pick.server
    delay = offload_delay(problem, m, s, pick.split, pick.crbs, pick.rrbs)
    return utility(problem, m, delay, pick.crbs * price_crb[s] + pick.rrbs * price_rrb[s])


def allowed_servers(problem, m, scheme):
    rates = problem["rate_per_rrb"][m]
    if scheme == USER_ONLY:
        return []
    if scheme == HEURISTIC:
        return [rates.index(max(rates))]
    return list(range(len(rates)))


def best_response(problem, m, price_crb, price_rrb, crbs_left, rrbs_left, scheme) -> Pick:
    """Device m's best option by looping over every server, split, y and z."""
    cycles, _ = layers_of(problem, m)
    num_layers = len(cycles)
    best = Pick()
    if scheme != EDGE_ONLY:
        delay = local_delay(problem, m)
        if delay is not None:
            u = utility(problem, m, delay, 0.0)
            if u > best.utility:
                best = Pick(u, None, num_layers, 0, 0, delay)
    for s in allowed_servers(problem, m, scheme):
        for split in [0] if scheme == EDGE_ONLY else range(num_layers):
            for y in range(1, crbs_left[s] + 1):
                for z in range(1, rrbs_left[s] + 1):
                    delay = offload_delay(problem, m, s, split, y, z)
                    if delay is None:
                        continue
                    u = utility(problem, m, delay, y * price_crb[s] + z * price_rrb[s])
                    if u > best.utility:
                        best = Pick(u, s, split, y, z, delay)
    return best


def profit(problem, s, pick, price_crb, price_rrb):
    """A buyer's term of eq. (11)."""
    server = problem["servers"][s]
    return pick.crbs * (price_crb[s] - server["cost_crb"]) + pick.rrbs * (
        price_rrb[s] - server["cost_rrb"]
    )


def market(problem, price_crb, price_rrb, scheme) -> list[Pick]:
    """Best responses with admission: ranked by profit, longest prefix that fits."""
    num_devices = len(problem["devices"])
    crbs_left = [s["crbs"] for s in problem["servers"]]
    rrbs_left = [s["rrbs"] for s in problem["servers"]]
    picks = [Pick() for _ in range(num_devices)]
    pending = list(range(num_devices))
    while pending:
        requests = {
            m: best_response(problem, m, price_crb, price_rrb, crbs_left, rrbs_left, scheme)
            for m in pending
        }
        settled = [m for m in pending if requests[m].server is None]
        for s in range(len(crbs_left)):
            asking = [m for m in pending if requests[m].server == s]
            asking.sort(key=lambda m: (-profit(problem, s, requests[m], price_crb, price_rrb), m))
            used_crbs = used_rrbs = 0
            for m in asking:
                if (
                    used_crbs + requests[m].crbs > crbs_left[s]
                    or used_rrbs + requests[m].rrbs > rrbs_left[s]
                ):
                    break
                used_crbs += requests[m].crbs
                used_rrbs += requests[m].rrbs
                settled.append(m)
            crbs_left[s] -= used_crbs
            rrbs_left[s] -= used_rrbs
        for m in settled:
            picks[m] = requests[m]
        pending = [m for m in pending if m not in settled]
    return picks


def server_utilities(problem, picks, price_crb, price_rrb):
    """Eq. (11) for every server, and the CRBs and RRBs it sold."""
    num_servers = len(problem["servers"])
    utilities = [0.0] * num_servers
    crbs = [0] * num_servers
    rrbs = [0] * num_servers
    for pick in picks:
        if pick.server is not None:
            crbs[pick.server] += pick.crbs
            rrbs[pick.server] += pick.rrbs
    for s, server in enumerate(problem["servers"]):
        utilities[s] = crbs[s] * (price_crb[s] - server["cost_crb"]) + rrbs[s] * (
            price_rrb[s] - server["cost_rrb"]
        )
    return utilities, crbs, rrbs


def prices_at(problem, steps):
    price_crb, price_rrb = [], []
    for server, (k_crb, k_rrb) in zip(problem["servers"], steps, strict=True):
        top = server["max_price"]
        price_crb.append(min(max(top - k_crb * server["price_step"], 0.0), top))
        price_rrb.append(min(max(top - k_rrb * server["price_step"], 0.0), top))
    return price_crb, price_rrb


def server_utilities_at(problem, steps, scheme):
    price_crb, price_rrb = prices_at(problem, steps)
    picks = market(problem, price_crb, price_rrb, scheme)
    return server_utilities(problem, picks, price_crb, price_rrb)


def decide(problem, steps, s, scheme, joint, min_gain, current, sold_nothing):
    server = problem["servers"][s]
    top = math.ceil(server["max_price"] / server["price_step"])
    moves = [(-1, -1), (1, 1)] if joint else [(-1, 0), (0, -1), (1, 0), (0, 1)]
    for move in moves:
        trial = [min(max(steps[s][i] + move[i], 0), top) for i in range(2)]
        tentative = [list(row) for row in steps]
        tentative[s] = trial
        if server_utilities_at(problem, tentative, scheme)[0][s] - current > min_gain:
            return trial
    lower = [steps[s][0] + 1, steps[s][1] + 1]
    tentative = [list(row) for row in steps]
    tentative[s] = lower
    price_crb, price_rrb = prices_at(problem, tentative)
    slack = PRICE_TOLERANCE * server["max_price"]
    if (
        sold_nothing
        and price_crb[s] >= server["cost_crb"] - slack
        and price_rrb[s] >= server["cost_rrb"] - slack
        and max(lower) <= top
    ):
        return lower
    return list(steps[s])


def play_rounds(problem, scheme, move, update, max_rounds, window):
    """Every server from step 0, in rounds: each server s takes ``move(steps, s)``,
    against the round's starting steps (``update`` simultaneous) or after the servers
    before it moved (sequential). Rounds go on until one changes nothing (status 0),
    the steps come back to one of the last ``window`` states or to the checkpoint taken
    at every power of two rounds (1), or ``max_rounds`` (2). Returns (steps, rounds,
    status); user-only plays no round."""
    num_servers = len(problem["servers"])
    steps = [[0, 0] for _ in range(num_servers)]
    if scheme == USER_ONLY:
        return steps, 0, 0

    def one_round(steps):
        if update == "simultaneous":
            return [move(steps, s) for s in range(num_servers)]
        new = [list(row) for row in steps]
        for s in range(num_servers):
            new[s] = move(new, s)
        return new

    recent = []
    checkpoint = None
    rounds = 0
    while True:
        new = one_round(steps)
        rounds += 1
        if new == steps:
            return new, rounds, 0
        if new in recent[:window] or new == checkpoint:
            return new, rounds, 1
        if rounds >= max_rounds:
            return new, rounds, 2
        recent.insert(0, steps)
        if rounds & (rounds - 1) == 0:
            checkpoint = new
        steps = new


def play(
    problem, scheme, update="simultaneous", joint=True, max_rounds=2000, min_gain=1e-4, window=32
):
    """Algorithm 1. Returns (steps, rounds, status) with status 0 converged, 1 cycle, 2 limit."""

    def move(steps, s):
        current, crbs, rrbs = server_utilities_at(problem, steps, scheme)
        sold_nothing = crbs[s] == 0 and rrbs[s] == 0
        return decide(problem, steps, s, scheme, joint, min_gain, current[s], sold_nothing)

    return play_rounds(problem, scheme, move, update, max_rounds, window)


def grid_top(problem, s):
    """The largest price step k of server s; its levels are k = 0..grid_top inclusive."""
    server = problem["servers"][s]
    return math.ceil(server["max_price"] / server["price_step"])


def level_price(problem, s, k):
    """The price of server s at step k, the same formula as ``prices_at``."""
    server = problem["servers"][s]
    top = server["max_price"]
    return min(max(top - k * server["price_step"], 0.0), top)


def utility_of_server(problem, price_crb, price_rrb, scheme, s):
    """Server s's eq. (11) in the market (devices' best responses with admission)."""
    picks = market(problem, price_crb, price_rrb, scheme)
    return server_utilities(problem, picks, price_crb, price_rrb)[0][s]


def server_regret(problem, price_crb, price_rrb, scheme, joint=True):
    """How much each server could gain by moving its price anywhere on its grid.

    The other servers' prices stay as given and the devices re-respond with admission
    (``market``). With ``joint`` server s tries (p, p) for every level p of its grid;
    otherwise it tries three lines per level: (p, p), (p, its current RRB price) and (its
    current CRB price, p), so the result is then only a lower bound of the true regret
    over all (CRB, RRB) pairs on the grid. The given prices may be off the grid. Each
    regret is max(0, best candidate's utility - current utility); all are 0 under
    USER_ONLY, where the servers do not play.
    """
    num_servers = len(problem["servers"])
    if scheme == USER_ONLY:
        return [0.0] * num_servers
    picks = market(problem, price_crb, price_rrb, scheme)
    current = server_utilities(problem, picks, price_crb, price_rrb)[0]
    regrets = []
    for s in range(num_servers):
        candidates = []
        for k in range(grid_top(problem, s) + 1):
            p = level_price(problem, s, k)
            candidates.append((p, p))
            if not joint:
                candidates.append((p, price_rrb[s]))
                candidates.append((price_crb[s], p))
        best_gain = 0.0
        for crb, rrb in candidates:
            trial_crb = list(price_crb)
            trial_rrb = list(price_rrb)
            trial_crb[s] = crb
            trial_rrb[s] = rrb
            gain = utility_of_server(problem, trial_crb, trial_rrb, scheme, s) - current[s]
            if gain > best_gain:
                best_gain = gain
        regrets.append(best_gain)
    return regrets


def best_level(problem, steps, s, scheme):
    """Server s's best joint level with the other servers' steps as given.

    Returns (best_utility, best_k): its utility at every level k (both its steps [k, k])
    is computed, best_utility is the largest and best_k the smallest k whose utility is
    within 1e-12 * max(|best_utility|, 1) of it, i.e. the highest price among the maxima.
    """
    utilities = []
    for k in range(grid_top(problem, s) + 1):
        tentative = [list(row) for row in steps]
        tentative[s] = [k, k]
        utilities.append(server_utilities_at(problem, tentative, scheme)[0][s])
    best_utility = max(utilities)
    slack = 1e-12 * max(abs(best_utility), 1.0)
    for k, u in enumerate(utilities):
        if u >= best_utility - slack:
            return best_utility, k
    raise AssertionError("unreachable: the maximum is among the utilities")


def play_best_response(
    problem, scheme, update="simultaneous", max_rounds=2000, min_gain=1e-4, window=32
):
    """Best-response dynamics on the joint price grid, with ``play``'s start and stop rule.

    Each server jumps to its ``best_level`` when that gains more than ``min_gain`` over
    its current utility, and otherwise keeps its steps (no ±Δ moves, no descent rule).
    Returns (steps, rounds, status) with status 0 converged, 1 cycle, 2 limit.
    """

    def move(steps, s):
        current = server_utilities_at(problem, steps, scheme)[0]
        best, k = best_level(problem, steps, s, scheme)
        return [k, k] if best - current[s] > min_gain else list(steps[s])

    return play_rounds(problem, scheme, move, update, max_rounds, window)


def all_profiles(problem):
    """Every joint profile (k_0..k_{S-1}) in row-major order, server 0 slowest."""
    profiles = [()]
    for s in range(len(problem["servers"])):
        longer = []
        for profile in profiles:
            for k in range(grid_top(problem, s) + 1):
                longer.append((*profile, k))
        profiles = longer
    return profiles


def enumerate_profiles(problem, scheme, min_gain=1e-4):
    """Every joint price profile, its regrets, the equilibria and the chosen outcome.

    A profile gives level k_s to server s (both its steps [k_s, k_s]). Server s's regret
    at a profile is max(0, max over k' of U_s(profile with s at k') - U_s(profile)), and
    the profile is an equilibrium when every regret is at most ``min_gain``. The outcome
    is the equilibrium with the largest total server utility (ties: the first in
    row-major order) with status 0; with none, it is the profile with the least largest
    regret (ties: the first) with status 4. Under USER_ONLY the servers do not play: the
    all-zeros profile is the only one, an equilibrium, with status 0.

    Returns a dict with "equilibria" (profiles in row-major order), "outcome", "status"
    and "regret" (the outcome's regret per server).
    """
    num_servers = len(problem["servers"])
    if scheme == USER_ONLY:
        zeros = tuple([0] * num_servers)
        return {"equilibria": [zeros], "outcome": zeros, "status": 0, "regret": [0.0] * num_servers}
    cache = {}

    def utilities_of(profile):
        if profile not in cache:
            steps = [[k, k] for k in profile]
            cache[profile] = server_utilities_at(problem, steps, scheme)[0]
        return cache[profile]

    equilibria = []
    best_total = None
    best_equilibrium = None
    least_worst = None
    least_profile = None
    regret_of = {}
    for profile in all_profiles(problem):
        here = utilities_of(profile)
        regret = []
        for s in range(num_servers):
            best_gain = 0.0
            for k in range(grid_top(problem, s) + 1):
                moved = list(profile)
                moved[s] = k
                gain = utilities_of(tuple(moved))[s] - here[s]
                if gain > best_gain:
                    best_gain = gain
            regret.append(best_gain)
        regret_of[profile] = regret
        if all(r <= min_gain for r in regret):
            equilibria.append(profile)
            total = sum(here)
            if best_total is None or total > best_total:
                best_total = total
                best_equilibrium = profile
        worst = max(regret)
        if least_worst is None or worst < least_worst:
            least_worst = worst
            least_profile = profile
    if equilibria:
        return {
            "equilibria": equilibria,
            "outcome": best_equilibrium,
            "status": 0,
            "regret": regret_of[best_equilibrium],
        }
    return {
        "equilibria": [],
        "outcome": least_profile,
        "status": 4,
        "regret": regret_of[least_profile],
    }
