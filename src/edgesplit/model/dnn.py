"""DNN models and their partition tables (the paper's "DNN partition table", Section III).

A model is a chain of N layers; layer j needs F_j cycles and outputs V_j bits (V_0 is
the model input). Splitting after layer α (0 <= α <= N) runs layers 1..α on the mobile
device, sends V_α bits, and runs layers α+1..N on the edge server; α = N is all-local.

Per-layer compute comes from a profile (layer names, element counts, FLOP counts and,
where measured, latencies) in one of two ways:

* ``latency``: measured latency (ms) times ``clock_hz``, so a device whose clock is
  ``clock_hz`` runs each layer in exactly its measured time;
* ``flops``: FLOP count times ``cycles_per_flop``.

The built-in profiles are the DjiNN & Tonic / Neurosurgeon data in ``data/`` (see
``data/PROVENANCE.md``).
"""

from __future__ import annotations

import contextlib
import csv
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from edgesplit.errors import InputError
from edgesplit.validation import load_json, number, read_text

BITS_PER_ELEMENT = 32
"""Activations are float32 (the DjiNN size script uses 4 bytes an element)."""

REFERENCE_CLOCK_HZ = 852e6
"""Jetson TK1 GPU (GK20A, one Kepler SMX) clock: the mobile GPU the latencies were
measured on. Latency-based cycles are cycles of this clock."""

LATENCY_PLATFORMS = ("mobile-gpu", "mobile-cpu", "server-gpu")

BUILTIN_PROFILES = {"alexnet": "imc", "asr": "asr", "face": "face", "vgg": "vgg"}
"""Built-in model name -> DjiNN file stem (AlexNet is DjiNN's "imc")."""

PROFILE_COLUMNS = ("layer", "input", "output", "fp_ops")
"""Required columns of a profile file; ``add``, ``mult`` are accepted and ignored,
``lat_ms`` (measured latency) is optional."""


@dataclass(frozen=True)
class LayerProfile:
    """Per-layer profile of a DNN, in the DjiNN layer-profile units."""

    name: str
    layer_names: tuple[str, ...]
    input_elements: float  # elements of the model input (the first layer's input)
    output_elements: tuple[float, ...]  # elements each layer outputs
    fp_ops: tuple[float, ...]  # floating-point operations of each layer
    latency_ms: tuple[float, ...] | None = None  # measured latency of each layer

    @property
    def num_layers(self) -> int:
        return len(self.layer_names)


@dataclass(frozen=True)
class DnnModel:
    """A DNN as the game sees it: cycles F_j and output bits V_j of each layer."""

    name: str
    layer_names: tuple[str, ...]
    layer_cycles: tuple[float, ...]  # F_j, cycles
    output_bits: tuple[float, ...]  # V_j, bits
    input_bits: float  # V_0, bits

    @property
    def num_layers(self) -> int:
        return len(self.layer_names)

    def __post_init__(self):
        where = f"models.{self.name}"
        if not self.layer_names:
            raise InputError(f"{where}.layers", "a model needs at least one layer")
        if not len(self.layer_names) == len(self.layer_cycles) == len(self.output_bits):
            raise InputError(f"{where}.layers", "names, cycles and output bits differ in length")
        number(self.input_bits, f"{where}.input_bits", above=0)
        for j, (cycles, bits) in enumerate(zip(self.layer_cycles, self.output_bits, strict=True)):
            number(cycles, f"{where}.layers[{j}].cycles", at_least=0)
            number(bits, f"{where}.layers[{j}].output_bits", at_least=0)
        if not math.isfinite(self.total_cycles):  # the partition table holds sums of cycles
            raise InputError(f"{where}.layers", "the cycles of all layers summed exceed float64")

    @property
    def total_cycles(self) -> float:
        """F_1 + ... + F_N, the largest number of the partition table's cycles; inf when
        the sum exceeds float64."""
        try:
            return math.fsum(self.layer_cycles)
        except OverflowError:
            return math.inf

    @property
    def largest_bits(self) -> float:
        """The largest number of the partition table's bits."""
        return max(self.input_bits, *self.output_bits)


