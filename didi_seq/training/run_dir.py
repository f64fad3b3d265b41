"""A training run directory (pretrain and distill share it) and how it survives a crash.

Layout::

    LATEST              name of the newest complete checkpoint (written by rename, after it)
    checkpoints/step_N  complete checkpoint directories (each written by rename)
    metrics.jsonl       one JSON line per finished step

A run may be killed at any instant (SIGKILL, OOM, a pre-empted node). Everything a reader
can see under a real name is therefore complete: checkpoints appear by rename, LATEST is
replaced by rename, and old checkpoints are renamed to a hidden name *before* they are
deleted, so a half-deleted one is never visible either. What a kill can leave behind is
hidden debris (``.name.tmp-*``, ``.name.old-*``, ``.name.trash-*``) and metric lines for
steps after the last checkpoint; ``prepare_resume`` removes both, so the resumed run's
log reads as if it had never stopped.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from pathlib import Path

from ..errors import DidiError
from ..io.checkpoint import LATEST_FILE, atomic_write_bytes, check_parent_dir, write_error

CHECKPOINTS_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".lock"  # held (flock) by the one process training into the directory; holds its pid
_DEBRIS_MARKERS = (".tmp-", ".old-", ".trash-")


def checkpoint_dir(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / CHECKPOINTS_DIR / f"step_{step:07d}"


def publish_checkpoint(out_dir: Path, written: Path, keep: int) -> None:
    """Point LATEST at a freshly written checkpoint, then retire all but the ``keep`` newest."""
    out_dir = Path(out_dir)
    atomic_write_bytes(out_dir / LATEST_FILE, (written.name + "\n").encode())
    for old in sorted((out_dir / CHECKPOINTS_DIR).glob("step_*"))[:-keep]:
        if old.name != written.name:
            _discard(old)


def _discard(path: Path) -> None:
    """Rename first (atomic), delete after: a kill mid-delete leaves only hidden debris."""
    trash = path.parent / f".{path.name}.trash-{os.getpid()}"
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _is_debris(path: Path) -> bool:
    return path.name.startswith(".") and any(m in path.name for m in _DEBRIS_MARKERS)


def prepare_resume(out_dir: Path, step: int) -> None:
    """Tidy a run directory before continuing it from the checkpoint at ``step``.

    Removes hidden debris a killed writer left, and drops metric lines of steps after
    ``step`` (they will be recomputed) as well as a torn last line.
    """
    out_dir = Path(out_dir)
    for parent in (out_dir, out_dir / CHECKPOINTS_DIR):
        if parent.is_dir():
            for p in parent.iterdir():
                if _is_debris(p):
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
    metrics = out_dir / METRICS_FILE
    if metrics.exists():
        kept = []
        for line in metrics.read_text(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by the kill
            if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= step:
                kept.append(line + "\n")
        atomic_write_bytes(metrics, "".join(kept).encode())


def append_metrics(out_dir: Path, record: dict) -> None:
    with open(Path(out_dir) / METRICS_FILE, "a") as f:
        f.write(json.dumps(record) + "\n")


@contextlib.contextmanager
def exclusive_run(out_dir: Path, enabled: bool = True):
    """Hold the run directory for one training run: a second run into it (another pretrain or
    distill, a second terminal) fails at once with the holder's pid instead of interleaving
    steps and losing one run's work.

    The lock is ``flock`` on ``out_dir/.lock``, so the kernel releases it when the holder dies
    (a SIGKILLed run never blocks its own --resume). The directory is created if needed and
    removed again if the run left nothing in it; the lock file is removed on exit. Under
    torchrun only rank 0 takes it (``enabled``): all ranks belong to one run.
    """
    if not enabled:
        yield
        return
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DidiError(f"--out {out_dir} exists and is not a directory; a run directory is needed")
    check_parent_dir(out_dir)
    created = False
    try:
        out_dir.mkdir()
        created = True
    except FileExistsError:
        pass
    except OSError as e:
        raise write_error(out_dir, e) from None
    lock = out_dir / LOCK_FILE
    try:
        fd = _acquire(lock, out_dir)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()  # while still held: a waiter that opened it re-checks the inode (_acquire)
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()  # only succeeds when the run wrote nothing


def _acquire(lock: Path, out_dir: Path) -> int:
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise write_error(lock, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise DidiError(f"{out_dir} is in use by another training run (pid {holder}); wait for it to finish "
                            f"or choose another --out") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:  # else its previous holder removed the file between our open and flock: try again
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd
