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


def printable(text) -> str:
    """``text`` with every control character but tab and newline shown as ``\\xNN``. Why: sample
    files and checkpoints are untrusted, and a raw ESC or BEL printed to a terminal can clear it,
    retitle it or hide what was printed."""
    return "".join(c if c in "\t\n" or (c.isprintable() and not 0x7f <= ord(c) < 0xa0) else f"\\x{ord(c):02x}"
                   if ord(c) < 0x100 else f"\\u{ord(c):04x}" for c in str(text))


def literal(text):
    """``text`` as a rich ``Text``: printed as it is, never parsed as markup (``[/bold]`` in a sample field
    must not crash the table or restyle it), with control characters made visible (``printable``)."""
    from rich.text import Text

    return Text(printable(text))


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
