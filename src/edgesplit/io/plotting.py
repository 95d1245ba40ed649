"""The paper's figures from a sweep store: (a) MD and (b) ES utility against the swept axis."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

from edgesplit.errors import InputError
from edgesplit.io.analysis import summary, swept_axes

PANELS = (
    ("md_utility", "(a) Average utility of the MDs"),
    ("es_utility", "(b) Average utility of the ESs"),
)


def plot_store(ds: xr.Dataset, path: str | Path) -> None:
    """Draw one line per scheme with its 95% confidence band, and save to ``path``."""
    try:
        import matplotlib
    except ImportError:
        raise InputError("plot", "needs matplotlib: pip install 'edgesplit[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = swept_axes(ds)
    if len(axes) != 1:
        raise InputError("store", f"plot needs exactly one swept axis, found {axes or 'none'}")
    axis = axes[0]
    stats = summary(ds)
    x = stats[axis].values
    units = ds[axis].attrs.get("units", "")
    figure, panels = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for panel, (name, title) in zip(panels, PANELS, strict=True):
        for scheme in stats.scheme.values:
            mean = stats[name].sel(scheme=scheme).values
            half = stats[f"{name}_ci95"].sel(scheme=scheme).values
            (line,) = panel.plot(
                x, mean, marker="o", markersize=3, label=str(scheme).replace("_", "-")
            )
            panel.fill_between(x, mean - half, mean + half, color=line.get_color(), alpha=0.2, lw=0)
        panel.set_title(title)
        panel.set_xlabel(f"{axis.replace('_', ' ')}" + (f" ({units})" if units else ""))
        panel.set_ylabel("utility")
        panel.grid(alpha=0.3)
    panels[0].legend()
    figure.suptitle(
        f"{ds.attrs.get('title', '')}: {stats.attrs['topologies']} topologies per point, 95% CI",
        fontsize=10,
    )
    try:
        figure.savefig(path, dpi=150)
    except OSError as err:
        raise InputError(str(path), f"cannot write: {err.strerror}") from None
    finally:
        plt.close(figure)
