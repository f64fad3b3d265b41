"""Optional mirrors of the training log: metrics.jsonl stays the source of truth (resume trims it,
tests and benchmarks read it); a mirror only shows the same numbers in a viewer.

``tensorboard``: scalars under ``RUN_DIR/tensorboard`` (torch's SummaryWriter; needs the
``tensorboard`` extra). A resumed run appends to the same directory, and TensorBoard shows the
latest value per step, so re-run steps after a crash overwrite rather than duplicate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ..errors import DidiError, install_command

LOGGERS = ("tensorboard",)
TENSORBOARD_DIR = "tensorboard"


class NullLogger:
    def log(self, step: int, metrics: dict) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardLogger:
    def __init__(self, log_dir: Path):
        try:  # fail before the run starts, not at its first step
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch raises this when the tensorboard package is missing
            raise DidiError(f"--log tensorboard needs the tensorboard package: {install_command('tensorboard')}") from None
        self._open = lambda: SummaryWriter(log_dir=str(log_dir))
        self.writer = None  # opened at the first step: a run that fails to start leaves no directory behind

    def log(self, step: int, metrics: dict) -> None:
        self.writer = self.writer or self._open()
        for key, value in metrics.items():
            if key != "step" and isinstance(value, int | float) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def make_logger(kind: str | None, run_dir: Path) -> NullLogger | TensorBoardLogger:
    if kind is None:
        return NullLogger()
    if kind not in LOGGERS:
        raise DidiError(f"unknown --log {kind!r}; known: {', '.join(LOGGERS)}")
    return TensorBoardLogger(Path(run_dir) / TENSORBOARD_DIR)


def check_logger(kind: str | None) -> None:
    """Fail before a run starts (and before --out's parents are made): an unknown kind, a missing package."""
    make_logger(kind, Path(".")).close()  # nothing is written: a writer opens at the first step


@contextlib.contextmanager
def training_logger(kind: str | None, run_dir: Path, enabled: bool = True) -> Iterator[NullLogger | TensorBoardLogger]:
    """A mirror for the run in ``run_dir`` (only where ``enabled``: rank 0 of a torchrun group); closed on exit."""
    logger = make_logger(kind, run_dir) if enabled else NullLogger()
    try:
        yield logger
    finally:
        logger.close()
