"""Figures of a store: the paper's two panels and what judges them.

One figure, drawn from any store (a slice of it where it sweeps more than one
parameter): (a) mean MD utility and (b) mean ES utility against the swept parameter,
(c) the share of games at an equilibrium on the grid and (d) the mean ES regret, each
with its confidence band; with a baseline, (e, f) the paired differences of the MD and
ES utility from it, with their intervals: the panels that support or refute "A beats
B". Every scheme has one colour and every leader rule, update order and price kind one
line style, in every figure.
"""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

import numpy as np
import xarray as xr

from edgesplit.analysis.statistics import compare, select, show_label, summary
from edgesplit.config import Setup
from edgesplit.errors import InputError
from edgesplit.sweep.store import open_store

SCHEME_COLOURS = {
    "proposed": "#1f77b4",
    "edge_only": "#ff7f0e",
    "heuristic": "#2ca02c",
    "user_only": "#d62728",
}
"""Each scheme's colour, the same in every figure (matplotlib's first four)."""

SETTING_STYLES = {
    "leader": {"local": "-", "best_response": "--", "enumerate": ":"},
    "update": {"simultaneous": "-", "sequential": "-."},
    "joint_price": {True: "-", False: (0, (1, 1))},
}
"""Each game setting's line style per value, the same in every figure."""

AXIS_LABELS = {
    "mean_arrival_rate": "mean arrival rate λ (tasks/s)",
    "num_devices": "number of MDs",
    "num_servers": "number of ESs",
    "price_step": "price step Δ (utility/s per block)",
    "max_price": "maximum price (utility/s per block)",
}
"""Axis labels of the parameters most often swept; others are named after the
parameter and its unit."""

DIFFERENCES = (("md_utility", "device_utility"), ("es_utility", "server_utility"))
"""The summary's utilities and the variables their paired differences are taken of."""

PANELS = (
    ("md_utility", "(a) mean MD utility", "utility (eq. 10)"),
    ("es_utility", "(b) mean ES utility", "utility (eq. 11)"),
    ("equilibrium", "(c) games at an equilibrium on the grid", "share of games"),
    ("es_regret", "(d) mean ES regret on the grid", "utility"),
)


def plot(
    store: xr.Dataset | str | os.PathLike,
    *,
    baseline=None,
    along: str = "scheme",
    confidence: float = 0.95,
    **sel,
):
    """The store's figure (see the module's docstring) as a matplotlib Figure.

    ``store``: a Dataset from :func:`~edgesplit.sweep.store.open_store` or a store's
    path. ``sel``: one label of each dim to slice at (``leader="best_response"``,
    ``num_devices=20``), so that one swept parameter is left for the x axis.
    ``baseline``: a label of ``along`` (default: a scheme) to add the paired
    differences from (:func:`~edgesplit.analysis.statistics.compare`).
    """
    figure_class = _figure_class()
    ds = open_store(store) if isinstance(store, str | os.PathLike) else store
    ds = select(ds, **sel)
    stats = summary(ds, confidence)
    x = _x_axis(stats)
    differences = None
    if baseline is not None:
        differences = {
            name: compare(ds, variable, baseline, along=along, confidence=confidence)
            for name, variable in DIFFERENCES
        }
    columns = 3 if differences else 2
    figure = figure_class(figsize=(5.2 * columns, 7.6), layout="constrained")
    grid = figure.subplots(2, columns, squeeze=False)
    panels = [grid[0, 0], grid[0, 1], grid[1, 0], grid[1, 1]]
    for panel, (name, title, unit) in zip(panels, PANELS, strict=True):
        _draw(panel, stats, name, x)
        panel.set(title=title, ylabel=unit)
        if name == "equilibrium":
            panel.set_ylim(-0.03, 1.03)
            if stats.equilibrium.isnull().all():
                panel.text(0.5, 0.5, "no grid certificate in this store", ha="center",
                           transform=panel.transAxes)  # fmt: skip
    if differences:
        shown = show_label(differences["md_utility"].attrs["baseline"])
        for row, (name, result) in enumerate(differences.items()):
            panel = grid[row, 2]
            _draw(panel, result, "difference", x, bands=("low", "high"))
            panel.axhline(0.0, color="black", lw=0.8)
            what = "MD" if name == "md_utility" else "ES"
            panel.set(
                title=f"({'ef'[row]}) {what} utility minus {shown}, paired",
                ylabel=f"difference of mean {what} utility",
            )
    for panel in grid.flat:
        _x_ticks(panel, stats, x)
        panel.grid(alpha=0.3)
    handles, labels = grid[0, 0].get_legend_handles_labels()
    grid[0, 0].legend(handles, labels, fontsize=8)
    level = f"{confidence:.0%}"
    where = ", ".join(f"{k} = {show_label(v)}" for k, v in sel.items())
    figure.suptitle(
        f"{ds.attrs.get('title', '')}{f' ({where})' if where else ''}: "
        f"{stats.attrs['topologies']} topologies per point; bands: {level} intervals "
        "(Student t for means and paired differences, Wilson for shares)",
        fontsize=9,
    )
    return figure


