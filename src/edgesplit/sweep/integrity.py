"""A store's integrity: each recorded chunk carries a checksum of its data, written with
it, so that a deleted, truncated or altered chunk file, or a record without its data,
is found instead of read as results. What gives the data its meaning is covered too:
the store's metadata (every array's dtype, shape, chunks, codec, fill value, dims and
attributes, and the store's attributes) and the values of its coordinates are
checksummed when the store is made (:func:`metadata_checksum`, the
``metadata_checksum`` attribute), so that an edited fill value, a bit flip in an axis
or a missing coordinate file is found (:func:`metadata_damage`) instead of moving
results to other labels.

Every check here works from the store alone (its arrays' dims and its attributes), so
``edgesplit verify`` needs no sweep file. They know Zarr v2's layout on disk: the
consolidated metadata ``.zmetadata``, which readers use, and one ``.zarray``,
``.zattrs`` (and ``.zgroup``) file for each array (and the group), which must agree
with it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import zarr

from edgesplit.sweep.schema import SCHEMA

METADATA_CHECKSUM = "metadata_checksum"
"""The store attribute holding :func:`metadata_checksum` (which does not cover it)."""

RECORDS = ("chunk_done", "chunk_checksum", "chunk_build")
"""The arrays that record chunks, one element (and one file) per chunk: whether it is
done, the checksum of its data, and the edgesplit build that wrote it."""


def checksum(arrays: Mapping[str, np.ndarray]) -> int:
    """A 64-bit checksum of a chunk's data as stored: every variable of the schema, in
    its order, by name, shape and bytes. Never 0, which marks no checksum."""
    digest = hashlib.blake2b(digest_size=8)
    for name in SCHEMA:
        value = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{value.dtype.str}:{value.shape};".encode())
        digest.update(value.tobytes())
    return int.from_bytes(digest.digest(), "little") or 1


def region(dims, topologies: range) -> tuple[slice, ...]:
    """Where the ``topologies`` lie in a variable of ``dims``: theirs, all of the rest."""
    return tuple(
        slice(topologies.start, topologies.stop) if dim == "topology" else slice(None)
        for dim in dims
    )


def damaged_chunks(path: str | Path, *, full: bool = True) -> dict[int, str]:
    """The recorded chunks whose data is not what their record says, with why.

    ``full`` reads every recorded chunk back and compares its checksum; otherwise only
    the record and the presence of each variable's chunk file are checked (cheap: no
    data is read)."""
    group = zarr.open_group(str(path), mode="r")
    chunk, topologies = int(group.attrs["chunk"]), int(group.attrs["topologies"])
    done = np.asarray(group["chunk_done"][:], bool)
    sums = np.asarray(group["chunk_checksum"][:], np.uint64)
    damaged = {}
    for index in np.flatnonzero(done):
        index = int(index)
        if sums[index] == 0:
            damaged[index] = "recorded without a checksum"
            continue
        missing = [
            name for name in SCHEMA if not _chunk_file(path, group[name], chunk, index).is_file()
        ]
        if missing:
            damaged[index] = f"its data is missing ({', '.join(missing)})"
        elif full:
            try:
                rows = range(index * chunk, min((index + 1) * chunk, topologies))
                arrays = {
                    n: group[n][region(group[n].attrs["_ARRAY_DIMENSIONS"], rows)] for n in SCHEMA
                }
            except Exception as err:  # a damaged file fails in its codec, whichever
                damaged[index] = f"its data cannot be read ({type(err).__name__})"
                continue
            if checksum(arrays) != int(sums[index]):
                damaged[index] = "its data does not match its checksum"
    return damaged


def unrecord(path: str | Path, chunks) -> None:
    """Forget ``chunks``' records, so that a rerun solves them again."""
    group = zarr.open_group(str(path), mode="r+")
    for index in chunks:
        group["chunk_done"][index] = False
        group["chunk_checksum"][index] = 0


