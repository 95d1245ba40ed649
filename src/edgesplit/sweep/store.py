"""The Zarr store of a sweep: a template written once, then one region per finished chunk.

Layout (``xarray.open_zarr(path)`` is all a reader needs): dims ``scheme``, one dim per
swept parameter (named after it), ``topology``, ``device``, ``server``; Zarr chunks
span one sweep chunk of topologies and everything else, so each finished chunk is
written into its own chunk-aligned region and nothing is written twice.

Writing order, so that a crash never leaves a store that lies:

1. The template (dims, coordinates, attributes, empty variables) is built in a
   temporary folder beside the target and renamed into place: a store either has a
   complete template or does not exist.
2. A chunk's variables are written into their region and synced to disk, then
   ``chunk_done[i]`` is set.
   Unwritten Zarr chunks read as fill values, so ``chunk_done`` is the record of what
   holds results; a chunk killed mid-write is not marked and is solved again.

Padded devices and servers (when the number of devices or servers is swept) have
NaN in their float variables and are marked by ``device_active``/``server_active``,
so ``ds.device_utility.mean("device")`` averages over real devices only.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from dataclasses import fields
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

import edgesplit
from edgesplit.config import Setup
from edgesplit.errors import InputError
from edgesplit.sweep.faults import failpoint, trace
from edgesplit.sweep.schema import POINT, SCHEMA, VARIABLES
from edgesplit.sweep.spec import Sweep

FORMAT = "edgesplit-sweep-1"
"""Value of the ``edgesplit_format`` attribute that marks a store as ours."""


def dims_of(name: str, sweep: Sweep) -> tuple[str, ...]:
    """Variable ``name``'s dims in the store of ``sweep``."""
    return SCHEMA[name].dims_for(tuple(sweep.axes))


def _dtype(name: str, sweep: Sweep) -> np.dtype:
    kind = SCHEMA[name].dtype
    return np.dtype(sweep.precision if kind == "float" else kind)


def _shape(name: str, sweep: Sweep) -> tuple[int, ...]:
    sizes = {
        "scheme": len(sweep.schemes),
        "topology": sweep.topologies,
        "device": sweep.max_devices,
        "server": sweep.max_servers,
        **{axis: len(values) for axis, values in sweep.axes.items()},
    }
    return tuple(sizes[d] for d in dims_of(name, sweep))


def template(sweep: Sweep) -> xr.Dataset:
    """The empty dataset: coordinates, attributes and lazily-filled variables."""
    import dask.array as da

    units = {f.name: f.metadata["unit"] for f in fields(Setup)}
    coords = {
        "scheme": (
            "scheme",
            [s.label for s in sweep.schemes],
            _about("1", "proposed or a benchmark"),
        ),
        "topology": (
            "topology",
            np.arange(sweep.topologies),
            _about("1", "random topology; its key is fold_in(key(seed), topology)"),
        ),
        "device": ("device", np.arange(sweep.max_devices), _about("1", "MD index")),
        "server": ("server", np.arange(sweep.max_servers), _about("1", "ES index")),
    }
    for axis, values in sweep.axes.items():
        coords[axis] = (axis, np.asarray(values), _about(units[axis] or "1", f"swept {axis}"))
    data = {}
    for name, variable in SCHEMA.items():
        dims = dims_of(name, sweep)
        chunks = tuple(sweep.chunk if d == "topology" else -1 for d in dims)
        data[name] = xr.Variable(
            dims,
            da.zeros(_shape(name, sweep), dtype=_dtype(name, sweep), chunks=chunks),
            _about(variable.units, variable.long_name),
        )
    data["chunk_done"] = xr.Variable(
        ("chunk",),
        da.zeros(sweep.num_chunks, dtype=bool, chunks=1),
        {"long_name": "the chunk's results are written (the record a resumed run trusts)"},
    )
    return xr.Dataset(data, coords=coords, attrs=_attributes(sweep))


def _about(units: str, long_name: str) -> dict:
    return {"units": units, "long_name": long_name}


def _attributes(sweep: Sweep) -> dict:
    import jax
    import jaxlib

    return {
        "edgesplit_format": FORMAT,
        "title": sweep.description or sweep.name,
        "sweep_name": sweep.name,
        "sweep_text": sweep.text,
        "seed": sweep.seed,
        "topologies": sweep.topologies,
        "chunk": sweep.chunk,
        "precision": sweep.precision,
        "models": " ".join(Path(m).stem if "/" in m else m for m in sweep.setup.models),
        "edgesplit_version": edgesplit.__version__,
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "git_commit": _git_commit(),
    }


