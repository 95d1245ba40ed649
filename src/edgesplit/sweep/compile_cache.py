"""Compiled programs kept on disk: a rerun, a resumed sweep or a second worker on the
same machine loads its programs instead of compiling them again (JAX's persistent
compilation cache; 7-10 s of a cold Fig. 3 sweep is compilation).

The command line turns it on; the library leaves JAX's settings alone. The cache is
``$EDGESPLIT_COMPILE_CACHE`` (``off`` turns it off), else
``$XDG_CACHE_HOME/edgesplit/xla/MACHINE`` (``~/.cache`` without XDG_CACHE_HOME), where
MACHINE names the processor's architecture and instruction-set extensions: XLA compiles
for the host it runs on, so nodes of a cluster sharing a home directory keep their
programs apart. A cache JAX was already given (``JAX_COMPILATION_CACHE_DIR``) is used
as it is. Entries are about 0.5 MB per sweep shape and are never evicted; delete the
directory to reclaim the space. Anyone who can write to the cache can make edgesplit
run their code, so keep it private.
"""

from __future__ import annotations

import hashlib
import os
import platform
from pathlib import Path

ENVIRONMENT = "EDGESPLIT_COMPILE_CACHE"


def _machine() -> str:
    """The architecture, and a digest of the CPU's feature flags (Linux), e.g.
    ``x86_64-3f2a9c1b``."""
    try:
        flags = next(
            line for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith(("flags", "Features"))
        )  # fmt: skip
    except (OSError, StopIteration):
        flags = platform.processor()
    return f"{platform.machine()}-{hashlib.sha256(flags.encode()).hexdigest()[:8]}"


def cache_directory() -> Path | None:
    """Where the command line keeps compiled programs; None when turned off."""
    chosen = os.environ.get(ENVIRONMENT, "").strip()
    if chosen.lower() == "off":
        return None
    if chosen:
        return Path(chosen).expanduser()
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return home / "edgesplit" / "xla" / _machine()


def enable_compile_cache() -> None:
    """Point JAX's persistent compilation cache at :func:`cache_directory`, unless JAX
    already has one. Call before the first compilation. A cache that cannot be created
    or written is a :class:`~edgesplit.errors.RunError`."""
    import jax

    directory = cache_directory()
    if directory is not None and not jax.config.jax_compilation_cache_dir:
        _check_usable(directory)
        jax.config.update("jax_compilation_cache_dir", str(directory))


def _check_usable(directory: Path) -> None:
    """Create the cache, or refuse in one line (JAX would warn at every compilation)."""
    from edgesplit.errors import RunError

    try:
        directory.mkdir(parents=True, exist_ok=True)
        usable = os.access(directory, os.W_OK | os.X_OK)
        reason = "not writable"
    except OSError as err:
        usable, reason = False, err.strerror or str(err)
    if not usable:
        raise RunError(
            str(directory), f"cannot keep compiled programs here ({reason}); set "
            f"{ENVIRONMENT} to a writable folder, or to off",
        )  # fmt: skip
