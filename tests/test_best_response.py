"""The two best-response kernels against each other and against the plain-Python loops."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import random_problem
from edgesplit import reference
from edgesplit.game.best_response import (
    IDLE,
    best_block_count,
    block_terms,
    choose,
    first_maximum,
    offload_options_exact,
    offload_options_exhaustive,
)
from edgesplit.io.scenario_file import parse_scenario
from edgesplit.model.scenario import pad_scenario, stack
from edgesplit.model.schemes import Scheme, scheme_options

NUM_DEVICES, NUM_SERVERS, MAX_LAYERS, MAX_BLOCKS = 3, 3, 4, 6


def batch(rng, count):
    """``count`` random scenario files, their stacked arrays, prices and capacities left."""
    problems = [
        random_problem(
            rng,
            NUM_DEVICES,
            NUM_SERVERS,
            max_layers=MAX_LAYERS,
            max_crbs=MAX_BLOCKS,
            max_rrbs=MAX_BLOCKS,
        )
        for _ in range(count)
    ]
    scenarios = stack(
        [
            pad_scenario(parse_scenario(p).scenario, NUM_DEVICES, NUM_SERVERS, MAX_LAYERS + 1)
            for p in problems
        ]
    )
    price_crb = rng.uniform(0.0, 2.0, (count, NUM_SERVERS))
    price_rrb = rng.uniform(0.0, 2.0, (count, NUM_SERVERS))
    price_crb[rng.random(price_crb.shape) < 0.05] = 0.0  # free resources: buy all there is
    crbs_left = rng.integers(0, MAX_BLOCKS + 1, (count, NUM_DEVICES, NUM_SERVERS)).astype(np.int32)
    rrbs_left = rng.integers(0, MAX_BLOCKS + 1, (count, NUM_DEVICES, NUM_SERVERS)).astype(np.int32)
    schemes = rng.integers(0, len(Scheme), count).astype(np.int32)
    return problems, scenarios, price_crb, price_rrb, crbs_left, rrbs_left, schemes


def respond(method):
    def one(scenario, scheme, price_crb, price_rrb, crbs_left, rrbs_left):
        options = scheme_options(scenario, scheme)
        if method == "exact":
            offload = offload_options_exact(scenario, price_crb, price_rrb, crbs_left, rrbs_left)
        else:
            offload = offload_options_exhaustive(
                scenario, price_crb, price_rrb, crbs_left, rrbs_left, MAX_BLOCKS, MAX_BLOCKS
            )
        return choose(scenario, options, offload)

    return jax.jit(jax.vmap(one))


def test_exact_equals_exhaustive_on_a_thousand_scenarios(rng):
    _, scenarios, price_crb, price_rrb, crbs_left, rrbs_left, schemes = batch(rng, 1200)
    args = (scenarios, schemes, price_crb, price_rrb, crbs_left, rrbs_left)
    exact = respond("exact")(*args)
    exhaustive = respond("exhaustive")(*args)
    np.testing.assert_allclose(exact.utility, exhaustive.utility, rtol=1e-9, atol=1e-12)
    # Choices agree wherever the best option is unique (ties are measure-zero here).
    for field in ("server", "split", "crbs", "rrbs"):
        np.testing.assert_array_equal(
            getattr(exact, field), getattr(exhaustive, field), err_msg=field
        )
    # The cases cover every kind of answer.
    assert np.any(exact.server >= 0) and np.any(exact.split == IDLE)
    local = (exact.server == IDLE) & (exact.split > 0)
    assert np.any(local)
    assert np.any((exact.server >= 0) & (exact.split == 0))
    assert np.any((exact.server >= 0) & (exact.split > 0))
    assert len(np.unique(exact.crbs)) == MAX_BLOCKS + 1  # 0..MAX_BLOCKS all occur


def test_both_kernels_equal_the_python_loops(rng):
    problems, scenarios, price_crb, price_rrb, crbs_left, rrbs_left, schemes = batch(rng, 250)
    args = (scenarios, schemes, price_crb, price_rrb, crbs_left, rrbs_left)
    results = {
        method: jax.tree.map(np.asarray, respond(method)(*args))
        for method in ("exact", "exhaustive")
    }
    for i, problem in enumerate(problems):
        for m in range(NUM_DEVICES):
            expected = reference.best_response(
                problem, m, price_crb[i].tolist(), price_rrb[i].tolist(),
                crbs_left[i, m].tolist(), rrbs_left[i, m].tolist(), int(schemes[i]),
            )  # fmt: skip
            for method, got in results.items():
                where = f"{method} scenario {i} device {m}"
                assert got.utility[i, m] == pytest.approx(expected.utility, rel=1e-9, abs=1e-12), (
                    where
                )
                assert got.server[i, m] == (IDLE if expected.server is None else expected.server), (
                    where
                )
                assert got.split[i, m] == (IDLE if expected.split is None else expected.split), (
                    where
                )
                assert (got.crbs[i, m], got.rrbs[i, m]) == (expected.crbs, expected.rrbs), where
                if expected.delay is None:
                    assert np.isnan(got.delay[i, m]), where
                else:
                    assert got.delay[i, m] == pytest.approx(expected.delay, rel=1e-9), where


def scan_blocks(rate, lam, delta, price, most):
    """The integer minimum of δ/(nμ - λ) + ω g·n by trying every n (eqs. 7, 8, 10)."""
    costs = [
        delta / (k * rate - lam) + price * k if k * rate > lam else np.inf
        for k in range(1, most + 1)
    ]
    return None if np.all(np.isinf(costs)) else int(np.argmin(costs)) + 1


def test_block_count_is_the_integer_minimum():
    """The closed form against a scan of n, at named boundary cases and at random
    arrival rates within rounding of an exact multiple of the per-block rate."""
    cases = [
        # μ of one block, λ, δ, ω·g, most blocks
        (1.0, 2.0, 1.0, 0.1, 50),  # interior optimum
        (1.0, 3.0, 1.0, 1e-9, 50),  # nearly free: buy the most
        (1.0, 3.0, 1.0, 0.0, 50),  # free: buy the most
        (1.0, 3.0, 0.0, 0.5, 50),  # delay costs nothing: the least stable count
        (1.0, 3.0, 1.0, 100.0, 50),  # dear: the least stable count
        (1.0, 3.0, 1.0, 0.1, 3),  # λ = 3μ exactly: 3 blocks are unstable
        (np.inf, 3.0, 1.0, 0.1, 5),  # no work: one block
        (0.3, 0.9, 1.0, 0.2, 10),  # λ/μ = 3.0000000000000004 in floating point
    ]
    rng = np.random.default_rng(3)
    for _ in range(2000):
        rate = float(rng.uniform(0.01, 10.0))
        lam = float(rng.integers(1, 8) * rate * (1 + rng.choice([-1e-16, 0.0, 1e-16, 1e-12])))
        cases.append(
            (
                rate,
                lam,
                float(rng.uniform(0, 2)),
                float(rng.uniform(0, 1)),
                int(rng.integers(1, 12)),
            )
        )
    for rate, lam, delta, price, most in cases:
        terms = block_terms(jnp.float64(rate), jnp.float64(lam), jnp.float64(delta))
        n, sojourn = best_block_count(terms, jnp.float64(price), most)
        best = scan_blocks(rate, lam, delta, price, most)
        if best is None:
            assert int(n) == 0 and np.isinf(sojourn), (rate, lam, delta, price, most)
        else:
            # Equal cost is enough: with δ = 0 and g = 0 every count costs nothing.
            costs = {
                k: delta / (k * rate - lam) + price * k if k * rate > lam else np.inf
                for k in (int(n), best)
            }
            assert costs[int(n)] == pytest.approx(costs[best], rel=1e-12), (
                rate,
                lam,
                delta,
                price,
                most,
            )
            assert float(sojourn) == pytest.approx(
                0.0 if np.isinf(rate) else 1 / (int(n) * rate - lam)
            )


@pytest.mark.parametrize("scheme", list(Scheme))
def test_schemes_restrict_the_options(rng, scheme):
    problems, scenarios, price_crb, price_rrb, crbs_left, rrbs_left, _ = batch(rng, 300)
    schemes = np.full(len(problems), int(scheme), np.int32)
    got = respond("exact")(scenarios, schemes, price_crb, price_rrb, crbs_left, rrbs_left)
    offloads = np.asarray(got.server) >= 0
    if scheme == Scheme.USER_ONLY:
        assert not offloads.any()
    elif scheme == Scheme.EDGE_ONLY:
        assert offloads.any() and np.all(np.asarray(got.split)[~offloads] == IDLE)
        assert np.all(np.asarray(got.split)[offloads] == 0)
    elif scheme == Scheme.HEURISTIC:
        strongest = np.argmax(np.asarray(scenarios.rate_per_rrb), axis=2)
        assert offloads.any() and np.all(np.asarray(got.server)[offloads] == strongest[offloads])
    else:
        assert offloads.any()


def test_first_maximum_is_argmax_and_max(rng):
    values = rng.integers(0, 4, (300, 30)).astype(np.float64)  # many ties
    values[rng.random(values.shape) < 0.2] = -np.inf
    values[:5] = -np.inf  # nothing feasible: index 0, as argmax
    index, best = jax.jit(first_maximum)(values)
    np.testing.assert_array_equal(index, np.argmax(values, axis=1))
    np.testing.assert_array_equal(best, np.max(values, axis=1))


def test_first_maximum_takes_near_ties_in_order():
    # Within 1e-12 of the maximum counts as maximal (rounding of one recomputation);
    # a real difference, however small in utility terms, does not.
    values = np.array([[1.0, 3.0 - 3e-13, 3.0, 2.0], [1.0, 3.0 - 3e-9, 3.0, 2.0]])
    index, best = jax.jit(first_maximum)(values)
    np.testing.assert_array_equal(index, [1, 2])
    np.testing.assert_array_equal(best, [3.0, 3.0])
