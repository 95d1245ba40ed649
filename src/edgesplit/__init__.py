"""edgesplit: joint DNN partitioning and resource pricing at the network edge.

A vectorised JAX engine for the multi-leader multi-follower Stackelberg game of
Cheng, Gazda and Liu, "Joint DNN Partitioning and Resource Allocation for Multiple
Machine Learning-based Mobile Applications at the Network Edge".

The public API at work, from the repository root (more in the documentation,
docs/getting-started.md, and every name in docs/api.md):

```python
import jax

jax.config.update("jax_enable_x64", True)  # float64, as the command line computes
import edgesplit

sweep = edgesplit.read_sweep("sweeps/quick.toml").replace(topologies=4, chunk=2)
ds = edgesplit.run(sweep)  # an xarray.Dataset, in memory
parsed = edgesplit.read_scenario("examples/capacity.json")
solution = edgesplit.solve(parsed.scenario, edgesplit.Scheme.PROPOSED, parsed.settings)
```

Names are imported on first use, so ``import edgesplit`` starts neither JAX nor xarray
and changes no JAX setting.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edgesplit")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0+unknown"

# Each public name and the module that defines it.
_HOMES = {
    # Parameters: how scenarios are drawn and how the game is played.
    "Setup": "edgesplit.config",
    "GameSettings": "edgesplit.config",
    # One scenario and its solution.
    "Scenario": "edgesplit.model.scenario",
    "Devices": "edgesplit.model.scenario",
    "Servers": "edgesplit.model.scenario",
    "Scheme": "edgesplit.model.schemes",
    "Status": "edgesplit.game.algorithm1",
    "Solution": "edgesplit.game.solve",
    "solve": "edgesplit.api",
    "solve_at_prices": "edgesplit.api",
    # Batches and sweeps.
    "solve_batch": "edgesplit.api",
    "Topology": "edgesplit.sweep.topology",
    "sample_topology": "edgesplit.sweep.topology",
    "Sweep": "edgesplit.sweep.spec",
    "run": "edgesplit.api",
    "open_store": "edgesplit.sweep.store",
    # From a store to a conclusion.
    "compare": "edgesplit.analysis.statistics",
    "summary": "edgesplit.analysis.statistics",
    "plot": "edgesplit.analysis.plots",
    "trace": "edgesplit.analysis.trace",
    "Trace": "edgesplit.analysis.trace",
    "scenario_of": "edgesplit.analysis.export",
    # Files.
    "read_sweep": "edgesplit.io.sweep_file",
    "parse_sweep": "edgesplit.io.sweep_file",
    "read_scenario": "edgesplit.io.scenario_file",
    "parse_scenario": "edgesplit.io.scenario_file",
    "ScenarioFile": "edgesplit.io.scenario_file",
    "InputError": "edgesplit.errors",
    "RunError": "edgesplit.errors",
}
__all__ = ["__version__", *_HOMES]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'edgesplit' has no attribute {name!r}")
    value = getattr(import_module(_HOMES[name]), name)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
