"""One exception type for problems the user can fix.

The CLI prints ``error: <message>`` for these (one line, exit code 2) instead of a
traceback; anything else is a bug and keeps its traceback.
"""


class DidiError(Exception):
    """A user-facing error: the message names the problem and, where possible, the fix."""


class CheckpointError(DidiError):
    """A checkpoint is missing, truncated, of the wrong format or does not match the model."""
