"""Engine benchmark: JAX solves per second against the plain-Python reference.

    python scripts/bench_engine.py [--topologies 1000] [--python 2]

1. JAX: one jit-compiled call solves a batch of Fig. 3 scenarios (20 MDs, 2 ESs,
   arrival rate 10, proposed scheme, float64) on 16 game lanes, as sweeps do; timed
   with compilation, then again on new scenarios of the same shapes. The same batch
   with vmap(solve) (every lane waits for the longest game) is timed beside it.
2. Plain Python (tests/reference.py: loops over devices, servers, splits, CRBs and
   RRBs): a full Fig. 3 solve takes hours there, so it times one best-response pass
   over every device on a few of the same scenarios and multiplies by the passes
   the solve needs (rounds × (2S + 1), at least one pass each): a lower bound on its
   solve time, hence a lower bound on the speed-up.
3. Both on a reduced instance small enough for Python to finish (4 MDs, 4 CRBs,
   8 RRBs, Δ = 0.5): same answers asserted, ratio measured directly.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import reference  # noqa: E402
from edgesplit.config import GameSettings, Setup  # noqa: E402
from edgesplit.models import builtin_model  # noqa: E402
from edgesplit.schemes import Scheme  # noqa: E402
from edgesplit.solve import solve, solve_batch  # noqa: E402
from edgesplit.topology import sample_topology  # noqa: E402


def batch_solver(setup: Setup, queue: bool = True):
    """Solve a batch of topologies: with a game queue (the sweeps' engine) or vmap(solve)."""

    @jax.jit
    def run(first_key_index, count_like):
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(
            first_key_index + jnp.arange(count_like.shape[0])
        )
        topologies = jax.vmap(
            lambda k: sample_topology(k, setup, setup.num_devices, setup.num_servers)
        )(keys)
        if queue:
            solutions = solve_batch(topologies.scenario, Scheme.PROPOSED, lanes=16)
        else:
            solutions = jax.vmap(lambda t: solve(t.scenario, Scheme.PROPOSED))(topologies)
        return topologies, solutions

    return run


def timed_batches(run, count: int):
    """(seconds with compilation, seconds again on new topologies, first results)."""
    shape = jnp.zeros(count)
    start = time.perf_counter()
    results = jax.block_until_ready(run(0, shape))
    first = time.perf_counter() - start
    start = time.perf_counter()
    jax.block_until_ready(run(count, shape))
    return first, time.perf_counter() - start, results


def as_problem(topology, setup: Setup) -> dict:
    """A sampled topology in the scenario-file form the reference reads."""
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


def python_pass_seconds(problem: dict, price_crb, price_rrb) -> float:
    """One best-response pass over every device, full capacity, in plain Python."""
    crbs = [s["crbs"] for s in problem["servers"]]
    rrbs = [s["rrbs"] for s in problem["servers"]]
    start = time.perf_counter()
    for m in range(len(problem["devices"])):
        reference.best_response(problem, m, price_crb, price_rrb, crbs, rrbs, reference.PROPOSED)
    return time.perf_counter() - start


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--topologies", type=int, default=1000)
    args.add_argument("--python", type=int, default=2, help="Fig. 3 scenarios timed in Python")
    args = args.parse_args()

    setup = Setup().replace(mean_arrival_rate=10.0)
    count = args.topologies
    first, steady, (topologies, solutions) = timed_batches(batch_solver(setup), count)
    jax_rate = count / steady
    rounds = np.asarray(solutions.rounds)
    print(f"JAX   {count} Fig. 3 solves: {first:.1f} s with compilation, {steady:.1f} s again")
    print(f"      {jax_rate:.1f} solves/s; rounds mean {rounds.mean():.0f}, max {rounds.max()}; "
          f"converged {np.mean(np.asarray(solutions.converged)):.1%}")  # fmt: skip
    first_vmap, steady_vmap, (_, same) = timed_batches(batch_solver(setup, queue=False), count)
    jax.tree.map(np.testing.assert_array_equal, same, solutions)
    print(f"      vmap(solve) instead of the game queue: {first_vmap:.1f} s with compilation, "
          f"{steady_vmap:.1f} s again, same results: the queue is "
          f"{steady_vmap / steady:.1f}× faster")  # fmt: skip

    estimates = []
    for i in range(args.python):
        one = jax.tree.map(lambda x, i=i: np.asarray(x)[i], topologies)
        price = np.asarray(solutions.price_crb)[i].tolist()  # joint prices: CRB = RRB
        seconds = python_pass_seconds(as_problem(one, setup), price, price)
        passes = int(rounds[i]) * (2 * setup.num_servers + 1)
        estimates.append(seconds * passes)
        lower = seconds * passes
        print(
            f"Python topology {i}: {seconds:.1f} s a pass × {passes} passes ≥ {lower:.0f} s a solve"
        )
    python_rate = 1.0 / np.mean(estimates)
    print(f"      ≤ {python_rate:.2e} solves/s: JAX is ≥ {jax_rate / python_rate:,.0f}× faster")

    small = setup.replace(num_devices=4, crbs=4, rrbs=8, price_step=0.5)
    run_small = batch_solver(small)
    jax.block_until_ready(run_small(0, jnp.zeros(200)))
    start = time.perf_counter()
    small_topologies, small_solutions = jax.block_until_ready(run_small(200, jnp.zeros(200)))
    small_jax = 200 / (time.perf_counter() - start)
    start = time.perf_counter()
    count = 3
    for i in range(count):
        one = jax.tree.map(lambda x, i=i: np.asarray(x)[i], small_topologies)
        steps, played, _ = reference.play(
            as_problem(one, small), reference.PROPOSED, min_gain=GameSettings().min_gain
        )
        assert played == int(small_solutions.rounds[i])
        np.testing.assert_allclose(
            reference.prices_at(as_problem(one, small), steps)[0], small_solutions.price_crb[i]
        )
    small_python = count / (time.perf_counter() - start)
    ratio = small_jax / small_python
    print(f"Reduced (4 MDs, 4 CRBs, 8 RRBs): JAX {small_jax:.0f} solves/s, "
          f"Python {small_python:.3f} solves/s: {ratio:,.0f}×, same prices and rounds")  # fmt: skip


if __name__ == "__main__":
    main()
