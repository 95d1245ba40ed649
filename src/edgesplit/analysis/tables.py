"""The summary and paired comparisons as text: aligned columns, Markdown or CSV."""

from __future__ import annotations

from enum import Enum

import pandas as pd
import xarray as xr

from edgesplit.analysis.statistics import show_label


class TableFormat(Enum):
    TEXT = "text"  # aligned columns for a terminal
    MARKDOWN = "markdown"
    CSV = "csv"  # every column of the Dataset at full precision, for spreadsheets


def summary_table(stats: xr.Dataset, form: TableFormat = TableFormat.TEXT) -> str:
    """:func:`~edgesplit.analysis.statistics.summary`'s Dataset as a table: a row per
    scheme and grid point."""
    if form is TableFormat.CSV:
        return _csv(stats)
    level = f"{stats.attrs['confidence']:.0%}"
    header = [
        "MD utility", f"{level} CI", "ES utility", f"{level} CI", "converged",
        "equilibrium", f"{level} CI", "ES regret", "idle MDs",
    ]  # fmt: skip

    def cells(r) -> list[str]:
        return [
            f"{r['md_utility']:.4f}", _interval(r, "md_utility", "{:.4f}"),
            f"{r['es_utility']:.4f}", _interval(r, "es_utility", "{:.4f}"),
            f"{r['converged']:.1%}", f"{r['equilibrium']:.1%}",
            _interval(r, "equilibrium", "{:.1%}"), f"{r['es_regret']:.4f}", f"{r['idle']:.1%}",
        ]  # fmt: skip

    note = (
        f"{stats.attrs['topologies']} of {stats.attrs['of']} topologies per point. CI: "
        f"{level} confidence intervals, Student t over topologies for means, Wilson for "
        "shares of games; equilibrium: certificate <= min_gain (every unilateral "
        "deviation, ES prices on the whole grid); idle MDs: mean share of a topology's "
        "MDs that neither run locally nor offload."
    )
    return _table(stats, header, cells, form, note)


def comparison_table(result: xr.Dataset, form: TableFormat = TableFormat.TEXT) -> str:
    """:func:`~edgesplit.analysis.statistics.compare`'s Dataset as a table: a row per
    label compared and grid point."""
    if form is TableFormat.CSV:
        return _csv(result)
    level = f"{result.attrs['confidence']:.0%}"
    header = ["difference", f"{level} CI", "n", "p-value"]

    def cells(r) -> list[str]:
        return [
            f"{r['difference']:+.4f}", _interval(r, "", "{:+.4f}"), str(int(r["n"])),
            _p_value(r["p_value"]),
        ]  # fmt: skip

    note = (
        f"{result.attrs['variable']}: each {result.attrs['along']} minus "
        f"{result.attrs['baseline']} on the same topologies, mean over topologies; CI: "
        f"{result.attrs['interval']}; p-value: {result.attrs['p_value']}."
    )
    return _table(result, header, cells, form, note)


def comparison_tables(results: list[xr.Dataset], form: TableFormat = TableFormat.TEXT) -> str:
    """Several comparisons (of several variables) as tables, one after another; as CSV,
    one table with the variable a column of its own."""
    if form is not TableFormat.CSV:
        return "\n".join(comparison_table(result, form) for result in results)
    frames = [
        result.to_dataframe().reset_index().assign(variable=result.attrs["variable"])
        for result in results
    ]
    frame = pd.concat(frames)
    return frame[["variable", *frame.columns[:-1]]].to_csv(index=False, float_format="%.17g")


def _p_value(p: float) -> str:
    """A p-value in two significant digits; below float64's range it is no longer 0."""
    return "< 1e-300" if p == 0 else f"{p:.2g}"


def _interval(row, name: str, number: str) -> str:
    low, high = (row[f"{name}_{end}" if name else end] for end in ("low", "high"))
    return f"[{number.format(low)}, {number.format(high)}]"


def _table(data: xr.Dataset, header, cells, form: TableFormat, note: str) -> str:
    keys = list(data.dims)
    frame = data.to_dataframe().reset_index()
    rows = [[show_label(r[k]) for k in keys] + cells(r) for r in frame.to_dict(orient="records")]
    header = [*keys, *header]
    if form is TableFormat.MARKDOWN:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines) + f"\n\n{note}\n"
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines) + f"\n{note}\n"


def _csv(data: xr.Dataset) -> str:
    return data.to_dataframe().reset_index().to_csv(index=False, float_format="%.17g")