def _chunk_file(path: str | Path, array: zarr.Array, chunk: int, index: int) -> Path:
    """The file holding chunk ``index`` of ``array`` (Zarr v2: one file per chunk, named
    by its chunk indices; a sweep chunk is one Zarr chunk along the topologies)."""
    dims = array.attrs["_ARRAY_DIMENSIONS"]
    separator = array.metadata.dimension_separator or "."
    key = str(separator).join(str(index) if dim == "topology" else "0" for dim in dims)
    return Path(path) / array.basename / key


def read_metadata(path: str | Path) -> dict:
    """The store's consolidated metadata (``.zmetadata``'s entries by key), each entry
    checked to be what its own file holds; a ValueError says what is not."""
    try:
        text = (Path(path) / ".zmetadata").read_bytes()
    except FileNotFoundError:
        raise ValueError(".zmetadata is missing") from None
    try:
        entries = json.loads(text)["metadata"]
        assert isinstance(entries, dict)
    except Exception:  # not JSON, not an object, no entries: truncated or edited
        raise ValueError(".zmetadata cannot be read") from None
    for key, entry in entries.items():
        try:
            own = json.loads((Path(path) / key).read_bytes())
        except FileNotFoundError:
            raise ValueError(f"{key} is missing") from None
        except Exception:
            raise ValueError(f"{key} cannot be read") from None
        if own != entry:
            raise ValueError(f"{key} is not what .zmetadata records")
    return entries


def metadata_checksums(path: str | Path, entries: dict | None = None) -> dict[str, str]:
    """A 64-bit checksum (hex) of each metadata entry, by its key (the store's
    attributes without this checksum's), and of each coordinate's name, dtype, shape
    and values (an array whose one dim is itself), by ``coordinate NAME``."""
    entries = read_metadata(path) if entries is None else entries
    sums = {key: _entry_digest(key, entry) for key, entry in sorted(entries.items())}
    group = zarr.open_group(str(path), mode="r")
    for key in sorted(entries):
        name, _, kind = key.rpartition("/")
        if kind != ".zattrs" or entries[key].get("_ARRAY_DIMENSIONS") != [name]:
            continue
        try:
            value = np.ascontiguousarray(group[name][:])
        except Exception:  # a damaged file fails in its codec, whichever
            raise ValueError(f"the coordinate {name} cannot be read") from None
        sums[f"coordinate {name}"] = _digest(
            f"{name}:{value.dtype.str}:{value.shape};".encode(), value.tobytes()
        )
    return sums


def _entry_digest(key: str, entry: dict) -> str:
    if key == ".zattrs":
        entry = {k: v for k, v in entry.items() if k != METADATA_CHECKSUM}
    return _digest(json.dumps(entry, sort_keys=True).encode())


def intact_attributes(path: str | Path) -> dict | None:
    """The store's attributes from its ``.zattrs`` file or from ``.zmetadata``, whichever
    still matches the checksum they record of themselves; None when neither does."""
    for source in (".zattrs", ".zmetadata"):
        try:
            attrs = json.loads((Path(path) / source).read_bytes())
            attrs = attrs["metadata"][".zattrs"] if source == ".zmetadata" else attrs
            recorded = attrs[METADATA_CHECKSUM][".zattrs"]
        except Exception:  # unreadable, or no checksum: not intact
            continue
        if recorded == _entry_digest(".zattrs", attrs):
            return attrs
    return None


def _digest(*parts: bytes) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def metadata_damage(path: str | Path) -> str | None:
    """What of the store's metadata or coordinates is not as it was made (the first
    thing found), or None."""
    try:
        entries = read_metadata(path)
        recorded = entries.get(".zattrs", {}).get(METADATA_CHECKSUM)
        if not isinstance(recorded, dict):
            return "its metadata has no checksum"
        sums = metadata_checksums(path, entries)
    except ValueError as err:
        return str(err)
    for key in sorted(recorded.keys() | sums.keys()):
        if key not in sums:
            return f"{key} is missing"
        if key not in recorded:
            return f"{key} was added"
        if sums[key] != recorded[key]:
            return f"{key} does not match its checksum"
    return None