def _figure_class():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise InputError("plot", "needs matplotlib: pip install 'edgesplit[plot]'") from None
    return Figure


def _x_axis(stats: xr.Dataset) -> str | None:
    """The dim along the x axis: the one swept parameter left, else the first game
    setting left, else none (one point)."""
    setup = {f.name for f in fields(Setup)}
    numeric = [d for d in stats.dims if d in setup]
    if len(numeric) > 1:
        rest = ", ".join(numeric[1:])
        example = show_label(stats[numeric[1]].values[0])
        raise InputError(
            "--sel", f"a figure has one x axis, but the store sweeps {', '.join(numeric)}: "
            f"select one value of {rest} (e.g. --sel {numeric[1]}={example})",
        )  # fmt: skip
    if numeric:
        return numeric[0]
    settings = [d for d in stats.dims if d != "scheme"]
    return settings[0] if settings else None


def _series(data: xr.Dataset, x: str | None):
    """Each line of a panel: its label, colour, style, and the data along ``x``."""
    keys = [d for d in data.dims if d != x]
    frame = data.to_dataframe().reset_index()
    groups = frame.groupby(keys, sort=False) if keys else [((), frame)]
    for values, rows in groups:
        values = values if isinstance(values, tuple) else (values,)
        labels = dict(zip(keys, values, strict=True))
        colour = SCHEME_COLOURS.get(str(labels.get("scheme")), "#7f7f7f")
        style = "-"
        for setting, styles in SETTING_STYLES.items():
            if setting in labels:
                style = styles.get(labels[setting], style)
        name = ", ".join(show_label(v).replace("_", "-") for v in values) or "all"
        yield name, colour, style, rows


def _draw(panel, data: xr.Dataset, name: str, x: str | None, bands=None) -> None:
    low, high = bands or (f"{name}_low", f"{name}_high")
    for label, colour, style, rows in _series(data, x):
        position = _positions(data, x, rows)
        panel.plot(position, rows[name], color=colour, linestyle=style, marker="o",
                   markersize=3, label=label)  # fmt: skip
        panel.fill_between(position, rows[low], rows[high], color=colour, alpha=0.18, lw=0)


def _positions(data: xr.Dataset, x: str | None, rows) -> np.ndarray:
    """Numbers along the x axis: the parameter's values, or the labels' places."""
    if x is None:
        return np.zeros(len(rows))
    if np.issubdtype(data[x].dtype, np.number) and data[x].dtype != bool:
        return rows[x].to_numpy(float)
    labels = [show_label(v) for v in data[x].values]
    return np.array([labels.index(show_label(v)) for v in rows[x]], float)


def _x_ticks(panel, stats: xr.Dataset, x: str | None) -> None:
    if x is None:
        panel.set_xticks([0], ["all"])
        return
    if np.issubdtype(stats[x].dtype, np.number) and stats[x].dtype != bool:
        panel.set_xlabel(axis_label(x))
        return
    labels = [show_label(v) for v in stats[x].values]
    panel.set_xticks(range(len(labels)), labels)
    panel.set_xlabel(x.replace("_", " "))


def axis_label(name: str) -> str:
    """A swept parameter's axis label, with its unit where it has one."""
    if name in AXIS_LABELS:
        return AXIS_LABELS[name]
    units = {f.name: f.metadata["unit"] for f in fields(Setup)}
    unit = units.get(name, "")
    return name.replace("_", " ") + (f" ({unit})" if unit and unit != "1" else "")


