"""What a run needs from its machine, checked before it is asked for, and what the
machine says back, as one line (:class:`~edgesplit.errors.RunError`).

* **Memory.** Before the store's template is built or anything compiles,
  :func:`check_memory` estimates the host memory a sweep needs (the template's
  coordinates and per-chunk bookkeeping, which grow with ``topologies``; one chunk's
  results, which grow with ``chunk`` and the grid) and refuses, naming the knob, what
  cannot fit. Right after compiling, :func:`check_programs` adds the programs' own
  memory for the batch of chunks a call solves (XLA's memory analysis: their inputs,
  outputs and temporaries on each device) and refuses again before solving;
  :func:`largest_batch` is the batch that fits. The limit is the memory available now
  (``MemAvailable``, or the process's cgroup limit when tighter), or
  ``$EDGESPLIT_MEMORY_LIMIT`` (bytes, or with a K, M, G or T suffix; ``off`` turns the
  check off). On an accelerator, the programs are also checked against each device's
  own memory.
* **Writable store.** :func:`check_writable` tries the store before a resumed run
  compiles, so that a read-only store fails in a second, not after compiling.
* **OS failures.** :func:`os_failures` turns an ``OSError`` (a full disk, a read-only
  filesystem, a permission, a quota) into a RunError naming the store and the reason.
* **Interruptions.** :func:`stops_cleanly` says how far an interrupted run got (the
  signals themselves: :mod:`edgesplit.sweep.interrupts`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import math
import os
import re
import signal
import socket
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

from edgesplit.errors import InputError, Interrupted, RunError
from edgesplit.sweep.integrity import RECORDS
from edgesplit.sweep.interrupts import checkpoint, received
from edgesplit.sweep.schema import SCHEMA
from edgesplit.sweep.spec import Sweep
from edgesplit.sweep.store import chunks_done, dims_of, dtype_of, shape_of

MEMORY_LIMIT = "EDGESPLIT_MEMORY_LIMIT"
MAX_MEMORY_LIMIT = 2**60
"""The largest memory limit taken, 1 EiB: a limit is compared with byte counts in
floating point, and no machine has more."""

# Measured with xarray 2026.9 and dask 2026.8: building the template and writing it
# (``to_zarr(compute=False)``) costs about 710 bytes per dask chunk (one per variable
# and record per sweep chunk: 336 MB for 20,000 chunks of one topology), and about 20
# bytes per topology (the coordinate, its index, its encoded copy: 204 MB for 10^7).
_BYTES_PER_DASK_CHUNK = 720
_BYTES_PER_TOPOLOGY = 3 * 8
_RECORD_BYTES = 1 + 8 + 4 * 96  # chunk_done, chunk_checksum, chunk_build, when read
# One chunk's results, alive at once: on the device as the program returns them, and
# the next chunk's there too while this one is written (solving overlaps writing); on
# the host, the copy being written.
_RESULT_COPIES = 3
_DEVICE_SHARE = 0.8  # of an accelerator's free memory, for a batch chosen by edgesplit


def _size(count: float) -> str:
    """In the binary units EDGESPLIT_MEMORY_LIMIT takes: ``2.3 GiB``."""
    units = (("EiB", 2**60), ("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20))
    for unit, scale in (*units, ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{int(count)} bytes"


def _parse_bytes(text: str) -> int | None:
    """``12345``, ``1.5G``, ``512MiB``, ... as bytes (K, M, G, T: powers of 1024); None
    for ``off``."""
    if text.strip().lower() == "off":
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(?:([kmgt])(?:i?b)?|b)?\s*", text.lower())
    if not match:
        raise InputError(
            MEMORY_LIMIT, f"must be a number of bytes (e.g. 8G, 512M) or off, got {text!r}"
        )
    scale = 1024 ** ("kmgt".index(match[2]) + 1) if match[2] else 1
    count = int(Decimal(match[1]) * scale)  # exact: no float overflows on many digits
    if count > MAX_MEMORY_LIMIT:
        raise InputError(
            MEMORY_LIMIT, f"must be at most {_size(MAX_MEMORY_LIMIT)} (or off), got "
            f"{text.strip() if len(text.strip()) <= 20 else text.strip()[:17] + '...'}",
        )  # fmt: skip
    return count


def _meminfo_available() -> int | None:
    """``MemAvailable`` (Linux), else the physical memory."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(ValueError, OSError, AttributeError):
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def _read_number(path: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(path.read_text().strip())
    return None


def _inactive_file(path: Path, key: str) -> int:
    """Page cache the kernel would drop for us (counted in a cgroup's usage)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in path.read_text().splitlines():
            name, value = line.split()
            if name == key:
                return int(value)
    return 0


def _cgroup_available() -> int | None:
    """The memory left under this process's cgroup limits (v1 or v2, this cgroup and its
    ancestors, as a Slurm job or a container sets them); None when unlimited."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    left = []
    for line in lines:
        _, controllers, where = line.split(":", 2)
        if controllers == "":
            root, files = Path("/sys/fs/cgroup"), ("memory.max", "memory.current", "memory.stat")
            inactive = "inactive_file"
        elif "memory" in controllers.split(","):
            root = Path("/sys/fs/cgroup/memory")
            files = ("memory.limit_in_bytes", "memory.usage_in_bytes", "memory.stat")
            inactive = "total_inactive_file"
        else:
            continue
        leaf = root / where.lstrip("/")
        for folder in [leaf, *leaf.parents]:
            limit, used = _read_number(folder / files[0]), _read_number(folder / files[1])
            if limit is not None and used is not None and limit < 2**60:
                left.append(limit - used + _inactive_file(folder / files[2], inactive))
            if folder == root:
                break
    return max(min(left), 0) if left else None


