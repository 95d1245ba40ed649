# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # From a sweep to a paired conclusion
#
# Does the proposed scheme give mobile devices (MDs) a higher mean utility than the
# heuristic, where each MD may buy only from the edge server (ES) of its best link? This
# notebook answers it from a sweep: it runs a small Fig. 3 sweep, compares the schemes
# *paired* on the same topologies, draws the figure that supports or refutes the claim,
# and then looks inside one game that never settles.
#
# It runs as it is, from the repository root (`pip install -e '.[plot]'`), as a script
# (`python examples/tutorial.py`) or as a notebook (`jupytext --to notebook`); the test
# suite runs it. With 8 topologies a point it takes a minute or two, most of it
# compiling; the committed Fig. 3 results use 1,000 (the documentation's Analysis page).

# %%
import jax
import numpy as np

jax.config.update("jax_enable_x64", True)  # float64, as the command line computes
import edgesplit  # noqa: E402 (after the setting, as a notebook reads)

# %% [markdown]
# ## 1. A sweep
#
# `sweeps/quick.toml` is the paper's Fig. 3 setup (20 MDs, 2 ESs, four schemes) at four
# arrival rates. Every scheme and rate sees the same random topologies (common random
# numbers): topology *t* is drawn from the sweep's seed and *t* alone. Here 8 topologies,
# in memory; `edgesplit.run(sweep, "results/tutorial.zarr")` would write (and resume) a
# store instead, which `edgesplit.open_store` opens as the same Dataset.

# %%
sweep = edgesplit.read_sweep("sweeps/quick.toml").replace(topologies=8, chunk=2)
ds = edgesplit.run(sweep)
print(ds.device_utility.dims, ds.sizes["topology"], "topologies")

# %% [markdown]
# ## 2. The summary
#
# Per scheme and rate: mean MD and ES utility with Student t intervals over the
# topologies, the shares of games that converged and that are equilibria on the price
# grid (Wilson intervals), the mean ES regret and the share of idle MDs.

# %%
stats = edgesplit.summary(ds)
print(stats[["md_utility", "md_utility_low", "md_utility_high"]].to_dataframe().round(3))

# %% [markdown]
# The intervals of *proposed* and *heuristic* overlap at most rates: read side by side,
# they cannot tell the schemes apart. But the spread they show is mostly the spread
# between topologies, which both schemes share.
#
# ## 3. The paired comparison
#
# `compare` takes, per topology, the proposed scheme's mean MD utility minus the
# heuristic's, and gives the mean of those differences with a paired Student t interval
# and the paired t-test's p-value.

# %%
result = edgesplit.compare(ds, "device_utility", "heuristic")
proposed = result.sel(scheme="proposed").to_dataframe()
print(proposed[["difference", "low", "high", "n", "p_value"]].round(4))
print(result.attrs["interval"])

# %% [markdown]
# At each rate where the two schemes differ at all, the interval says by how much, and
# whether zero is out of it. Where the heuristic and the proposed scheme give every MD
# the same choice (at 2 tasks/s nobody offloads), the difference is exactly 0. For
# users who distrust normality, `method="bootstrap"` gives a seeded percentile
# bootstrap interval instead.

# %%
boot = edgesplit.compare(ds, "device_utility", "heuristic", method="bootstrap", seed=1)
print(boot.sel(scheme="proposed")[["low", "high"]].to_dataframe().round(4))

# %% [markdown]
# ## 4. The figure
#
# `edgesplit.plot` draws the paper's two panels, the share of games at an equilibrium
# and the ES regret, and with a baseline the paired differences with their intervals:
# the panels that answer "does A beat B?". Each scheme keeps its colour in every
# figure. (`edgesplit plot STORE --baseline heuristic -o FIG.png` draws the same.)

# %%
figure = edgesplit.plot(ds, baseline="heuristic")
figure  # noqa: B018 (a notebook shows the figure)

# %% [markdown]
# ## 5. One game's story
#
# Some games never settle: two ESs undercut each other in turn (an Edgeworth cycle).
# `scenario_of` writes one topology of the sweep, at one grid point, as a scenario file
# that anyone can solve again (`edgesplit solve`) to the stored numbers; `trace` plays its
# game round by round.

# %%
games = ds.sel(scheme="proposed", mean_arrival_rate=10.0)
cycling = np.flatnonzero(games.status.values == edgesplit.Status.CYCLE)
topology = int(games.topology.values[cycling[0]]) if len(cycling) else 0
scenario = edgesplit.parse_scenario(edgesplit.scenario_of(ds, topology, mean_arrival_rate=10))
story = edgesplit.trace(scenario.scenario, "proposed", scenario.settings)
print(story.table()[-1200:])

# %% [markdown]
# The prices fall from the maximum, where nobody buys (these opening rounds are skipped
# exactly by the solver, and filled in here), until buyers appear; then the ESs move a
# step at a time until the prices come back to a state seen before. The trace ends
# exactly where `edgesplit.solve` (and `edgesplit solve` on the exported file) ends.

# %%
story.figure()
