"""Statistics of a sweep's results: paired comparisons and the summary, as Datasets.

Every scheme, rule and grid point of a sweep sees the same topologies (common random
numbers), so two of them are compared *paired*: per topology, one's value minus the
other's, and an interval on the mean of those differences. That interval is much
narrower than two overlapping unpaired bands suggest, because most of the spread
between topologies is shared.

A topology's value of a variable is the mean over its real devices (per-device
variables), the mean over its real servers (per-server variables), or the value itself
(per-solve variables such as ``certificate``). Padding never counts, and a device
whose value is undefined (the ``delay`` of an idle device, NaN) is left out of its
topology's mean.
"""

from __future__ import annotations

import math
from enum import Enum

import numpy as np
import xarray as xr
from scipy import stats

from edgesplit.errors import InputError
from edgesplit.sweep.schema import SCHEMA
from edgesplit.sweep.store import finished, with_equilibrium
from edgesplit.validation import number

NOT_COMPARABLE = ("topology", "device", "server", "chunk")
"""Dims a comparison cannot run along: those a topology's value is taken over."""


class Interval(Enum):
    """How :func:`compare` makes its confidence interval on the mean paired difference."""

    T = "t"  # Student t on the paired differences
    BOOTSTRAP = "bootstrap"  # percentile interval of the mean, topologies resampled

    @property
    def description(self) -> str:
        if self is Interval.T:
            return "paired Student t interval on the per-topology differences"
        return "paired percentile bootstrap interval of the mean per-topology difference"


def per_topology(ds: xr.Dataset, variable: str) -> xr.DataArray:
    """Each topology's value of ``variable`` (see the module's docstring), as floats."""
    if variable not in ds.data_vars or "topology" not in ds[variable].dims:
        known = ", ".join(name for name in ds.data_vars if "topology" in ds[name].dims)
        raise InputError("variable", f"unknown variable {variable!r} (known: {known})")
    values = ds[variable].astype(float)
    if "device" in values.dims:
        values = values.where(ds.device_active.astype(bool)).mean("device")
    if "server" in values.dims:
        values = values.where(ds.server_active.astype(bool)).mean("server")
    return values


def label_of(ds: xr.Dataset, dim: str, value, field: str):
    """The coordinate label of ``dim`` that ``value`` names: the label itself, or its text
    as a command line gives it (``true``, ``10``, ``proposed``); an InputError naming
    ``field`` lists the labels otherwise."""
    if dim not in ds.dims or dim not in ds.coords:
        raise InputError(field, f"the store has no dim {dim!r} (dims: {', '.join(ds.dims)})")
    labels = ds[dim].values
    for label in labels:
        if _same_label(label, value):
            return label.item() if hasattr(label, "item") else label
    shown = ", ".join(show_label(label) for label in labels)
    raise InputError(field, f"{dim} has no label {value!r} (labels: {shown})")


def _same_label(label, value) -> bool:
    if isinstance(value, str) and not isinstance(label, str | np.str_):
        text = value.strip().lower()
        if isinstance(label, bool | np.bool_):
            return text in ("true", "false") and (text == "true") == bool(label)
        try:
            return float(text) == float(label)
        except ValueError:
            return False
    if isinstance(label, bool | np.bool_) != isinstance(value, bool | np.bool_):
        return False
    return bool(label == value)


def show_label(label) -> str:
    if isinstance(label, bool | np.bool_):
        return str(bool(label)).lower()
    if isinstance(label, float | np.floating):
        return f"{float(label):g}"
    return str(label)


def select(ds: xr.Dataset, **labels) -> xr.Dataset:
    """``ds`` at one label of each named dim (labels as in :func:`label_of`), the dim
    dropped; an InputError names a dim or label the store does not have."""
    for dim, value in labels.items():
        if dim in NOT_COMPARABLE:
            raise InputError("--sel", f"selects a label of a swept dim or scheme, not {dim!r}")
        ds = ds.sel({dim: label_of(ds, dim, value, f"--sel {dim}")})
    return ds


