"""Checks for values read from user files; each failure is one :class:`InputError` line."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path

from edgesplit.errors import InputError


def number(
    value,
    field: str,
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    integer: bool = False,
) -> float | int:
    """``value`` as a finite number within bounds, or an InputError naming ``field``."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(field, f"must be {kind}, got {value!r}")
    if not math.isfinite(value):
        raise InputError(field, f"must be finite, got {value}")
    if integer:
        if value != int(value):
            raise InputError(field, f"must be an integer, got {value!r}")
        value = int(value)
    if above is not None and not value > above:
        raise InputError(field, f"must be > {above:g}, got {value!r}")
    if at_least is not None and not value >= at_least:
        raise InputError(field, f"must be >= {at_least:g}, got {value!r}")
    if at_most is not None and not value <= at_most:
        raise InputError(field, f"must be <= {at_most:g}, got {value!r}")
    return value


def choice(value, field: str, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise InputError(field, f"must be one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def table(value, field: str, required: Iterable[str] = (), optional: Iterable[str] = ()) -> dict:
    """``value`` as a dict with every ``required`` key and no other than ``optional`` ones."""
    if not isinstance(value, dict):
        raise InputError(field, f"must be a table/object, got {type(value).__name__}")
    required = tuple(required)
    known = set(required) | set(optional)
    for key in value:
        if key not in known:
            raise InputError(_join(field, key), f"unknown key (known: {', '.join(sorted(known))})")
    for key in required:
        if key not in value:
            raise InputError(_join(field, key), "missing")
    return value


def nonempty_list(value, field: str) -> list:
    if not isinstance(value, list):
        raise InputError(field, f"must be a list, got {type(value).__name__}")
    if not value:
        raise InputError(field, "must not be empty")
    return value


def read_text(path: Path) -> str:
    """A user file's text, or an InputError naming the file."""
    try:
        return Path(path).read_text()
    except UnicodeDecodeError:
        raise InputError(str(path), "is not a text file") from None
    except OSError as err:
        raise InputError(str(path), f"cannot read: {err.strerror}") from None


def load_json(text: str, field: str):
    """Parse JSON, refusing NaN and Infinity (which Python's json accepts)."""

    def reject(token):
        raise InputError(field, f"{token} is not allowed")

    try:
        return json.loads(text, parse_constant=reject)
    except json.JSONDecodeError as err:
        raise InputError(field, f"not valid JSON: {err}") from None


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key