def _git_commit() -> str:
    """The commit of the edgesplit source tree, when it is a git checkout."""
    source = Path(edgesplit.__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if result.returncode != 0:
        return "unknown"
    dirty = subprocess.run(
        ["git", "-C", str(source), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True, text=True, timeout=10,
    ).stdout.strip()  # fmt: skip
    return result.stdout.strip() + ("-dirty" if dirty else "")


def _encoding(sweep: Sweep) -> dict:
    encoding = {}
    for name, variable in SCHEMA.items():
        # Floats mark unwritten and undefined values with NaN; ints stay ints when read.
        encoding[name] = {"_FillValue": np.nan if variable.dtype == "float" else None}
    encoding["chunk_done"] = {"_FillValue": None}
    return encoding


def open_or_create(path: str | Path, sweep: Sweep) -> np.ndarray:
    """Make sure ``path`` holds this sweep's store; return which chunks are done.

    A new store gets its template; an existing one must come from the same sweep
    file, topology count and chunk size, or an InputError says why not.
    """
    path = Path(path)
    if not path.exists():
        _create(path, sweep)
    check_matches(path, sweep)
    return chunks_done(path)


def _create(path: Path, sweep: Sweep) -> None:
    """Write the template beside ``path`` and move it into place in one rename."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(str(path), f"cannot create the store's folder: {err.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise InputError(str(path), "the store's folder is not writable")
    _remove_stale_templates(path)
    staging = parent / f".{path.name}.template-{socket.gethostname()}-{os.getpid()}"
    try:
        template(sweep).to_zarr(
            staging, mode="w", compute=False, zarr_format=2, consolidated=True,
            encoding=_encoding(sweep),
        )  # fmt: skip
        failpoint("template-staged")
        os.rename(staging, path)  # atomic: the store appears complete or not at all
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        if not path.exists():  # not merely another run that created it first
            raise InputError(str(path), f"cannot write the store: {err.strerror}") from None


def _remove_stale_templates(path: Path) -> None:
    """Remove templates left by killed runs on this host (not those of live runs)."""
    host = socket.gethostname()
    for stale in path.parent.glob(f".{path.name}.template-{host}-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_matches(path: Path, sweep: Sweep) -> None:
    """Refuse a store that is not ours or was made by another sweep."""
    try:
        attrs = zarr.open_group(str(path), mode="r").attrs.asdict()
    except Exception:
        raise InputError(
            str(path), "exists but is not a Zarr store; choose another --out"
        ) from None
    if attrs.get("edgesplit_format") != FORMAT:
        raise InputError(
            str(path), "exists but is not an edgesplit sweep store; choose another --out"
        )
    if attrs.get("sweep_text") != sweep.text:
        raise InputError(str(path), "was made by a different sweep file; refusing to mix results")
    for key in ("topologies", "chunk", "seed", "precision"):
        if attrs.get(key) != getattr(sweep, key):
            raise InputError(
                str(path), f"was made with {key} = {attrs.get(key)}, not {getattr(sweep, key)}"
            )


def chunks_done(path: str | Path) -> np.ndarray:
    return np.asarray(zarr.open_group(str(path), mode="r")["chunk_done"][:], bool)


def chunk_region(name: str, sweep: Sweep, index: int) -> tuple[slice, ...]:
    """Where chunk ``index`` lies in variable ``name``: its topologies, all of the rest."""
    topologies = sweep.chunk_range(index)
    return tuple(
        slice(topologies.start, topologies.stop) if d == "topology" else slice(None)
        for d in dims_of(name, sweep)
    )


def write_chunk(path: str | Path, sweep: Sweep, index: int, arrays: dict[str, np.ndarray]) -> None:
    """Write chunk ``index`` into its region, then record it as done."""
    group = zarr.open_group(str(path), mode="r+")
    for i, name in enumerate(SCHEMA):
        if i == len(SCHEMA) // 2:
            failpoint("chunk-half-written")
        group[name][chunk_region(name, sweep, index)] = arrays[name]
    _flush_to_disk()  # the results are on disk before the record says so
    failpoint("chunk-written")
    group["chunk_done"][index] = True
    _flush_to_disk()
    trace("done", index)
    failpoint("chunk-recorded")


def _flush_to_disk() -> None:
    """Push written files to stable storage, so a power cut cannot undo a recorded chunk."""
    if hasattr(os, "sync"):
        os.sync()


def to_store_layout(sweep: Sweep, result: dict, count: int) -> dict[str, np.ndarray]:
    """A chunk program's variables (their dims with the axes as one dim of grid points,
    :data:`~edgesplit.sweep.schema.POINT`) as arrays with the store's dims; only the
    first ``count`` topologies (the rest is padding)."""
    out = {}
    for variable in VARIABLES:
        dims = variable.dims_for((POINT,))
        value = np.asarray(result[variable.name])
        value = value[(slice(None),) * dims.index("topology") + (slice(count),)]
        if POINT in dims:
            at = dims.index(POINT)
            value = value.reshape(*value.shape[:at], *sweep.grid_shape, *value.shape[at + 1 :])
        out[variable.name] = value.astype(_dtype(variable.name, sweep), copy=False)
    return out


def open_store(path: str | Path) -> xr.Dataset:
    """The store as a Dataset, checked to be an edgesplit store."""
    path = Path(path)
    if not path.exists():
        raise InputError(str(path), "no such store")
    try:
        ds = xr.open_zarr(path)
    except Exception:
        raise InputError(str(path), "is not a Zarr store") from None
    if ds.attrs.get("edgesplit_format") != FORMAT:
        raise InputError(str(path), "is not an edgesplit sweep store")
    return ds
