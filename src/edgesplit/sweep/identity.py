"""What a store's results depend on, recorded in the store so that no run mixes results
of different inputs into it: the sweep file's text (its seed, sizes and precision with
it), the contents of every profile file the sweep reads, and the edgesplit build."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import edgesplit
from edgesplit.errors import InputError
from edgesplit.sweep.spec import Sweep


def input_digests(sweep: Sweep) -> dict[str, str]:
    """The SHA-256 of each profile file the sweep reads, by its path (built-in models are
    part of the edgesplit build)."""
    digests = {}
    for model in sweep.setup.models:
        if Path(model).suffix.lower() in (".csv", ".json"):
            try:
                digests[model] = hashlib.sha256(Path(model).read_bytes()).hexdigest()
            except OSError as err:
                raise InputError(model, f"cannot read: {err.strerror}") from None
    return digests


def build() -> str:
    """This edgesplit: its version, and its git commit when it runs from a checkout."""
    return f"{edgesplit.__version__} (commit {git_commit()})"


def git_commit() -> str:
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


def identity_attributes(sweep: Sweep) -> dict:
    """The store attributes that identify what its results depend on."""
    return {
        "sweep_text": sweep.text,
        "seed": sweep.seed,
        "topologies": sweep.topologies,
        "chunk": sweep.chunk,
        "precision": sweep.precision,
        "input_files": json.dumps(input_digests(sweep), sort_keys=True),
        "edgesplit_version": edgesplit.__version__,
        "git_commit": git_commit(),
    }


def check_identity(where: str, attrs: dict, sweep: Sweep, *, allow_build: bool = False) -> None:
    """Refuse, in one line naming what differs, to add ``sweep``'s results to a store whose
    attributes ``attrs`` identify other inputs; another edgesplit build only with
    ``allow_build``."""
    if attrs.get("sweep_text") != sweep.text:
        raise InputError(where, "was made by a different sweep file; refusing to mix results")
    for key in ("topologies", "chunk", "seed", "precision"):
        if attrs.get(key) != getattr(sweep, key):
            raise InputError(
                where, f"was made with {key} = {attrs.get(key)}, not {getattr(sweep, key)}"
            )
    recorded = json.loads(attrs.get("input_files", "{}"))
    for path, digest in sorted(input_digests(sweep).items()):
        if recorded.get(path) != digest:
            raise InputError(
                where, f"was made from another version of {path} (its contents changed); "
                "refusing to mix results",
            )  # fmt: skip
    made_by = f"{attrs.get('edgesplit_version')} (commit {attrs.get('git_commit')})"
    if made_by != build() and not allow_build:
        raise InputError(
            where, f"was made by edgesplit {made_by}, this is {build()}; pass "
            "--allow-other-build to add its results (each chunk records its build)",
        )  # fmt: skip
