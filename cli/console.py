"""Where the CLI writes: results on stdout, status and progress on stderr.

The convention of Unix tools (and of typer/rich CLIs such as ``hf``): ``didi-seq sample > s.txt``
captures samples only, ``--quiet`` silences status and progress but never results or errors,
and output that goes to a file or a pipe is not wrapped at 80 columns (rich's default width
when it cannot ask a terminal), so a value never breaks across lines in a log.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # rich is imported lazily (with the command that needs it)
    from rich.console import Console
    from rich.progress import Progress

UNWRAPPED_WIDTH = 10_000  # "no wrapping" for files and pipes: wider than any line we print

_quiet = False


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def console(stderr: bool = False) -> Console:
    """A rich console on stdout (results) or stderr (status, progress; silent under --quiet)."""
    from rich.console import Console

    c = Console(stderr=stderr, quiet=stderr and _quiet)
    if not c.is_terminal:
        c = Console(stderr=stderr, quiet=stderr and _quiet, width=UNWRAPPED_WIDTH, soft_wrap=True)
    return c


def status(message: str) -> None:
    """A status line on stderr (a note, a summary of what was written), unless --quiet."""
    if not _quiet:
        print(message, file=sys.stderr, flush=True)


def progress(*columns, **options) -> Progress:
    """A rich progress bar on stderr; hidden under --quiet (``disable=`` still applies, e.g. rank > 0).

    A run that fails takes its bar away, so what stays on stderr is the one ``error:`` line (the bar's
    last state is in the run's metrics.jsonl); a finished run leaves its final bar."""
    from rich.progress import Progress

    class ClearedOnError(Progress):
        def __exit__(self, exc_type, exc, tb):
            if exc_type is None:
                return super().__exit__(exc_type, exc, tb)
            if not self.disable:  # Progress.stop would also print a blank line into a file or pipe
                self.live.transient = True
                self.live.stop()

    options["disable"] = options.get("disable", False) or _quiet
    return ClearedOnError(*columns, console=console(stderr=True), **options)
