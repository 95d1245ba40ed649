"""The Zarr store of a sweep: a template written once, then one region per finished chunk.

Layout (``xarray.open_zarr(path)`` is all a reader needs): dims ``scheme``, one dim per
swept parameter (named after it), ``topology``, ``device``, ``server``; Zarr chunks
span one sweep chunk of topologies and everything else, so each finished chunk is
written into its own chunk-aligned region and nothing is written twice.

Writing order, so that a crash never leaves a store that lies:

1. The template (dims, coordinates, attributes, empty variables) is built in a
   temporary folder beside the target, its metadata and coordinates checksummed
   (:func:`~edgesplit.sweep.integrity.metadata_checksums`), and renamed into place: a
   store either has a complete template or does not exist.
2. A chunk's variables are written into their region and synced to disk, then its
   checksum and build, then ``chunk_done[i]`` is set (:mod:`edgesplit.sweep.integrity`).
   A chunk killed mid-write is not marked and is solved again.

Unwritten values read as missing: floats as NaN, and integers and booleans, stored
with a fill value no result takes, as NaN too under ``xarray.open_zarr`` (which then
gives them a float dtype). :func:`open_store` keeps only the verified finished chunks,
with every variable in its own dtype.

Attributes: ``sweep``, the resolved sweep in a canonical form (JSON; what the results
depend on, from which :func:`~edgesplit.sweep.identity.stored_sweep` rebuilds the
:class:`~edgesplit.sweep.spec.Sweep`), ``sweep_text`` (the file as written),
``models`` (the name of each model, by the index the ``model`` variable holds: a
built-in name or a profile's path as the sweep file gives it), ``seed``,
``topologies``, ``chunk``, ``precision``, ``min_gain``, the builds
(``edgesplit_version``, ``git_commit``, ``jax_version``, ``jaxlib_version``) and
``metadata_checksum``.

Padded devices and servers (when the number of devices or servers is swept) have
NaN in their float variables and are marked by ``device_active``/``server_active``,
so ``ds.device_utility.mean("device")`` averages over real devices only.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
from dataclasses import fields
from pathlib import Path

import numpy as np
import xarray as xr
import zarr

from edgesplit.config import Setup
from edgesplit.errors import InputError
from edgesplit.sweep.faults import failpoint, trace
from edgesplit.sweep.identity import (
    build,
    check_identity,
    identity_attributes,
    model_names,
    stored_sweep,
)
from edgesplit.sweep.integrity import (
    METADATA_CHECKSUM,
    RECORDS,
    checksum,
    damaged_chunks,
    intact_attributes,
    metadata_checksums,
    metadata_damage,
    region,
    unrecord,
)
from edgesplit.sweep.schema import POINT, SCHEMA, VARIABLES
from edgesplit.sweep.spec import Sweep

FORMAT = "edgesplit-sweep-2"
"""Value of the ``edgesplit_format`` attribute that marks a store as ours. Format 2
records the resolved sweep (``sweep``) and checksums the metadata; a format-1 store
is refused with a line that says so."""

RECOVER = (
    "`edgesplit verify --repair` re-makes it from the store's record of its sweep, "
    "keeping every chunk that verifies"
)
"""How to recover from damaged metadata, as the error lines say it."""

UNKNOWN_SWEEP = (
    "its attributes are damaged too, so the sweep it was made from is not known: rerun "
    "the sweep into a new store (--out), and delete this one once the new one is complete"
)


def dims_of(name: str, sweep: Sweep) -> tuple[str, ...]:
    """Variable ``name``'s dims in the store of ``sweep``."""
    return SCHEMA[name].dims_for(tuple(sweep.point_axes))


def dtype_of(name: str, sweep: Sweep) -> np.dtype:
    """Variable ``name``'s dtype in results (the sweep's precision for floats; the model
    index as small as the number of models allows)."""
    kind = SCHEMA[name].dtype
    if kind == "float":
        return np.dtype(sweep.precision)
    if name == "model" and len(sweep.setup.models) > np.iinfo(np.int8).max:
        return np.dtype(np.int16)
    return np.dtype(kind)


