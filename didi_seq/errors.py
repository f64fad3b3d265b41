"""One exception type for problems the user can fix.

The CLI prints ``error: <message>`` for these (one line, exit code 2) instead of a
traceback; anything else is a bug and keeps its traceback.
"""


class DidiError(Exception):
    """A user-facing error: the message names the problem and, where possible, the fix."""


class DidiWarning(UserWarning):
    """Something the user should know that does not stop the run (the CLI prints it as one ``warning:`` line)."""


class CheckpointError(DidiError):
    """A checkpoint is missing, truncated, of the wrong format or does not match the model."""


def install_command(extra: str | None = None, where: bool = True) -> str:
    """The command that installs didi-seq (with an optional extra such as "judge") into the active environment.

    Why one function: didi-seq is installed from a clone of its repository and is not on PyPI, so a hint
    naming the distribution with an extra, as for a PyPI package, sends a user nowhere (issue 25).
    Every install hint, in errors, help texts and model cards, is built here; ``where`` adds where to run it."""
    command = f'pip install -e ".[{extra}]"' if extra else "pip install -e ."
    return f"{command} in the didi-seq clone" if where else command
