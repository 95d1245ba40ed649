"""Every variable a sweep stores, declared once: its dims by name, dtype, units and
meaning. The chunk programs (:mod:`edgesplit.sweep.chunks`) return these variables
with these dims, and the store (:mod:`edgesplit.sweep.store`) is laid out from them.

``AXES`` in a variable's dims stands for the sweep's swept parameters, one dim each in
the sweep file's order; a chunk program holds them as one dim of grid points
(:data:`POINT`, C order over the axes), which the host reshapes into the grid.
"""

from __future__ import annotations

from dataclasses import dataclass

AXES = "*axes"  # the swept parameters' dims, in the sweep file's order
POINT = "point"  # the chunk program's one dim of grid points, in place of AXES


@dataclass(frozen=True)
class Variable:
    name: str
    dims: tuple[str, ...]  # from: scheme, AXES, topology, device, server
    dtype: str  # "float" (the sweep's precision), "int32", "int8" or "bool"
    units: str
    long_name: str

    def dims_for(self, axes) -> tuple[str, ...]:
        """The dims with ``AXES`` replaced by ``axes`` (names, in order)."""
        return tuple(d for dim in self.dims for d in (axes if dim == AXES else (dim,)))


PER_DEVICE = ("scheme", AXES, "topology", "device")
PER_SERVER = ("scheme", AXES, "topology", "server")
PER_SOLVE = ("scheme", AXES, "topology")

VARIABLES = (
    Variable("association", PER_DEVICE, "int32", "1",
             "index of the ES the MD offloads to, -1 if none"),
    Variable("split", PER_DEVICE, "int32", "layers",
             "split point α: layers run on the MD, -1 if idle"),
    Variable("crbs_bought", PER_DEVICE, "int32", "CRBs", "CRBs the MD buys"),
    Variable("rrbs_bought", PER_DEVICE, "int32", "RRBs", "RRBs the MD buys"),
    Variable("device_utility", PER_DEVICE, "float", "utility",
             "MD utility, eq. (10), at the final prices; 0 if idle"),
    Variable("cycle_device_utility", PER_DEVICE, "float", "utility",
             "MD utility, eq. (10), averaged over the states of the cycle the prices end "
             "in (status 1); the final prices' otherwise"),
    Variable("delay", PER_DEVICE, "float", "s",
             "mean service delay T, eq. (9); NaN if idle"),
    Variable("arrival_rate", (AXES, "topology", "device"), "float", "tasks/s",
             "task arrival rate λ_m"),
    Variable("device_active", (AXES, "topology", "device"), "bool", "1",
             "the MD exists (False: padding)"),
    Variable("model", ("topology", "device"), "int8", "1",
             "index of the MD's DNN in the models attribute"),
    Variable("price_crb", PER_SERVER, "float", "utility/s per CRB", "final CRB price g^(c)"),
    Variable("price_rrb", PER_SERVER, "float", "utility/s per RRB", "final RRB price g^(r)"),
    Variable("server_utility", PER_SERVER, "float", "utility",
             "ES utility, eq. (11), at the final prices"),
    Variable("cycle_server_utility", PER_SERVER, "float", "utility",
             "ES utility, eq. (11), averaged over the states of the cycle the prices end "
             "in (status 1); the final prices' otherwise"),
    Variable("crbs_sold", PER_SERVER, "int32", "CRBs", "CRBs the ES sells"),
    Variable("rrbs_sold", PER_SERVER, "int32", "RRBs", "RRBs the ES sells"),
    Variable("server_active", (AXES, "topology", "server"), "bool", "1",
             "the ES exists (False: padding)"),
    Variable("rounds", PER_SOLVE, "int32", "rounds", "rounds of the leader rule played"),
    Variable("status", PER_SOLVE, "int8", "1",
             "0 converged, 1 cycle, 2 round limit, 4 no equilibrium (enumerate)"),
    Variable("converged", PER_SOLVE, "bool", "1",
             "the price game converged (enumerate: found an equilibrium)"),
    Variable("cycle_length", PER_SOLVE, "int32", "rounds",
             "rounds of the cycle the prices end in (status 1), else 0"),
    Variable("equilibria", PER_SOLVE, "int32", "1",
             "price profiles on the grid that are equilibria (enumerate), else -1"),
    Variable("server_regret", PER_SERVER, "float", "utility",
             "largest gain of the ES moving its price anywhere on its grid, the others' "
             "fixed (0 at its best price; a lower bound with separate prices)"),
    Variable("certificate", PER_SOLVE, "float", "utility",
             "largest gain of a unilateral deviation of any MD or ES, ES prices on the "
             "whole grid (0 at equilibrium)"),
    Variable("local_certificate", PER_SOLVE, "float", "utility",
             "largest gain of a unilateral deviation, ES prices moved by ±Δ only"),
)  # fmt: skip
SCHEMA = {variable.name: variable for variable in VARIABLES}
