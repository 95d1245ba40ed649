"""The documented defaults put the Fig. 3 setup in the paper's regime."""

from __future__ import annotations

import csv
import math
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np

from conftest import draw_topology
from edgesplit.config import GameSettings, Setup
from edgesplit.game.solve import solve, solve_at_prices
from edgesplit.model.schemes import Scheme
from edgesplit.sweep.topology import sample_topology


def local_limit(stem: str, setup: Setup) -> float:
    """The arrival rate above which a device running ``stem`` alone has utility <= 0.

    From eqs. (2), (6), (10) with the measured mobile-GPU latency L: μ = 1/L and
    γλ - δ/(μ - λ) = 0, the larger root of γλ² - γμλ + δ = 0."""
    rows = csv.DictReader(
        (resources.files("edgesplit") / "data" / "latency-mobile-gpu-ms.csv")
        .read_text()
        .splitlines()
    )
    latency = sum(float(r["lat_ms"]) for r in rows if r["model"] == stem) * 1e-3
    mu = 1.0 / latency * setup.cpu_hz / 852e6
    gamma, delta = setup.reward, setup.delay_weight
    return (gamma * mu + math.sqrt((gamma * mu) ** 2 - 4 * gamma * delta)) / (2 * gamma)


MARKET_ONLY = GameSettings(grid_certificate=False)  # these tests check no regret


@jax.jit
def fig3(rate, scheme):
    setup = Setup().replace(mean_arrival_rate=rate)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(2024), i))(jnp.arange(4))
    scenarios = jax.vmap(lambda k: sample_topology(k, setup, 20, 2).scenario)(keys)
    return jax.vmap(lambda s: solve(s, scheme, MARKET_ONLY))(scenarios)


def test_user_only_limit_is_alexnets_near_the_papers_ten():
    limit = local_limit("imc", Setup())
    assert 11.5 < limit < 12.5  # AlexNet, the fastest of the three locally
    assert local_limit("face", Setup()) < limit and local_limit("asr", Setup()) < limit
    below = fig3(jnp.float64(limit - 0.1), Scheme.USER_ONLY)
    above = fig3(jnp.float64(limit + 0.1), Scheme.USER_ONLY)
    assert np.all(np.asarray(below.devices.utility).max(axis=1) > 0)
    assert np.all(np.asarray(above.devices.utility) == 0)


def test_offloading_pays_past_the_limit():
    user = fig3(jnp.float64(14.0), Scheme.USER_ONLY)
    proposed = fig3(jnp.float64(14.0), Scheme.PROPOSED)
    assert np.all(
        np.asarray(proposed.devices.utility).mean(axis=1)
        > np.asarray(user.devices.utility).mean(axis=1)
    )
    assert np.all(np.asarray(proposed.server_utility).sum(axis=1) > 0)


def test_nobody_offloads_at_the_maximum_price():
    """Algorithm 1's premise, at the top of the Fig. 3 grid (λ = 20)."""
    setup = Setup().replace(mean_arrival_rate=20.0)
    for i in range(4):
        scenario = draw_topology(jax.random.key(i), setup)
        top = scenario.servers.max_price
        response = solve_at_prices(scenario, Scheme.PROPOSED, top, top, MARKET_ONLY)
        assert np.all(np.asarray(response.devices.server) == -1)
