"""The one error type that user input raises."""


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