def memory_limit() -> tuple[int | None, str]:
    """The host memory a run may use (None: no limit), and what the number is, as
    "12 GB {it}": "available", "allowed by EDGESPLIT_MEMORY_LIMIT", ..."""
    given = os.environ.get(MEMORY_LIMIT, "").strip()
    if given:
        return _parse_bytes(given), f"allowed by {MEMORY_LIMIT}"
    known = [
        (n, source)
        for n, source in (
            (_meminfo_available(), "available"),
            (_cgroup_available(), "left under this process's cgroup limit"),
        )
        if n is not None
    ]
    if not known:
        return None, "unknown"
    return min(known)


def template_bytes(sweep: Sweep) -> int:
    """The host memory of building, writing and opening the store's template."""
    tasks = sweep.num_chunks * (len(SCHEMA) + len(RECORDS))
    return (
        tasks * _BYTES_PER_DASK_CHUNK
        + sweep.num_chunks * _RECORD_BYTES
        + sweep.topologies * _BYTES_PER_TOPOLOGY
    )


def result_bytes(sweep: Sweep, topologies: int) -> int:
    """The bytes of the store's variables for ``topologies`` topologies."""
    total = 0
    for name in SCHEMA:
        sizes = zip(dims_of(name, sweep), shape_of(name, sweep), strict=True)
        shape = [topologies if dim == "topology" else size for dim, size in sizes]
        total += math.prod(shape) * dtype_of(name, sweep).itemsize
    return total


def _held(sweep: Sweep, in_memory: bool) -> int:
    """What a run holds whatever the chunk size: the store's template, or, in memory,
    the whole Dataset (the template loaded, and its copy filled chunk by chunk)."""
    if in_memory:
        return 2 * result_bytes(sweep, sweep.topologies)
    return template_bytes(sweep)


def check_memory(sweep: Sweep, *, in_memory: bool = False, solving: bool = True) -> None:
    """Refuse a sweep whose template or chunk results cannot fit in host memory, naming
    the knob: ``topologies``, ``chunk`` or ``axes``. Cheap: nothing is built. Without
    ``solving``, the template alone (``edgesplit init``)."""
    limit, source = memory_limit()
    if limit is None:
        return
    held = _held(sweep, in_memory)
    per_topology = _RESULT_COPIES * result_bytes(sweep, 1) if solving else 0
    _refuse_past(sweep, limit, source, held, held + sweep.chunk * per_topology, in_memory)