def save_figure(figure, path: str | Path) -> None:
    """Write ``figure`` to ``path`` (its format from the suffix) under a temporary name
    beside it, then rename: a figure interrupted mid-write never replaces the last one."""
    path = Path(path)
    staging = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        figure.savefig(staging, dpi=150, format=path.suffix.lstrip(".").lower() or None)
        os.replace(staging, path)
    except OSError as err:
        raise InputError(str(path), f"cannot write: {err.strerror}") from None
    except ValueError as err:  # an unknown image format
        raise InputError(str(path), str(err).split("\n", 1)[0]) from None
    finally:
        staging.unlink(missing_ok=True)


SERVER_COLOURS = ("#9467bd", "#8c564b", "#17becf", "#bcbd22", "#e377c2", "#7f7f7f")
"""Servers' colours in a trace, apart from the schemes'; repeated past six servers."""


def trace_figure(trace):
    """A traced game (:func:`~edgesplit.analysis.trace.trace`) as a Figure: each server's
    price, utility and buyers round by round, the fast-forwarded descent and the cycle
    the game ends in shaded. Where the descent is most of the game, it gets a narrow
    column of its own and the rounds after it the rest (a broken round axis)."""
    count = len(trace.price_crb)
    descent = np.flatnonzero(trace.fast_forwarded)
    split = len(descent) > 0.4 * count and count - descent[-1] > 1
    figure = _figure_class()(figsize=(10, 8), layout="constrained")
    grid = figure.subplots(
        3, 2 if split else 1, squeeze=False, width_ratios=[1, 3] if split else None
    )
    if split:  # the utilities and buyers on one scale; the prices after it on their own
        grid[1, 0].sharey(grid[1, 1])
        grid[2, 0].sharey(grid[2, 1])
    ranges = [(0, descent[-1] + 1), (max(descent[-1] - 2, 0), count)] if split else [(0, count)]
    for column, (start, end) in enumerate(ranges):
        _draw_trace(grid[:, column], trace, np.arange(start, end), legend=column == len(ranges) - 1)
        grid[2, column].set_xlabel("round")
    if split:
        grid[0, 0].set_title("the descent: nobody buys", fontsize=9)
        grid[0, 1].set_title("after it", fontsize=9)
    grid[0, 0].set_ylabel("price (utility/s per block)")
    grid[1, 0].set_ylabel("ES utility (eq. 11)")
    grid[2, 0].set_ylabel("MDs")
    figure.suptitle(
        f"{trace.scheme.label}, leader {trace.settings.leader} ({trace.settings.update}): "
        f"{trace.status.label} after {trace.rounds} rounds",
        fontsize=10,
    )
    return figure


def _draw_trace(panels, trace, rounds: np.ndarray, legend: bool) -> None:
    """The trace's rounds ``rounds`` in a column of three panels."""
    for s in range(trace.price_crb.shape[1]):
        colour = SERVER_COLOURS[s % len(SERVER_COLOURS)]
        joint = trace.settings.joint_price
        panels[0].step(rounds, trace.price_crb[rounds, s], where="post", color=colour,
                       label=f"ES{s}" + ("" if joint else " CRB"))  # fmt: skip
        if not joint:
            panels[0].step(rounds, trace.price_rrb[rounds, s], where="post", color=colour,
                           linestyle="--", label=f"ES{s} RRB")  # fmt: skip
        panels[1].plot(rounds, trace.server_utility[rounds, s], color=colour, label=f"ES{s}")
        panels[2].plot(rounds, trace.buyers[rounds, s], color=colour, label=f"buying from ES{s}")
    panels[2].plot(rounds, trace.local[rounds], color="black", linestyle=":",
                   label="running locally")  # fmt: skip
    panels[2].plot(rounds, trace.idle[rounds], color="grey", linestyle="--", label="idle")
    shaded = (
        (trace.fast_forwarded, "#dddddd", "fast-forwarded: nobody buys"),
        (trace.in_cycle, "#f4cccc", f"the cycle of {trace.cycle_length} rounds"),
    )
    for panel in panels:
        for marked, colour, label in shaded:
            where = np.intersect1d(np.flatnonzero(marked), rounds)
            if len(where):
                panel.axvspan(where[0] - 1, where[-1], color=colour, lw=0,
                              label=label if panel is panels[0] else None)  # fmt: skip
        panel.set_xlim(rounds[0], rounds[-1])
        panel.grid(alpha=0.3)
        if legend:
            panel.legend(fontsize=8, loc="best")
