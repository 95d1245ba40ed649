"""One topology of a store as a scenario file: its devices, servers, links and models,
and the store's game settings at one grid point, so that ``edgesplit solve`` plays that
very game again, or anyone else can.

The topology is drawn again from the store's sweep (topology t from
``fold_in(key(seed), t)``, as the sweep drew it), by the sweep's own sampling program,
at the selected point; padding (when the numbers of devices or servers are swept) is
left out. Every number is written as the float64 it is (JSON numbers round-trip), so a
float64 store's game is the same game: ``edgesplit solve`` on the file gives the
stored prices, choices and utilities (tested, floats to the last bit for stores made on
one device).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import jax
import numpy as np
import xarray as xr

from edgesplit.analysis.statistics import label_of, show_label
from edgesplit.errors import InputError
from edgesplit.model.dnn import builtin_model
from edgesplit.sweep.chunks import chunk_program
from edgesplit.sweep.identity import stored_sweep
from edgesplit.sweep.spec import Sweep
from edgesplit.sweep.store import open_store


def scenario_of(store: xr.Dataset | str | os.PathLike, topology: int, **sel) -> dict:
    """Topology ``topology`` of ``store`` (a store's path, or a Dataset from
    :func:`~edgesplit.sweep.store.open_store`) at the grid point ``sel`` (one label of
    each swept dim: ``mean_arrival_rate=10``, ``leader="best_response"``; a dim with one
    label may be left out), as a scenario document for
    :func:`~edgesplit.io.scenario_file.parse_scenario` or ``edgesplit solve``. Its
    ``"source"`` says where it came from. The scheme is chosen when solving."""
    ds = open_store(store) if isinstance(store, str | os.PathLike) else store
    sweep = stored_sweep(ds.attrs)
    if isinstance(topology, bool) or not isinstance(topology, int | np.integer):
        raise InputError("--topology", f"must be an integer, got {topology!r}")
    if not 0 <= topology < sweep.topologies:
        raise InputError(
            "--topology", f"must be in 0..{sweep.topologies - 1} (the store's topologies), "
            f"got {topology}",
        )  # fmt: skip
    if "scheme" in sel:
        raise InputError("--sel scheme", "a scenario holds no scheme: give it to solve (--scheme)")
    unknown = sorted(set(sel) - set(sweep.point_axes))
    if unknown:
        swept = ", ".join(sweep.point_axes) or "none"
        raise InputError(f"--sel {unknown[0]}", f"is not a swept dim of the store (swept: {swept})")
    point = {}
    for axis, values in sweep.point_axes.items():
        if axis in sel:
            point[axis] = label_of(ds, axis, sel[axis], f"--sel {axis}")
        elif len(values) == 1:
            point[axis] = values[0]
        else:
            shown = ", ".join(show_label(v) for v in ds[axis].values)
            raise InputError("--sel", f"the store sweeps {axis}: choose one of {shown}")
    drawn = _draw(sweep, topology, point)
    game = sweep.game.replace(**{k: point[k] for k in sweep.game_axes})
    document = _document(sweep, drawn, game)
    document["source"] = {
        "store_title": ds.attrs.get("title", ""),
        "sweep_name": ds.attrs.get("sweep_name", sweep.name),
        "topology": int(topology),
        "point": {k: _plain(v) for k, v in point.items()},
        "seed": sweep.seed,
        "precision": sweep.precision,
    }
    return document


def _draw(sweep: Sweep, topology: int, point: dict):
    """The topology as the sweep's sampling program draws it at ``point``, unbatched."""
    setup_index = int(
        np.ravel_multi_index(
            tuple(list(values).index(point[axis]) for axis, values in sweep.axes.items()),
            tuple(len(values) for values in sweep.axes.values()),
        )
    ) if sweep.axes else 0  # fmt: skip
    sample, _, _ = chunk_program(sweep, game_lanes=1)
    with jax.enable_x64(sweep.precision == "float64"):
        drawn = jax.jit(sample)(np.array([topology]))
        return jax.tree.map(lambda x: np.asarray(x[0, setup_index]), drawn)


def _document(sweep: Sweep, drawn, game) -> dict:
    scenario = drawn.scenario
    devices, servers = scenario.devices, scenario.servers
    names = [model if isinstance(model, str) else model.name for model in sweep.setup.models]
    models = {}
    for name, model in zip(names, sweep.setup.models, strict=True):
        profile = builtin_model(model) if isinstance(model, str) else model
        models[name] = {
            "input_bits": float(profile.input_bits),
            "layers": [
                {"name": layer, "cycles": float(cycles), "output_bits": float(bits)}
                for layer, cycles, bits in zip(
                    profile.layer_names, profile.layer_cycles, profile.output_bits, strict=True
                )
            ],
        }
    real_devices = np.flatnonzero(devices.active)
    real_servers = np.flatnonzero(servers.active)
    return {
        "models": models,
        "devices": [
            {
                "model": names[int(drawn.model[m])],
                **{
                    key: float(getattr(devices, key)[m])
                    for key in (
                        "cpu_hz",
                        "arrival_rate",
                        "reward",
                        "delay_weight",
                        "payment_weight",
                    )
                },
            }
            for m in real_devices
        ],
        "servers": [
            {
                "crb_hz": float(servers.crb_hz[s]),
                "crbs": int(servers.crbs[s]),
                "rrbs": int(servers.rrbs[s]),
                **{
                    key: float(getattr(servers, key)[s])
                    for key in ("cost_crb", "cost_rrb", "max_price", "price_step", "result_delay")
                },
            }
            for s in real_servers
        ],
        "rate_per_rrb": [
            [float(scenario.rate_per_rrb[m, s]) for s in real_servers] for m in real_devices
        ],
        "game": {k: _plain(v) for k, v in dataclasses.asdict(game).items()},
    }


def _plain(value):
    """A coordinate label as a JSON value."""
    return value.item() if hasattr(value, "item") else value


def write_scenario(document: dict, path: str | Path) -> None:
    """Write a scenario document as JSON under a temporary name beside ``path``, then
    rename, so an interrupted write never leaves half a file."""
    path = Path(path)
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        staging.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")
        os.replace(staging, path)
    except OSError as err:
        raise InputError(str(path), f"cannot write: {err.strerror}") from None
    finally:
        staging.unlink(missing_ok=True)