def _refuse_past(
    sweep: Sweep, limit: int, source: str, held: int, need: int, in_memory: bool, what=""
) -> None:
    """Refuse when ``need`` (of which ``held`` does not depend on the chunk size) exceeds
    ``limit``; the chunk size that would fit scales the rest down."""
    if need <= limit:
        return
    available = f"{_size(limit)} {source}"
    override = "" if MEMORY_LIMIT in source else f" ({MEMORY_LIMIT}=off skips this check)"
    if held > limit:
        if in_memory:
            what = f"{sweep.topologies} topologies need about {_size(held)} to hold in memory"
            fix = "fewer topologies, or write a store (out=PATH)"
        else:
            what = (
                f"{sweep.topologies} topologies in chunks of {sweep.chunk} need about "
                f"{_size(held)} for the store's template and records"
            )
            fix = "fewer topologies or a larger chunk"
        raise RunError("topologies", f"{what}, more than the {available}; use {fix}{override}")
    fits = int(sweep.chunk * (limit - held) / (need - held))
    points = math.prod(sweep.grid_shape)
    more = f"of memory{what}, more than the {available}"
    if fits >= 1:
        raise RunError(
            "chunk", f"a chunk of {sweep.chunk} topologies × {points} grid points × "
            f"{len(sweep.schemes)} schemes needs about {_size(need)} {more}; use chunk = "
            f"{fits} or less{override}",
        )  # fmt: skip
    one = held + (need - held) / sweep.chunk
    raise RunError(
        "axes" if points > 1 else "setup",
        f"one topology at each of {points} grid points × {len(sweep.schemes)} schemes "
        f"(and {sweep.max_devices} MDs) needs about {_size(one)} {more}; use fewer axis "
        f"values{override}",
    )  # fmt: skip


def _program_needs(sweep: Sweep, memory, batch: int, in_memory: bool) -> tuple[int, int, int]:
    """(bytes on each device, bytes of host memory, of which held whatever the batch)
    to solve ``batch`` chunks per call with programs of that ``memory``."""
    # Each device holds its share of a batch being solved, and the results of the one
    # before it until they are written; the host, those results being written.
    per_device = memory.per_device + memory.outputs
    held = _held(sweep, in_memory)
    host_results = result_bytes(sweep, batch * sweep.chunk)
    if memory.platform == "cpu":  # the devices' memory is the host's
        return per_device, held + memory.devices * per_device + host_results, held
    return per_device, held + 2 * host_results, held


def largest_batch(sweep: Sweep, memory, batch: int, *, in_memory: bool = False) -> int:
    """The most chunks per call, at most ``batch``, whose programs and results fit the
    devices' and the host's memory (0 when not one chunk does), from ``memory``, the
    analysis of the programs for ``batch`` chunks: both grow in proportion to it. On an
    accelerator a fifth of its free memory is left to XLA's own buffers."""
    if memory is None:
        return batch
    per_device, host, held = _program_needs(sweep, memory, batch, in_memory)
    fit = batch
    if memory.platform != "cpu" and memory.device_limit is not None:
        fit = min(fit, int(batch * _DEVICE_SHARE * memory.device_limit / per_device))
    limit, _ = memory_limit()
    if limit is not None and host > limit:
        fit = min(fit, int(batch * max(limit - held, 0) / (host - held)))
    return fit


def check_programs(sweep: Sweep, memory, *, in_memory: bool = False, batch: int = 1) -> None:
    """Refuse, before solving, a batch of chunks whose compiled programs cannot fit:
    ``memory`` is :meth:`~edgesplit.sweep.chunks.ChunkSolver.compile`'s
    :class:`ProgramMemory` (None when XLA gives no analysis, then nothing is checked).
    A batch of one chunk that does not fit names the chunk size (or the axes) to use;
    a larger one, the batch (``--batch``)."""
    if memory is None:
        return
    per_device, need, held = _program_needs(sweep, memory, batch, in_memory)
    if batch > 1:
        fit = largest_batch(sweep, memory, batch, in_memory=in_memory)
        if fit < batch:
            limit, source = memory_limit()
            host_fits = limit is None or need <= limit
            on = (
                f"{_size(need)} of memory, more than the {_size(limit)} {source}"
                if not host_fits else f"{_size(per_device)} on each {memory.platform} "
                f"device, more than {_DEVICE_SHARE:.0%} of its {_size(memory.device_limit)} free"
            )  # fmt: skip
            use = f"--batch {fit} or less" if fit >= 1 else "--batch 1"
            raise RunError("--batch", f"{batch} chunks per call need about {on}; use {use}")
        return
    limit, source = memory_limit()
    device_limit = memory.device_limit if memory.platform != "cpu" else None
    if device_limit is not None and per_device > device_limit:
        fits = int(sweep.chunk * device_limit / per_device)
        if fits >= 1:
            raise RunError(
                "chunk", f"a chunk of {sweep.chunk} topologies needs about "
                f"{_size(per_device)} on each {memory.platform} device, which has "
                f"{_size(device_limit)}; use chunk = {fits} or less",
            )  # fmt: skip
        raise RunError(
            "axes", f"one topology per device at every grid point needs about "
            f"{_size(per_device)} on each {memory.platform} device, which has "
            f"{_size(device_limit)}; use fewer axis values",
        )  # fmt: skip
    if limit is not None:
        _refuse_past(
            sweep, limit, source, held, need, in_memory, " with the compiled chunk programs"
        )


