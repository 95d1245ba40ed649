"""SIGINT and SIGTERM, stopping a run between chunks.

Under the command line (:func:`interrupts_raise`) both raise
:class:`~edgesplit.errors.Interrupted`, a KeyboardInterrupt: at once, or, when one
lands inside an import, as that import returns; :func:`signals_deferred` holds them
while a chunk is written and recorded, and :func:`checkpoint` raises again one that
Python dropped where it landed. Light (no JAX, no NumPy), so that the command
line installs its handlers before it imports anything heavy.
"""

from __future__ import annotations

import builtins
import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

from edgesplit.errors import Interrupted


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends (a chunk written and recorded), then
    deliver the first as it would have been. A second signal is not held: it goes to
    its handler at once (a store stopped mid-write stays consistent, as after a kill).

    Only in the main thread, where Python runs signal handlers; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler is None or handler == signal.SIG_IGN:  # not set from Python, or ignored
            continue
        previous[signum] = handler

        def hold(got, frame, handler=handler):
            held.append(got)
            if len(held) > 1:  # asked twice: stop now
                _deliver(handler, got, frame)

        signal.signal(signum, hold)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if len(held) == 1:
            signal.raise_signal(held[0])


def _deliver(handler, signum: int, frame) -> None:
    if callable(handler):
        handler(signum, frame)
    else:  # SIG_DFL: what the signal does by default
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


_received: list[int] = []  # signals met by interrupts_raise's handler, in order


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """While the block runs (the command line), SIGINT and SIGTERM raise
    :class:`~edgesplit.errors.Interrupted`, and are remembered: one that lands in an
    import is raised as the outermost import returns (an import statement's, in the
    main thread), not inside it; one raised where Python drops exceptions (a
    garbage-collection callback, a finalizer) is not printed; the next
    :func:`checkpoint` raises either. An ignored SIGINT (``nohup``, a
    background job) stays ignored. Only in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        _received.append(signum)
        if not _importing(frame):  # an import would turn it into an ImportError
            raise Interrupted(signum)

    def unraisable(report):
        if not isinstance(report.exc_value, KeyboardInterrupt):
            hook(report)

    main = threading.main_thread()
    depth = 0  # imports under way in the main thread

    def importing(*args, **kwargs):
        nonlocal depth
        if threading.current_thread() is not main:
            return load(*args, **kwargs)
        before = len(_received)
        depth += 1
        try:
            module = load(*args, **kwargs)
        finally:
            depth -= 1
        if depth == 0 and len(_received) > before:  # a signal landed inside the import
            raise Interrupted(_received[before])
        return module

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if handler is not None and handler != signal.SIG_IGN:
            previous[signum] = signal.signal(signum, interrupt)
    hook, sys.unraisablehook = sys.unraisablehook, unraisable
    load, builtins.__import__ = builtins.__import__, importing
    try:
        yield
    finally:
        builtins.__import__ = load
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        sys.unraisablehook = hook
        _received.clear()


def _importing(frame) -> bool:
    """Whether the interrupted code runs inside an import."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def received() -> int | None:
    """The first signal :func:`interrupts_raise`'s handler met, if any: an error raised
    after it may be its consequence (a library that turned the interruption into an
    ImportError, say)."""
    return _received[0] if _received else None


def checkpoint() -> None:
    """Raise the interruption a signal asked for, if Python dropped it where it landed."""
    if _received:
        raise Interrupted(_received[0])