def compare(
    ds: xr.Dataset,
    variable: str,
    baseline,
    *,
    along: str = "scheme",
    confidence: float = 0.95,
    method: Interval | str = Interval.T,
    resamples: int = 10_000,
    seed: int = 0,
) -> xr.Dataset:
    """Each label of ``along`` but ``baseline`` against ``baseline``, paired over the
    topologies, at every other point of the store.

    Returns a Dataset over ``along`` (every label but the baseline) and the store's other
    labelled dims, with:

    * ``difference``: the mean over topologies of the topology's value (see the module's
      docstring) minus the baseline's, on the same topology;
    * ``low``, ``high``: the ``confidence`` interval of that mean: Student t on the
      paired differences (``method="t"``), or the percentile bootstrap over topologies
      (``method="bootstrap"``, ``resamples`` resamples drawn from ``seed``);
    * ``n``: the paired topologies (finished, with both values defined);
    * ``p_value``: the two-sided paired t-test of a zero mean difference (whatever the
      interval's method).

    ``along`` may be any labelled dim: ``scheme``, ``leader``, ``update``,
    ``joint_price``, or a swept parameter. Only finished topologies count.
    """
    method = _method(method)
    confidence = confidence_level(confidence)
    if along in NOT_COMPARABLE:
        raise InputError("--along", f"must be a labelled dim such as scheme or leader, not {along}")
    if method is Interval.BOOTSTRAP:
        resamples = number(resamples, "resamples", at_least=100, integer=True)
        seed = number(seed, "seed", at_least=0, integer=True)
    ds = _finished(ds)
    values = per_topology(ds, variable)
    if along not in values.dims:
        dims = ", ".join(str(d) for d in values.dims)
        raise InputError("--along", f"{variable} does not vary along {along!r} (its dims: {dims})")
    base = label_of(ds, along, baseline, "--baseline")
    labels = values[along].values
    others = [i for i, label in enumerate(labels) if not _same_label(label, base)]
    if not others:
        raise InputError("--baseline", f"{along} has no label but {base!r} to compare with it")
    # By position: a list of boolean labels (joint_price) would select as a mask.
    at_base = next(i for i, label in enumerate(labels) if _same_label(label, base))
    differences = values.isel({along: others}) - values.isel({along: at_base})
    differences = differences.transpose(..., "topology")
    stat = _paired_statistics(differences.values, confidence)
    if method is Interval.BOOTSTRAP:
        stat["low"], stat["high"] = _bootstrap(differences.values, confidence, resamples, seed)
    dims = differences.dims[:-1]
    coords = {d: differences[d] for d in dims}
    result = xr.Dataset({name: (dims, value) for name, value in stat.items()}, coords=coords)
    units = SCHEMA[variable].units if variable in SCHEMA else ""
    for name in ("difference", "low", "high"):
        result[name].attrs["units"] = units
    result.attrs.update(
        variable=variable, along=along, baseline=show_label(base), confidence=confidence,
        method=method.value, interval=method.description,
        p_value="two-sided paired t-test of a zero mean difference",
    )  # fmt: skip
    if method is Interval.BOOTSTRAP:
        result.attrs.update(resamples=resamples, seed=seed)
    return result


def _method(method) -> Interval:
    try:
        return Interval(method.value if isinstance(method, Interval) else method)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in Interval)
        raise InputError("method", f"must be one of {choices}, got {method!r}") from None


def _finished(ds: xr.Dataset) -> xr.Dataset:
    """Only the finished topologies, with ``equilibrium``, for a Dataset from
    :func:`~edgesplit.sweep.store.open_store` or :func:`~edgesplit.sweep.runner.run`
    (which say how many are in), or read as it is (``xr.open_zarr``)."""
    if "chunk_done" in ds.data_vars and "finished_topologies" not in ds.attrs:
        return finished(ds)
    certified = "certificate" in ds.data_vars and "min_gain" in ds.attrs
    return with_equilibrium(ds) if certified and "equilibrium" not in ds.data_vars else ds


def _paired_statistics(differences: np.ndarray, confidence: float) -> dict[str, np.ndarray]:
    """The mean, t interval, count and two-sided t-test p-value of the differences along
    the last axis, NaN entries (a topology without both values) left out."""
    valid = ~np.isnan(differences)
    n = valid.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.nansum(differences, axis=-1) / np.maximum(n, 1), np.nan)
        squares = np.nansum((differences - mean[..., None]) ** 2, axis=-1)
        error = np.sqrt(squares / np.maximum(n - 1, 1) / np.maximum(n, 1))
        error = np.where(n > 1, error, np.nan)
        quantile = stats.t.ppf((1 + confidence) / 2, np.maximum(n - 1, 1))
        t = mean / error
        p = np.where(
            error > 0,
            2 * stats.t.sf(np.abs(t), np.maximum(n - 1, 1)),
            np.where(mean == 0, 1.0, 0.0),  # every pair equal: no doubt either way
        )
    p = np.where(n > 1, p, np.nan)
    return {
        "difference": mean,
        "low": mean - quantile * error,
        "high": mean + quantile * error,
        "n": n.astype(np.int64),
        "p_value": p,
    }


def _bootstrap(differences: np.ndarray, confidence: float, resamples: int, seed: int):
    """The percentile bootstrap interval of the mean along the last axis, at each point:
    ``resamples`` resamples of its defined differences, drawn with replacement."""
    rng = np.random.default_rng(seed)
    flat = differences.reshape(-1, differences.shape[-1])
    low, high = np.full(len(flat), np.nan), np.full(len(flat), np.nan)
    tails = [(1 - confidence) / 2, (1 + confidence) / 2]
    for i, row in enumerate(flat):
        row = row[~np.isnan(row)]
        if len(row) < 2:
            continue
        means = np.concatenate(
            [
                row[rng.integers(0, len(row), (size, len(row)))].mean(axis=1)
                for size in _batches(resamples, len(row))
            ]
        )
        low[i], high[i] = np.quantile(means, tails)
    return low.reshape(differences.shape[:-1]), high.reshape(differences.shape[:-1])


def _batches(total: int, width: int, budget: int = 2**22) -> list[int]:
    """``total`` resamples in batches of at most ``budget`` drawn indices."""
    size = max(budget // max(width, 1), 1)
    return [min(size, total - start) for start in range(0, total, size)]


def wilson(successes, trials, confidence: float):
    """The Wilson score interval (low, high) of a share of ``successes`` in ``trials``
    independent trials; NaN without trials."""
    z = stats.norm.ppf((1 + confidence) / 2)
    successes, trials = np.asarray(successes, float), np.asarray(trials, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = successes / trials
        centre = (share + z * z / (2 * trials)) / (1 + z * z / trials)
        half = (
            z
            * np.sqrt(share * (1 - share) / trials + z * z / (4 * trials**2))
            / (1 + z * z / trials)
        )
    return centre - half, centre + half


def mean_interval(values: xr.DataArray, confidence: float):
    """Mean over topologies with its Student t interval (low, high), NaN left out."""
    stat = _paired_statistics(values.transpose(..., "topology").values, confidence)
    dims = [d for d in values.dims if d != "topology"]
    coords = {d: values[d] for d in dims}
    return tuple(xr.DataArray(stat[k], coords, dims) for k in ("difference", "low", "high"))


def summary(ds: xr.Dataset, confidence: float = 0.95) -> xr.Dataset:
    """Per scheme and grid point, over the finished topologies:

    * ``md_utility``, ``es_utility``: the mean of each topology's mean MD and ES utility
      (eqs. 10, 11, at the final prices), with ``*_low`` and ``*_high``, the Student t
      interval over topologies;
    * ``es_regret``: the mean of each topology's mean ES regret on the grid, with its t
      interval (NaN without the grid certificate);
    * ``converged``: the share of games whose leader rule converged (status 0), with its
      Wilson interval (games are independent: one per topology);
    * ``equilibrium``: the share of games whose outcome is an equilibrium on the grid
      (certificate <= ``min_gain``), of those with a certificate, with its Wilson
      interval;
    * ``idle``: the mean share of a topology's real MDs that neither run locally nor
      offload, with its t interval over topologies (the devices of one topology face
      the same prices, so they are not independent trials);
    * ``n``: the finished topologies.

    The user-only scheme plays no price game: its ``converged`` and ``equilibrium`` are
    trivially 100% (no ES sells, no MD can do better than its local option).
    """
    confidence = confidence_level(confidence)
    ds = _finished(ds)
    if not ds.sizes["topology"]:
        raise InputError("store", "has no finished chunk yet")
    out = {}
    means = {
        "md_utility": per_topology(ds, "device_utility"),
        "es_utility": per_topology(ds, "server_utility"),
        "es_regret": per_topology(ds, "server_regret"),
        "idle": (ds.split == -1).where(ds.device_active.astype(bool)).mean("device"),
    }
    for name, values in means.items():
        out[name], out[f"{name}_low"], out[f"{name}_high"] = mean_interval(values, confidence)
    shares = {"converged": ds.converged.astype(float), "equilibrium": ds.equilibrium}
    for name, values in shares.items():
        trials = values.notnull().sum("topology")
        successes = values.sum("topology")
        out[name] = successes / trials.where(trials > 0)
        low, high = wilson(successes, trials, confidence)
        out[f"{name}_low"], out[f"{name}_high"] = (out[name].copy(data=x) for x in (low, high))
    out["n"] = ds.converged.count("topology")
    result = xr.Dataset(out).compute()
    result.attrs.update(
        topologies=int(ds.sizes["topology"]),
        of=int(ds.attrs.get("topologies", ds.sizes["topology"])),
        confidence=confidence,
        means="mean over topologies, Student t interval",
        shares="share of games, Wilson score interval",
    )
    return result


def confidence_level(value) -> float:
    """A confidence level, checked: a number strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating):
        raise InputError("confidence", f"must be a number between 0 and 1, got {value!r}")
    if not (math.isfinite(value) and 0 < value < 1):
        raise InputError("confidence", f"must be between 0 and 1, got {value!r}")
    return float(value)