@dataclass(frozen=True)
class PartitionTable:
    """What each split point α = 0..N costs; every array has N + 1 entries."""

    device_cycles: np.ndarray  # sum of F_1..F_α, run on the device (eq. 2)
    server_cycles: np.ndarray  # sum of F_α+1..F_N, run on the edge server (eq. 3)
    sent_bits: np.ndarray  # V_α, sent over the radio (eq. 5); 0 at α = N

    @property
    def num_layers(self) -> int:
        return len(self.device_cycles) - 1


def partition_table(model: DnnModel) -> PartitionTable:
    """The DNN partition table of ``model`` (Section III)."""
    cycles = model.layer_cycles
    splits = range(len(cycles) + 1)
    # Correctly rounded sums (fsum): the same numbers whatever the order of summation.
    device = np.array([math.fsum(cycles[:split]) for split in splits])
    server = np.array([math.fsum(cycles[split:]) for split in splits])
    bits = np.concatenate([[model.input_bits], model.output_bits])
    bits[-1] = 0.0  # α = N sends nothing
    return PartitionTable(device_cycles=device, server_cycles=server, sent_bits=bits)


# --- profiles -------------------------------------------------------------------------


def model_from_profile(
    profile: LayerProfile,
    compute: str = "auto",
    *,
    clock_hz: float = REFERENCE_CLOCK_HZ,
    cycles_per_flop: float | None = None,
) -> DnnModel:
    """Turn a profile into a model.

    ``compute`` is ``"latency"`` (measured latency × ``clock_hz``), ``"flops"`` (FLOPs ×
    ``cycles_per_flop``, by default :func:`calibrated_cycles_per_flop`), or ``"auto"``:
    latency where the profile has it, FLOPs otherwise.
    """
    if compute == "auto":
        compute = "latency" if profile.latency_ms is not None else "flops"
    if compute == "latency":
        if profile.latency_ms is None:
            raise InputError(
                f"models.{profile.name}", "has no measured latencies; use compute='flops'"
            )
        cycles = tuple(ms * 1e-3 * clock_hz for ms in profile.latency_ms)
    elif compute == "flops":
        per_flop = calibrated_cycles_per_flop() if cycles_per_flop is None else cycles_per_flop
        cycles = tuple(ops * per_flop for ops in profile.fp_ops)
    else:
        raise InputError("compute", f"must be 'auto', 'latency' or 'flops', got {compute!r}")
    return DnnModel(
        name=profile.name,
        layer_names=profile.layer_names,
        layer_cycles=cycles,
        output_bits=tuple(e * BITS_PER_ELEMENT for e in profile.output_elements),
        input_bits=profile.input_elements * BITS_PER_ELEMENT,
    )


@cache
def calibrated_cycles_per_flop() -> float:
    """Cycles per FLOP that give AlexNet's FLOP count its measured mobile-GPU cycles.

    The Jetson TK1 GPU reaches about 28 GFLOP/s on AlexNet (2.27 GFLOP in 81.8 ms),
    far below its 327 GFLOP/s peak; scaling by the measured rate keeps FLOP-based and
    latency-based models in the same regime.
    """
    alexnet = builtin_profile("alexnet")
    return sum(alexnet.latency_ms) * 1e-3 * REFERENCE_CLOCK_HZ / sum(alexnet.fp_ops)


@cache
def builtin_profile(name: str, platform: str = "mobile-gpu") -> LayerProfile:
    """A built-in profile (``alexnet``, ``asr``, ``face``, ``vgg``) with the latencies
    measured on ``platform`` where DjiNN has them (not for VGG)."""
    if name not in BUILTIN_PROFILES:
        known = ", ".join(sorted(BUILTIN_PROFILES))
        raise InputError("model", f"unknown built-in model {name!r} (known: {known})")
    if platform not in LATENCY_PLATFORMS:
        raise InputError("platform", f"must be one of {LATENCY_PLATFORMS}, got {platform!r}")
    stem = BUILTIN_PROFILES[name]
    data = resources.files("edgesplit") / "data"
    rows = list(csv.DictReader((data / f"{stem}.csv").read_text().splitlines()))
    latencies = {}
    for row in csv.DictReader((data / f"latency-{platform}-ms.csv").read_text().splitlines()):
        if row["model"] == stem:
            latencies[row["layer"]] = float(row["lat_ms"])
    for row in rows:
        if latencies:
            row["lat_ms"] = latencies[row["layer"]]
    return _profile_from_rows(name, rows, source=f"built-in {name}")


