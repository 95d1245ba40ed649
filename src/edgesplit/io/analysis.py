"""Statistics of a sweep store: mean utilities with 95% confidence intervals."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import xarray as xr

from edgesplit.errors import InputError
from edgesplit.sweep.store import finished

RESULT_DIMS = ("scheme", "topology", "device", "server", "chunk")
Z95 = NormalDist().inv_cdf(0.975)


def swept_axes(ds: xr.Dataset) -> list[str]:
    return [d for d in ds.device_utility.dims if d not in RESULT_DIMS]


def summary(ds: xr.Dataset) -> xr.Dataset:
    """Per scheme and grid point: mean MD and ES utility across topologies, with the
    half-width of a 95% confidence interval (normal approximation, sample s.d.); the share
    of solves that converged, and of those that are equilibria on the price grid
    (certificate <= the game's min_gain); and the mean ES regret.

    A topology's MD utility is the mean over its real devices (padding is NaN and
    skipped), its ES utility and regret the means over its real servers.
    """
    ds = finished(ds)
    count = ds.sizes["topology"]
    if not count:
        raise InputError("store", "has no finished chunk yet")
    per_topology = {
        "md_utility": ds.device_utility.mean("device"),
        "es_utility": ds.server_utility.mean("server"),
    }
    out = {}
    for name, values in per_topology.items():
        out[name] = values.mean("topology")
        spread = values.std("topology", ddof=1) if count > 1 else xr.full_like(out[name], np.nan)
        out[f"{name}_ci95"] = Z95 * spread / math.sqrt(count)
    out["converged"] = ds.converged.mean("topology")
    certified = ds.certificate.notnull()  # NaN without the grid certificate
    out["equilibrium"] = (ds.certificate <= ds.attrs["min_gain"]).where(certified).mean("topology")
    out["es_regret"] = ds.server_regret.mean("server").mean("topology")
    result = xr.Dataset(out).compute()
    result.attrs["topologies"] = count
    result.attrs["of"] = int(ds.attrs["topologies"])
    return result


def summary_table(ds: xr.Dataset, markdown: bool = False) -> str:
    """The summary as a text table: one row per scheme and grid point."""
    stats = summary(ds)
    axes = swept_axes(ds)
    header = [
        "scheme", *axes, "MD utility", "±95%", "ES utility", "±95%", "converged",
        "equilibrium", "ES regret",
    ]  # fmt: skip
    rows = []
    frame = stats.to_dataframe().reset_index()
    for record in frame.itertuples(index=False):
        r = record._asdict()
        rows.append(
            [str(r["scheme"])]
            + [str(r[a]) if isinstance(r[a], str | bool | np.bool_) else f"{r[a]:g}" for a in axes]
            + [f"{r['md_utility']:.4f}", f"{r['md_utility_ci95']:.4f}"]
            + [f"{r['es_utility']:.4f}", f"{r['es_utility_ci95']:.4f}", f"{r['converged']:.1%}"]
            + [f"{r['equilibrium']:.1%}", f"{r['es_regret']:.4f}"]
        )
    note = f"{stats.attrs['topologies']} of {stats.attrs['of']} topologies per point"
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines) + (
            f"\n\n{note}; ±95%: half-width of a 95% confidence interval; equilibrium: "
            "certificate <= min_gain over every unilateral deviation, ES prices on the whole "
            "grid.\n"
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines) + f"\n{note}\n"
