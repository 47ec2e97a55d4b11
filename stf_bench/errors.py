"""The one exception type the CLI turns into a clear message and a non-zero exit."""


class StfBenchError(ValueError):
    """A user-facing error: the message names the bad thing and how to fix it."""