def _storage(name: str, sweep: Sweep) -> tuple[np.dtype, float | int]:
    """The dtype variable ``name`` is stored in, and the fill value that marks it
    unwritten: NaN for floats, the smallest integer for integers (no result is that
    negative), -1 for booleans, stored as int8."""
    dtype = dtype_of(name, sweep)
    if dtype.kind == "f":
        return dtype, np.nan
    if dtype.kind == "b":
        return np.dtype(np.int8), -1
    return dtype, int(np.iinfo(dtype).min)


def shape_of(name: str, sweep: Sweep) -> tuple[int, ...]:
    """Variable ``name``'s shape in the store of ``sweep``."""
    sizes = {
        "scheme": len(sweep.schemes),
        "topology": sweep.topologies,
        "device": sweep.max_devices,
        "server": sweep.max_servers,
        **{axis: len(values) for axis, values in sweep.point_axes.items()},
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
    for axis, values in sweep.game_axes.items():
        coords[axis] = (axis, np.asarray(values), _about("1", f"swept game setting {axis}"))
    for axis, values in sweep.axes.items():
        coords[axis] = (axis, np.asarray(values), _about(units[axis] or "1", f"swept {axis}"))
    data = {}
    for name, variable in SCHEMA.items():
        dims = dims_of(name, sweep)
        chunks = tuple(sweep.chunk if d == "topology" else -1 for d in dims)
        data[name] = xr.Variable(
            dims,
            da.zeros(shape_of(name, sweep), dtype=dtype_of(name, sweep), chunks=chunks),
            _about(variable.units, variable.long_name),
        )
    records = {
        "chunk_done": (bool, "the chunk's results are written (the record a resumed run trusts)"),
        "chunk_checksum": (np.uint64, "checksum of the chunk's data as stored (0: none)"),
        "chunk_build": ("<U96", "the edgesplit version and commit that wrote the chunk"),
    }
    for name, (dtype, meaning) in records.items():
        data[name] = xr.Variable(
            ("chunk",), da.zeros(sweep.num_chunks, dtype=dtype, chunks=1), {"long_name": meaning}
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
        "models": model_names(sweep),
        "min_gain": sweep.game.min_gain,  # what an equilibrium's certificate may reach
        **identity_attributes(sweep),
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
    }


def _encoding(sweep: Sweep) -> dict:
    encoding = {}
    for name in SCHEMA:
        dtype, fill = _storage(name, sweep)
        encoding[name] = {"dtype": dtype, "_FillValue": fill}
    for name in RECORDS:
        encoding[name] = {"_FillValue": None}  # the records: unwritten reads as not done
    return encoding


def open_or_create(
    path: str | Path, sweep: Sweep, *, allow_build: bool = False, workers: int = 1
) -> tuple[np.ndarray, bool]:
    """Make sure ``path`` holds this sweep's store; return which chunks are done, and
    whether this call created the store.

    A new store gets its template; an existing one must be sound (its metadata and
    coordinates as made) and come from the same resolved sweep (every setting the
    results depend on, profiles by contents), and the same edgesplit build unless
    ``allow_build`` (:func:`~edgesplit.sweep.identity.check_identity`), or an
    InputError says why not.
    ``workers`` is how many workers share the store's chunks (1: this run alone): a
    store worked on by N workers takes no worker of another count.
    """
    if not str(path):
        raise InputError("--out", "must name a store, got ''")
    path = Path(path)
    _refuse_nested(path)
    created = not path.exists() and _create(path, sweep)
    check_matches(path, sweep, allow_build=allow_build)
    if workers > 1:
        _claim_worker_count(path, workers)
    return chunks_done(path), created


def _refuse_nested(path: Path) -> None:
    """A store inside another store would be read as part of it; a link that leads
    nowhere would be replaced by the store."""
    try:
        resolved = path.resolve()
    except (RuntimeError, OSError):  # a loop of symbolic links
        raise InputError(str(path), "is a loop of symbolic links; choose another --out") from None
    if path.is_symlink() and not path.exists():
        raise InputError(str(path), "is a symbolic link to nothing; choose another --out")
    for parent in resolved.parents:
        if (parent / ".zgroup").is_file() or (parent / ".zarray").is_file():
            raise InputError(str(path), f"is inside the Zarr store {parent}; choose another --out")


def _claim_worker_count(path: Path, workers: int) -> None:
    """Record that ``workers`` workers share the store, refusing another worker count
    (a marker file per count: workers never write the same file)."""
    counts = {int(m.name.rsplit("-", 1)[1]) for m in path.glob(".edgesplit-workers-*")}
    others = sorted(counts - {workers})
    if others:
        raise InputError(
            "--worker", f"the store is shared by {others[0]} workers, not {workers}: finish "
            "with the same count, or run without --worker",
        )  # fmt: skip
    try:
        (path / f".edgesplit-workers-{workers}").touch()
    except OSError as err:
        raise InputError(str(path), f"cannot write the store: {err.strerror}") from None


def _create(path: Path, sweep: Sweep) -> bool:
    """Write the template beside ``path`` and move it into place in one rename; False
    when another run created the store first."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(str(path), f"cannot create the store's folder: {err.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise InputError(str(path), "the store's folder is not writable")
    _remove_stale_templates(path)
    staging = _staging(path)
    try:
        _write_template(staging, sweep)
        failpoint("template-staged")
        os.rename(staging, path)  # atomic: the store appears complete or not at all
    except OSError as err:
        shutil.rmtree(staging, ignore_errors=True)
        if not path.exists():  # not merely another run that created it first
            raise InputError(str(path), f"cannot write the store: {err.strerror}") from None
        return False
    return True


def _staging(path: Path) -> Path:
    """Where this process writes a template for ``path`` before renaming it into place."""
    return path.parent / f".{path.name}.template-{socket.gethostname()}-{os.getpid()}"


def _write_template(staging: Path, sweep: Sweep, attrs: dict | None = None) -> None:
    """Write the template of ``sweep`` (with ``attrs``, when given, as its attributes)
    to ``staging``, its metadata and coordinates checksummed."""
    made = template(sweep)
    if attrs is not None:
        made.attrs = {k: v for k, v in attrs.items() if k != METADATA_CHECKSUM}
    made.to_zarr(
        staging, mode="w", compute=False, zarr_format=2, consolidated=True,
        encoding=_encoding(sweep),
    )  # fmt: skip
    _record_metadata_checksums(staging)


def remake(path: str | Path) -> tuple[int, Path]:
    """Re-make the store at ``path``, whose metadata or coordinates are damaged, from its
    own record of the sweep (its attributes, when they are intact: an InputError says
    when not), keeping every recorded chunk whose data still matches its checksum; the
    rest are un-recorded, for a rerun to solve. The damaged store is moved aside, not
    deleted. Returns how many chunks are kept and where the damaged store went."""
    path = Path(path)
    attrs = intact_attributes(path)
    if attrs is None:
        raise InputError(str(path), UNKNOWN_SWEEP)
    staging = _staging(path)
    try:
        _write_template(staging, stored_sweep(attrs), attrs)
        for name in [*SCHEMA, *RECORDS]:  # the chunk files, each read back below
            if (path / name).is_dir():
                for file in (path / name).iterdir():
                    if not file.name.startswith("."):
                        shutil.copyfile(file, staging / name / file.name)
        unrecord(staging, sorted(damaged_chunks(staging)))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    aside = path.with_name(f"{path.name}.damaged")
    for n in range(1, 1000):
        if not aside.exists():
            break
        aside = path.with_name(f"{path.name}.damaged-{n}")
    os.rename(path, aside)
    os.rename(staging, path)
    return int(chunks_done(path).sum()), aside


def _record_metadata_checksums(path: Path) -> None:
    """Checksum the template's metadata and coordinates into its attributes."""
    group = zarr.open_group(str(path), mode="r+", use_consolidated=False)
    group.attrs[METADATA_CHECKSUM] = {}  # in place first: consolidating may reorder entries
    zarr.consolidate_metadata(str(path))
    group.attrs[METADATA_CHECKSUM] = metadata_checksums(path)
    zarr.consolidate_metadata(str(path))
    damage = metadata_damage(path)
    if damage is not None:  # the checksums must hold for the store as written
        raise RuntimeError(f"the template's metadata checksums do not hold: {damage}")


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


def check_matches(path: Path, sweep: Sweep, *, allow_build: bool = False) -> None:
    """Refuse a store that is not ours, is damaged, or was made from other inputs."""
    attrs = verified_attributes(path, out=True)
    check_identity(str(path), attrs, sweep, allow_build=allow_build)


def verified_attributes(path: str | Path, *, out: bool = False) -> dict:
    """The attributes of the edgesplit store at ``path``, its metadata and coordinates
    checked against their checksums, or an InputError saying what it is instead: no
    Zarr store, another's, an older format's, or damaged (see :data:`RECOVER`).
    ``out``: the store is a run's ``--out``, so a path holding something else is
    worth choosing again."""
    problem = metadata_problem(path)
    if problem is not None:
        another = out and problem.startswith("exists but")  # holds no store of ours
        raise InputError(str(path), problem + ("; choose another --out" if another else ""))
    damage = metadata_damage(path)
    if damage is not None:
        raise InputError(str(path), f"its metadata is damaged: {damage}; {RECOVER}")
    return zarr.open_group(str(path), mode="r").attrs.asdict()


def metadata_problem(path: str | Path) -> str | None:
    """Why the folder at ``path`` is not an edgesplit store of this format (it is no
    Zarr store, another's, or an older format's), or None; damage is another matter
    (:func:`~edgesplit.sweep.integrity.metadata_damage`)."""
    path = Path(path)
    if not path.is_dir() or not any((path / name).exists() for name in (".zgroup", ".zmetadata")):
        return "exists but is not a Zarr store"
    attrs = None
    for source in (".zmetadata", ".zattrs"):  # the second when the first is damaged
        with contextlib.suppress(Exception):
            found = json.loads((path / source).read_bytes())
            attrs = found["metadata"][".zattrs"] if source == ".zmetadata" else found
            break
    if not isinstance(attrs, dict):
        return (
            "is a Zarr store whose attributes cannot be read (.zmetadata, .zattrs): if it "
            f"is an edgesplit store, {UNKNOWN_SWEEP}"
        )
    made = attrs.get("edgesplit_format")
    if isinstance(made, str) and made.startswith("edgesplit-sweep-") and made != FORMAT:
        return (
            f"was made by another edgesplit (store format {made}; this one reads {FORMAT}); "
            "read it with that version, or rerun its sweep into a new store"
        )
    if made != FORMAT:
        return "exists but is not an edgesplit sweep store"
    return None


def chunks_done(path: str | Path) -> np.ndarray:
    """Which chunks are recorded as done (read as the store's metadata says)."""
    return np.asarray(zarr.open_group(str(path), mode="r")["chunk_done"][:], bool)


def chunk_region(name: str, sweep: Sweep, index: int) -> tuple[slice, ...]:
    """Where chunk ``index`` lies in variable ``name``: its topologies, all of the rest."""
    return region(dims_of(name, sweep), sweep.chunk_range(index))


def as_stored(sweep: Sweep, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A chunk's arrays in the dtypes the store holds them in (whose bytes its checksum
    covers)."""
    return {name: arrays[name].astype(_storage(name, sweep)[0], copy=False) for name in SCHEMA}


def write_chunk(path: str | Path, sweep: Sweep, index: int, arrays: dict[str, np.ndarray]) -> None:
    """Write chunk ``index`` into its region, then record it as done, with its checksum."""
    # Every chunk file is written, even one of fill values only, so that a missing file
    # always means damage.
    with zarr.config.set({"array.write_empty_chunks": True}):
        group = zarr.open_group(str(path), mode="r+")
        stored = as_stored(sweep, arrays)
        for i, name in enumerate(SCHEMA):
            if i == len(SCHEMA) // 2:
                failpoint("chunk-half-written")
            group[name][chunk_region(name, sweep, index)] = stored[name]
    _flush_to_disk()  # the results are on disk before the record says so
    failpoint("chunk-written")
    group["chunk_checksum"][index] = checksum(stored)
    group["chunk_build"][index] = build()
    group["chunk_done"][index] = True
    _flush_to_disk()
    trace("done", index)
    failpoint("chunk-recorded")


def _flush_to_disk() -> None:
    """Push written files to stable storage, so a power cut cannot undo a recorded chunk."""
    if hasattr(os, "sync"):
        os.sync()


def to_store_layout(sweep: Sweep, result: dict, topologies: slice) -> dict[str, np.ndarray]:
    """A chunk program's variables (their dims with the axes as one dim of grid points,
    :data:`~edgesplit.sweep.schema.POINT`) as arrays with the store's dims; only the
    ``topologies`` of one chunk (the rest is other chunks' or padding)."""
    out = {}
    for variable in VARIABLES:
        dims = variable.dims_for((POINT,))
        value = np.asarray(result[variable.name])
        value = value[(slice(None),) * dims.index("topology") + (topologies,)]
        if POINT in dims:
            at = dims.index(POINT)
            value = value.reshape(*value.shape[:at], *sweep.grid_shape, *value.shape[at + 1 :])
        out[variable.name] = value.astype(dtype_of(variable.name, sweep), copy=False)
    return out


def open_store(path: str | Path) -> xr.Dataset:
    """The store's verified finished chunks as a Dataset, every variable in its own dtype.

    Every recorded chunk is read back and checked against its checksum; a damaged one
    is an InputError naming it (``edgesplit verify --repair`` un-records it, so that a
    rerun solves it again). Unfinished chunks are left out: attributes
    ``finished_topologies`` and ``topologies`` say how many topologies are in.
    """
    ds = open_unverified(path)
    damaged = damaged_chunks(path)
    if damaged:
        index, why = min(damaged.items())
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise InputError(
            str(path), f"chunk {index} is damaged: {why}{more}; run `edgesplit verify "
            f"{path} --repair` and rerun the sweep to solve it again",
        )  # fmt: skip
    return finished(ds)


def open_unverified(path: str | Path) -> xr.Dataset:
    """The store as ``xarray.open_zarr`` reads it (unfinished values as NaN), checked to
    be an edgesplit store whose metadata and coordinates are as they were made (its
    chunks are not read back: :func:`open_store` does)."""
    path = Path(path)
    if not path.exists():
        raise InputError(str(path), "no such store")
    verified_attributes(path)
    ds = xr.open_zarr(path)
    del ds.attrs[METADATA_CHECKSUM]  # checked: no result of the sweep
    return ds


def finished(ds: xr.Dataset) -> xr.Dataset:
    """Only the topologies whose chunk is recorded as done, every variable in its own
    dtype (unwritten values, read as NaN, are then gone), and ``equilibrium``
    (:func:`with_equilibrium`). A topology's chunk is known by its place along the dim,
    never by its coordinate's value: ``ds`` is a store as ``xarray.open_zarr`` reads it,
    all its topologies."""
    chunk = int(ds.attrs["chunk"])
    done = np.asarray(ds.chunk_done.values, bool)[np.arange(ds.sizes["topology"]) // chunk]
    ds = ds.isel(topology=np.flatnonzero(done))
    for name, variable in SCHEMA.items():
        if variable.dtype == "bool":
            ds[name] = ds[name].astype(bool)
        elif variable.dtype != "float":
            ds[name] = ds[name].astype(ds[name].encoding.get("dtype", ds[name].dtype))
    ds.attrs["finished_topologies"] = ds.sizes["topology"]
    return with_equilibrium(ds)


def with_equilibrium(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with ``equilibrium``: 1 where a game's outcome is an equilibrium on the
    price grid (its ``certificate`` is at most the store's ``min_gain``), 0 where it is
    not, NaN where the game has no certificate (``grid_certificate = false``)."""
    certified = ds.certificate.notnull()
    equilibrium = (ds.certificate <= ds.attrs["min_gain"]).where(certified)
    equilibrium.attrs = {
        "units": "1",
        "long_name": "the outcome is an equilibrium on the grid: certificate <= min_gain "
        "(NaN without a certificate)",
    }
    return ds.assign(equilibrium=equilibrium)
