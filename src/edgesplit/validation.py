"""Checks for values read from user files; each failure is one :class:`InputError` line.

The limits every input is held to live here, once: the ranges of the dtypes the kernels
hold numbers in (:data:`INT32_MAX`, :data:`FLOAT_MAX`), and how large and how deeply
nested a file may be (:data:`MAX_FILE_BYTES`, :data:`MAX_NESTING`).
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edgesplit.errors import InputError

INT32_MAX = int(np.iinfo(np.int32).max)
"""2**31 - 1: the largest count a kernel holds. Devices, servers, CRBs, RRBs, rounds,
price steps, and the running totals of blocks a server sells are int32."""

FLOAT_MAX = {name: float(np.finfo(name).max) for name in ("float64", "float32")}
"""The largest finite float of each precision a sweep computes in (scenario files
compute in float64)."""

MAX_FILE_BYTES = 16 * 2**20
"""The largest input file read, 16 MiB: sweep and profile files are a few KiB, and a
scenario file of ten thousand devices about 2 MiB. At most this many bytes (and one
more) are read, so a device or a pipe without end is not read forever."""

MAX_NESTING = 64
"""The deepest nesting of arrays, tables and objects (and of dotted TOML keys) a file
may have. An edgesplit file needs 5 levels (a scenario's models, layers, layer); the
limit keeps the parsers, which recurse once per level, far from Python's recursion
limit, and is checked on the text before they run."""


def number(
    value,
    field: str,
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    integer: bool = False,
) -> float | int:
    """``value`` as a finite number within bounds, or an InputError naming ``field``.

    Integers may be of any size in a file (TOML and JSON parse them exactly); one beyond
    the float64 range is refused as not finite, whatever the bounds."""
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(field, f"must be {kind}, got {show(value)}")
    if abs(value) > sys.float_info.max or not math.isfinite(value):  # an int: exact compare
        raise InputError(field, f"must be finite, got {show(value)}")
    if integer:
        if value != int(value):
            raise InputError(field, f"must be an integer, got {show(value)}")
        value = int(value)
    if above is not None and not value > above:
        raise InputError(field, f"must be > {_bound(above)}, got {show(value)}")
    if at_least is not None and not value >= at_least:
        raise InputError(field, f"must be >= {_bound(at_least)}, got {show(value)}")
    if at_most is not None and not value <= at_most:
        raise InputError(field, f"must be <= {_bound(at_most)}, got {show(value)}")
    return value


def _bound(bound: float) -> str:
    """A bound as an error message shows it: an integer in full, a float in short."""
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def show(value) -> str:
    """``value`` as an error message shows it: as its repr, but an integer of more than
    15 digits in short (``1e+20``; beyond float64, by its size in bits)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if abs(value) < 10**15:
            return str(value)
        if abs(value) <= sys.float_info.max:
            return f"{value:.6g}"
        return f"{'a negative' if value < 0 else 'an'} integer of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


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


_KINDS = {
    stat.S_ISDIR: "a directory",
    stat.S_ISCHR: "a character device",
    stat.S_ISBLK: "a block device",
    stat.S_ISSOCK: "a socket",
}


def read_text(path: Path) -> str:
    """A user file's text (UTF-8, with or without a byte-order mark; newlines as
    ``\\n``), or an InputError naming the file.

    Only a regular file or a pipe is read (``/dev/zero`` is refused), and at most
    :data:`MAX_FILE_BYTES` of it: a larger one is refused."""
    where = str(path)
    try:
        with open(path, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
                kind = next((name for test, name in _KINDS.items() if test(mode)), "special")
                raise InputError(where, f"is not a regular file (it is {kind})")
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        if err.strerror is None:
            raise InputError(where, f"cannot read: {err}") from None
        if err.errno == 21:  # EISDIR: some systems refuse to open a directory at all
            raise InputError(where, "is not a regular file (it is a directory)") from None
        raise InputError(where, f"cannot read: {err.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError(
            where, f"is larger than {MAX_FILE_BYTES // 2**20} MiB, the most edgesplit reads"
        )
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark, which some editors write, dropped
    except UnicodeDecodeError:
        raise InputError(where, "is not a text file") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")  # as text mode reads it


# What the nesting check skips: strings (their brackets are text) and TOML comments.
_JSON_STRINGS = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"?')
_TOML_STRINGS = re.compile(
    r"'''[^']*+(?:'(?!'')[^']*+)*+(?:'''|\Z)"
    r'|"""[^"\\]*+(?:(?:\\.|"(?!""))[^"\\]*+)*+(?:"""|\Z)'
    r'|"[^"\\\n]*+(?:\\.[^"\\\n]*+)*+"?'
    r"|'[^'\n]*+'?"
    r"|#[^\n]*+",
    re.DOTALL,
)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
# A chain of MAX_NESTING dotted keys (a.b.c...), starting at a word's start so that the
# search stays linear; strings were replaced by a word, as "a"."b" is a chain too.
_DOTTED_KEYS = re.compile(rf"(?<![\w-])(?:[\w-]++[ \t]*+\.[ \t]*+){{{MAX_NESTING}}}")


def check_nesting(text: str, field: str, language: str) -> None:
    """Refuse ``text`` (JSON or TOML) nested deeper than :data:`MAX_NESTING`, before a
    parser recurses into it: brackets and braces outside strings are counted, and in
    TOML the parts of a dotted key."""
    strings = _JSON_STRINGS if language == "JSON" else _TOML_STRINGS
    bare = strings.sub("s", text)
    brackets = np.frombuffer(_NOT_BRACKETS.sub("", bare).encode(), np.uint8)
    steps = np.where((brackets == ord("[")) | (brackets == ord("{")), np.int8(1), np.int8(-1))
    if steps.size and int(np.cumsum(steps, dtype=np.int32).max()) > MAX_NESTING:
        raise InputError(field, f"nests arrays and tables deeper than {MAX_NESTING} levels")
    if language == "TOML" and _DOTTED_KEYS.search(bare):
        raise InputError(field, f"nests dotted keys deeper than {MAX_NESTING} levels")


def load_json(text: str, field: str):
    """Parse JSON, refusing NaN and Infinity (which Python's json accepts), a key given
    twice in one object (which it would keep the last of), and nesting deeper than
    :data:`MAX_NESTING`. A number beyond float64's range parses as infinite, for the
    checks of its field to refuse."""

    def reject(token):
        raise InputError(field, f"{token} is not allowed")

    def unique(pairs):
        obj = {}
        for key, value in pairs:
            if key in obj:
                raise InputError(field, f"repeats the key {show(key)} in one object")
            obj[key] = value
        return obj

    check_nesting(text, field, "JSON")
    try:
        return json.loads(text, parse_constant=reject, object_pairs_hook=unique)
    except json.JSONDecodeError as err:
        raise InputError(field, f"not valid JSON: {err}") from None
    except InputError:  # from the hooks: a ValueError too, and already one line
        raise
    except RecursionError:  # not reached past check_nesting; kept as a last guard
        raise InputError(field, f"nests deeper than {MAX_NESTING} levels") from None
    except ValueError as err:  # an integer of more digits than Python converts
        raise InputError(field, f"not valid JSON: {str(err).split(';')[0]}") from None


def _join(field: str, key: str) -> str:
    return f"{field}.{key}" if field else key
