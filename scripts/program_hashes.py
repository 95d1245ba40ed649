"""The compiled programs' fingerprints, to prove a refactor changes no result.

Prints, for each of nine game settings, the sha256 (16 hex digits) of the lowered
StableHLO of ``solve``, ``solve_at_prices`` and ``solve_batch`` (lanes 2) on two Fig. 3
topologies. The same lines from two trees mean the same programs, so the same stores, bit
for bit. Run it with each tree's sources first on the path and compare the outputs:

    PYTHONPATH=BEFORE/src python scripts/program_hashes.py > before.txt
    PYTHONPATH=src python scripts/program_hashes.py > after.txt
    diff before.txt after.txt
"""

from __future__ import annotations

import hashlib

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

from edgesplit.config import GameSettings, Setup, price_levels  # noqa: E402
from edgesplit.game.solve import solve, solve_at_prices  # noqa: E402
from edgesplit.model.scenario import stack  # noqa: E402
from edgesplit.sweep.batch import solve_batch  # noqa: E402
from edgesplit.sweep.topology import sample_topology  # noqa: E402

SETUP = Setup()
LEVELS = price_levels(SETUP.max_price, SETUP.price_step) + 1  # any number that fits the grid
CASES = {
    "default": GameSettings(price_levels=LEVELS),
    "separate": GameSettings(joint_price=False, price_levels=LEVELS),
    "sequential-separate": GameSettings(
        update="sequential", joint_price=False, price_levels=LEVELS
    ),
    "best_response": GameSettings(leader="best_response", price_levels=LEVELS),
    "best_response-sequential": GameSettings(
        leader="best_response", update="sequential", price_levels=LEVELS
    ),
    "enumerate": GameSettings(leader="enumerate", price_levels=LEVELS),
    "no-certificate": GameSettings(grid_certificate=False),
    "no-certificate-levels": GameSettings(grid_certificate=False, price_levels=LEVELS),
    "exhaustive": GameSettings(
        best_response="exhaustive", crb_grid=30, rrb_grid=30, price_levels=LEVELS
    ),
}


def fingerprint(function, *args) -> str:
    return hashlib.sha256(function.lower(*args).as_text().encode()).hexdigest()[:16]


def main() -> None:
    scenarios = [sample_topology(jax.random.key(i), SETUP, 20, 2).scenario for i in range(2)]
    one, batch = scenarios[0], stack(scenarios)
    price = jnp.full(2, 1.0)
    at_prices = jax.jit(solve_at_prices, static_argnums=4)
    for name, settings in CASES.items():
        print(
            name,
            fingerprint(jax.jit(solve, static_argnums=2), one, 0, settings),
            fingerprint(at_prices, one, 0, price, price, settings),
            fingerprint(jax.jit(solve_batch, static_argnums=(2, 3)), batch, 0, settings, 2),
            flush=True,
        )


if __name__ == "__main__":
    main()
