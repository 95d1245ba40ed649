"""A store's integrity: each recorded chunk carries a checksum of its data, written with
it, so that a deleted, truncated or altered chunk file, or a record without its data,
is found instead of read as results.

Every check here works from the store alone (its arrays' dims and its attributes), so
``edgesplit verify`` needs no sweep file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import zarr

from edgesplit.sweep.schema import SCHEMA

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