@cache
def builtin_model(name: str, compute: str = "auto") -> DnnModel:
    """A built-in model with the default compute source (mobile-GPU latency where
    measured, AlexNet-calibrated FLOPs for VGG)."""
    return model_from_profile(builtin_profile(name), compute)


@cache
def resolve_model(name: str) -> DnnModel:
    """A built-in model by name, or a user profile by the path of its CSV or JSON file."""
    if name in BUILTIN_PROFILES:
        return builtin_model(name)
    if Path(name).suffix.lower() in (".csv", ".json"):
        return model_from_profile(load_profile(name))
    known = ", ".join(sorted(BUILTIN_PROFILES))
    raise InputError(
        "model", f"{name!r} is neither a built-in model ({known}) nor a .csv/.json profile"
    )


def load_profile(path: str | Path, name: str | None = None) -> LayerProfile:
    """Load a user profile from CSV or JSON with the DjiNN columns.

    CSV: a header with ``layer,input,output,fp_ops`` (``add``, ``mult`` ignored,
    ``lat_ms`` optional). JSON: a list of objects with those keys, or
    ``{"layers": [...]}``. Element counts are float32 elements.
    """
    path = Path(path)
    name = name or path.stem
    where = str(path)
    text = read_text(path)
    lines = None
    if path.suffix.lower() == ".json":
        data = load_json(text, where)
        rows = data.get("layers") if isinstance(data, dict) else data
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise InputError(where, "expected a list of layer objects or {'layers': [...]}")
    else:
        reader = csv.DictReader(text.splitlines())
        rows, lines = [], []
        try:
            for row in reader:
                rows.append(row)
                lines.append(reader.line_num)
        except csv.Error as err:
            raise InputError(f"{where}:{reader.line_num}", f"not valid CSV: {err}") from None
    return _profile_from_rows(name, rows, source=where, lines=lines)


def _profile_from_rows(
    name: str, rows: list[dict], source: str, lines: list[int] | None = None
) -> LayerProfile:
    """A profile from its rows (dicts by column); errors name the cell as
    ``SOURCE[ROW].COLUMN``, rows counted from 0 after the header, with the line of a CSV
    file (``lines``: each row's last line)."""
    if not rows:
        raise InputError(source, "profile has no layers")
    has_latency = "lat_ms" in rows[0] and rows[0]["lat_ms"] not in (None, "")
    for column in PROFILE_COLUMNS:
        if column not in rows[0]:
            raise InputError(f"{source}.{column}", "missing column")

    def cell(i: int, column: str) -> str:
        line = "" if lines is None else f" (line {lines[i]})"
        return f"{source}[{i}].{column}{line}"

    def numbers(column: str) -> tuple[float, ...]:
        values = []
        for i, row in enumerate(rows):
            value = row.get(column)
            if isinstance(value, str):  # CSV cells are text
                with contextlib.suppress(ValueError):
                    value = float(value)
            values.append(number(value, cell(i, column), at_least=0))
        return tuple(values)

    for i, row in enumerate(rows):
        if row.get("layer") is None:  # a JSON row without the key, a short CSV row
            raise InputError(cell(i, "layer"), "missing")
    inputs = numbers("input")
    if inputs[0] <= 0:
        raise InputError(cell(0, "input"), "the model input must have > 0 elements")
    return LayerProfile(
        name=name,
        layer_names=tuple(str(row["layer"]) for row in rows),
        input_elements=inputs[0],
        output_elements=numbers("output"),
        fp_ops=numbers("fp_ops"),
        latency_ms=numbers("lat_ms") if has_latency else None,
    )