@contextlib.contextmanager
def os_failures(path: str | Path, doing: str, sweep: Sweep | None = None) -> Iterator[None]:
    """Turn an OSError while ``doing`` (e.g. "writing chunk 3") into a RunError naming the
    store and the reason, and how far the store got."""
    try:
        yield
    except OSError as err:
        raise RunError(
            str(path), f"{doing} failed: {describe(err)}{resumable(path, sweep)}"
        ) from None


def describe(err: OSError, *, where: bool = True) -> str:
    """``No space left on device (ENOSPC)``, and ``at FILE`` when known and ``where``."""
    reason = err.strerror or str(err)
    name = errno.errorcode.get(err.errno or 0)
    at = f" at {err.filename}" if err.filename and where else ""
    return f"{reason}{f' ({name})' if name else ''}{at}"


def resumable(path: str | Path, sweep: Sweep | None) -> str:
    """``; 3 of 8 chunks recorded, ...``: how far the store got, or "" when unknown."""
    done = None if sweep is None else _chunks_recorded(path)
    if done is None:
        return ""
    return (
        f"; {done} of {sweep.num_chunks} chunks recorded, the store is intact: "
        "rerun the same command to resume"
    )


def stops_cleanly(function):
    """Decorate ``function(sweep, path, ...)``, a run into the store at ``path``: an
    OSError becomes a RunError naming the store, the reason and how many chunks are
    recorded; a KeyboardInterrupt (Ctrl-C, or SIGTERM under the command line) an
    :class:`~edgesplit.errors.Interrupted` saying the same."""

    @functools.wraps(function)
    def run(sweep: Sweep, path: str | Path, *args, **kwargs):
        try:
            checkpoint()
            return function(sweep, path, *args, **kwargs)
        except OSError as err:
            raise RunError(
                str(path), f"the run failed: {describe(err)}{resumable(path, sweep)}"
            ) from None
        except KeyboardInterrupt as stop:
            signum = getattr(stop, "signum", signal.SIGINT)
            raise Interrupted(signum, recorded(path, sweep)) from None
        except Exception:
            if received() is None:
                raise
            # The interruption, as a library re-raised it (an ImportError, say).
            raise Interrupted(received(), recorded(path, sweep)) from None

    return run


def recorded(path: str | Path, sweep: Sweep) -> str:
    """``3 of 8 chunks recorded in PATH; rerun the same command to resume``."""
    done = _chunks_recorded(path)
    if done is None:
        return f"no store written at {path}" if not Path(path).exists() else ""
    return (
        f"{done} of {sweep.num_chunks} chunks recorded in {path}; rerun the same command to resume"
    )


def _chunks_recorded(path: str | Path) -> int | None:
    try:
        return int(chunks_done(path).sum())
    except Exception:  # no store, or one that cannot be read: say nothing about it
        return None


def check_writable(path: str | Path) -> None:
    """Refuse, with the reason, a store this process cannot write into: its folder or one
    of its arrays not writable, or its filesystem read-only (tried with a file that is
    created and removed at once)."""
    import zarr

    path = Path(path)
    folders = [path]
    with contextlib.suppress(Exception):
        folders += [path / name for name in zarr.open_group(str(path), mode="r").array_keys()]
    for folder in folders:
        if not os.access(folder, os.W_OK | os.X_OK):
            what = "the store" if folder == path else f"its array {folder.name}"
            raise RunError(
                str(path), f"{what} is not writable (read-only, or no permission); nothing "
                "was changed",
            )  # fmt: skip
    probe = path / f".edgesplit-write-test-{socket.gethostname()}-{os.getpid()}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.unlink(probe)
    except FileExistsError:
        with contextlib.suppress(OSError):
            os.unlink(probe)
    except OSError as err:
        raise RunError(
            str(path), f"the store is not writable: {describe(err)}; nothing was changed"
        ) from None
