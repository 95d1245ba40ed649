"""Hooks for the crash tests: kill a run at a named point, and trace what it solved.

Both are off unless their environment variable is set, and cost one dictionary
lookup when off.

* ``EDGESPLIT_FAILPOINT=NAME[:N[:SIGNAL]]`` SIGKILLs the process (or sends it
  ``SIGNAL``, e.g. ``SIGTERM``) the N-th time (default 1st) it reaches the point
  ``NAME``: ``template-staged`` (the template is written but not yet moved into
  place), ``chunk-half-written`` (half of a chunk's variables are written),
  ``chunk-written`` (all written and synced, not yet recorded as done),
  ``chunk-recorded`` (just recorded as done).
* ``EDGESPLIT_TRACE=FILE`` appends ``solve I`` when chunk I is about to be solved and
  ``done I`` once it is recorded, so a test can check that no recorded chunk is ever
  solved again.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_reached: Counter[str] = Counter()


def failpoint(name: str) -> None:
    """Kill (or signal) this process here if ``EDGESPLIT_FAILPOINT`` names this point
    and count."""
    spec = os.environ.get("EDGESPLIT_FAILPOINT")
    if not spec:
        return
    target, _, rest = spec.partition(":")
    if target != name:
        return
    nth, _, kind = rest.partition(":")
    _reached[name] += 1
    if _reached[name] == int(nth or 1):
        os.kill(os.getpid(), getattr(signal, kind or "SIGKILL"))


def trace(event: str, chunk: int) -> None:
    """Append ``EVENT CHUNK`` to ``EDGESPLIT_TRACE``, flushed to the OS before returning."""
    path = os.environ.get("EDGESPLIT_TRACE")
    if path:
        with open(path, "a") as log:
            log.write(f"{event} {chunk}\n")
