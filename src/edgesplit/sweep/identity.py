"""What a store's results depend on, recorded in the store so that no run mixes results
of different inputs into it, and so that the store alone says what it holds.

The store keeps the resolved sweep in a canonical form (:func:`sweep_document`, the
``sweep`` attribute, JSON): every setting, axis value, scheme, the topology count,
chunk, seed and precision, the game settings and game axes, and the contents of every
profile (:class:`~edgesplit.model.dnn.DnnModel`), with the edgesplit build beside it.
:func:`stored_sweep` rebuilds the :class:`~edgesplit.sweep.spec.Sweep` from it, so a
store whose sweep or profile files were moved, edited or deleted can still be read,
re-solved or exported. The sweep file's text (``sweep_text``) is kept for people; it is
not compared: a comment, a name, a profile's place or a number written ``4`` or ``4.0``
changes no result, and is no reason to refuse a store.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Mapping
from pathlib import Path

import edgesplit
from edgesplit.config import GameSettings, Setup
from edgesplit.errors import InputError
from edgesplit.model.dnn import DnnModel
from edgesplit.model.schemes import Scheme
from edgesplit.sweep.spec import Sweep
from edgesplit.validation import show

_MODEL_FIELDS = ("name", "layer_names", "layer_cycles", "output_bits", "input_bits")
_NUMBERS = [f for f in dataclasses.fields(Setup) if not f.metadata["static"]]


def sweep_document(sweep: Sweep) -> dict:
    """The resolved sweep as JSON values (its ``text`` aside): every field, each model a
    built-in name or a profile's contents (an object of :class:`DnnModel`'s fields)."""
    return {
        "name": sweep.name,
        "description": sweep.description,
        "schemes": [s.label for s in sweep.schemes],
        "topologies": sweep.topologies,
        "seed": sweep.seed,
        "chunk": sweep.chunk,
        "precision": sweep.precision,
        "setup": {f.name: getattr(sweep.setup, f.name) for f in _NUMBERS},
        "models": [
            m if isinstance(m, str) else {k: _plain(getattr(m, k)) for k in _MODEL_FIELDS}
            for m in sweep.setup.models
        ],
        "game": {f.name: getattr(sweep.game, f.name) for f in dataclasses.fields(GameSettings)},
        "axes": {axis: list(values) for axis, values in sweep.axes.items()},
        "game_axes": {axis: list(values) for axis, values in sweep.game_axes.items()},
    }


def _plain(value):
    return list(value) if isinstance(value, tuple) else value


def sweep_attribute(sweep: Sweep) -> str:
    """:func:`sweep_document` as the store's ``sweep`` attribute: JSON text, the axes in
    their order (the store's dims), floats written to round-trip exactly."""
    return json.dumps(sweep_document(sweep), allow_nan=False)


def stored_sweep(attrs: Mapping) -> Sweep:
    """The resolved sweep a store was made from, from its attributes alone (``sweep``,
    and ``sweep_text`` for :attr:`Sweep.text`): the same sweep, field by field, that
    made it, each profile's model rebuilt from its recorded contents."""
    doc = json.loads(attrs["sweep"])
    models = tuple(m if isinstance(m, str) else _model(m) for m in doc["models"])
    return Sweep(
        name=doc["name"],
        description=doc["description"],
        text=attrs.get("sweep_text", ""),
        schemes=tuple(Scheme.parse(label) for label in doc["schemes"]),
        topologies=doc["topologies"],
        seed=doc["seed"],
        chunk=doc["chunk"],
        precision=doc["precision"],
        setup=Setup(models=models, **doc["setup"]),
        game=GameSettings(**doc["game"]),
        axes={axis: tuple(values) for axis, values in doc["axes"].items()},
        game_axes={axis: tuple(values) for axis, values in doc["game_axes"].items()},
    )


def _model(fields: dict) -> DnnModel:
    return DnnModel(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def results_depend_on(doc: dict) -> dict[str, object]:
    """What of a :func:`sweep_document` the results depend on, by key, in the order they
    are compared: not the name, the description or the models' and layers' names; a
    base setup value only where no axis replaces it; float settings as floats (so
    ``4`` and ``4.0`` are one value)."""
    kinds = {f.name: int if f.metadata["bounds"].get("integer") else float for f in _NUMBERS}
    depends = {key: doc[key] for key in ("schemes", "topologies", "chunk", "seed", "precision")}
    depends["axes"] = [*doc["game_axes"], *doc["axes"]]  # the store's dims, in order
    depends["setup.models"] = len(doc["models"])
    for key, value in doc["setup"].items():
        if key not in doc["axes"]:
            depends[f"setup.{key}"] = kinds[key](value)
    for i, model in enumerate(doc["models"]):
        if isinstance(model, dict):
            model = {k: model[k] for k in ("layer_cycles", "output_bits", "input_bits")}
        depends[f"setup.models[{i}]"] = model
    depends |= {f"game.{key}": value for key, value in doc["game"].items()}
    for key, values in doc["game_axes"].items():
        depends[f"axes.{key}"] = values
    for key, values in doc["axes"].items():
        depends[f"axes.{key}"] = [kinds[key](v) for v in values]
    return depends


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
    """The store attributes that identify what its results depend on (``sweep``, the
    build), and the sweep's text and sizes for people and readers."""
    return {
        "sweep": sweep_attribute(sweep),
        "sweep_text": sweep.text,
        "seed": sweep.seed,
        "topologies": sweep.topologies,
        "chunk": sweep.chunk,
        "precision": sweep.precision,
        "edgesplit_version": edgesplit.__version__,
        "git_commit": git_commit(),
    }


def check_identity(where: str, attrs: Mapping, sweep: Sweep, *, allow_build: bool = False) -> None:
    """Refuse, in one line naming the first setting that differs, to add ``sweep``'s
    results to a store whose attributes ``attrs`` record other inputs; another
    edgesplit build only with ``allow_build``."""
    made = json.loads(attrs["sweep"])
    given = sweep_document(sweep)
    before, now = results_depend_on(made), results_depend_on(given)
    for key, old in before.items():
        new = now[key]  # the keys are the same while the axes and models counts are
        if old == new:
            continue
        if key.startswith("setup.models[") and isinstance(old, dict) and isinstance(new, dict):
            i = int(key[len("setup.models[") : -1])
            raise InputError(
                where, f"was made from another version of {given['models'][i]['name']} "
                f"({key}: its contents changed); refusing to mix results",
            )  # fmt: skip
        if key.startswith("setup.models"):
            old, new = _names(made["models"]), _names(given["models"])
        raise InputError(
            where, f"was made with {key} = {show(old)}, not {show(new)}; refusing to mix results"
        )
    made_by = f"{attrs.get('edgesplit_version')} (commit {attrs.get('git_commit')})"
    if made_by != build() and not allow_build:
        raise InputError(
            where, f"was made by edgesplit {made_by}, this is {build()}; pass "
            "--allow-other-build to add its results (each chunk records its build)",
        )  # fmt: skip


def _names(models: list) -> list[str]:
    return [m if isinstance(m, str) else m["name"] for m in models]


def model_names(sweep: Sweep) -> list[str]:
    """The name of each model, by its index (the store's ``model`` variable): a built-in
    name, or a profile's path as the sweep file gives it."""
    return [m if isinstance(m, str) else m.name for m in sweep.setup.models]
