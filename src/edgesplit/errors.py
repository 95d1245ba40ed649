"""The error types that the command line prints in one line: bad user input, a machine
that cannot carry a run, and an interruption."""


class InputError(ValueError):
    """Bad user input: a scenario, sweep or profile file, or a command-line value.

    The message is one line that starts with the offending field, e.g.
    ``devices[3].arrival_rate: must be > 0, got -1.0``. The command line prints it
    as it is and exits with status 2.
    """

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class RunError(RuntimeError):
    """The machine cannot carry a run: a full disk, a read-only or unwritable store, too
    little memory for the sweep's template, chunk or programs.

    Like :class:`InputError`, the message is one line that starts with what to look at,
    a path or the knob to turn (``chunk``, ``topologies``, ``axes``), e.g.
    ``results/fig3.zarr: writing chunk 3 failed: No space left on device; ...``; the
    command line prints it as it is and exits with status 2. A store it stops is left
    intact: a rerun of the same command resumes it.
    """

    def __init__(self, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class Interrupted(KeyboardInterrupt):
    """A run stopped by SIGINT (Ctrl-C) or, under the command line, SIGTERM.

    A KeyboardInterrupt, so that code that handles Ctrl-C handles both; ``signum`` is
    the signal, and ``progress`` what was kept (e.g. ``3 of 8 chunks recorded in
    results/fig3.zarr; rerun the same command to resume``), or "" when unknown. The
    command line prints one line and exits with status 128 + signum (130, 143).
    """

    def __init__(self, signum: int, progress: str = ""):
        self.signum = signum
        self.progress = progress
        super().__init__(progress)
