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
TENSORBOARD_DIR = "tensorboard"  # --log tensorboard (training/log.py)
_DEBRIS_MARKERS = (".tmp-", ".old-", ".trash-")
# Every name a run of ours may hold at its top level; anything else is the user's and makes --out foreign.
RUN_ENTRIES = (LATEST_FILE, CHECKPOINTS_DIR, METRICS_FILE, LOCK_FILE, TENSORBOARD_DIR)


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


def check_run_dir(out_dir: Path) -> None:
    """``--out`` of pretrain/distill may be a new directory, an empty one or a run directory of ours;
    never a checkpoint directory, a directory inside one, or a directory holding anything else.

    Why: a run writes ``checkpoints/step_*``, ``LATEST``, ``metrics.jsonl`` and ``.lock`` into --out and
    retires old ``step_*`` directories, so a user's directory that happens to hold such names would lose
    them. Checked before anything is created (the CLI calls it before making --out's parents), read-only.
    """
    from ..io.outputs import is_checkpoint_dir

    out_dir = Path(out_dir)
    given = out_dir
    resolved = Path(os.path.realpath(out_dir))
    for d in (resolved, *resolved.parents):
        if is_checkpoint_dir(d):
            where = "is" if d == resolved else "lies inside"
            raise DidiError(f"--out {given} {where} the checkpoint directory {d}; a run needs a new or empty directory "
                            "(or its own run directory, with --resume)")
    for d in resolved.parents:
        if (d / LATEST_FILE).is_file() and (d / CHECKPOINTS_DIR).is_dir():
            raise DidiError(f"--out {given} lies inside the training run {d}; choose a directory outside it")
    if not os.path.lexists(resolved):
        return
    if not resolved.is_dir():
        raise DidiError(f"--out {given} exists and is not a directory; a run directory is needed")
    foreign = _foreign_entry(resolved)
    if foreign is not None:
        raise DidiError(f"--out {given} holds {foreign}, which a didi-seq run did not write; choose a new or empty "
                        "directory (a run writes checkpoints/, LATEST and metrics.jsonl into it)")


def _foreign_entry(out_dir: Path) -> str | None:
    """The first entry of ``out_dir`` a run of ours would not have written (``None``: it is ours or empty)."""
    try:
        names = sorted(os.listdir(out_dir))
    except OSError as e:
        raise DidiError(f"cannot read --out {out_dir}: {e.strerror}") from None
    for name in names:
        path = out_dir / name
        if _is_debris(path):
            continue
        if name not in RUN_ENTRIES:
            return repr(name)
        if name == CHECKPOINTS_DIR:
            if not path.is_dir() or path.is_symlink():
                return f"{name!r} (not a directory)"
            for sub in sorted(os.listdir(path)):
                if _is_debris(path / sub):
                    continue
                if not sub.startswith("step_") or not (path / sub / "config.json").is_file():
                    return repr(f"{name}/{sub}")
        elif name == TENSORBOARD_DIR:
            if not path.is_dir() or path.is_symlink():
                return f"{name!r} (not a directory)"
        elif name == LOCK_FILE and not _is_our_lock(path):
            return f"{name!r} (not a run lock)"
        elif name == METRICS_FILE and not _is_our_metrics(path):
            return f"{name!r} (not a run's metrics log)"
        elif name == LATEST_FILE and (path.is_symlink() or not path.is_file()):
            return f"{name!r} (not a regular file)"
    return None


def _is_our_lock(path: Path) -> bool:
    """A lock file of ours: a small regular file holding a pid (or nothing, if its writer died at once)."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size > 32:
        return False
    return path.read_bytes().strip().isdigit() or path.stat().st_size == 0


def _is_our_metrics(path: Path) -> bool:
    """A metrics log of ours: a regular file whose first line is a JSON object with an integer ``step``."""
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, "rb") as f:
        first = f.readline(1 << 16)
    if not first.strip():
        return path.stat().st_size == 0
    try:
        rec = json.loads(first)
    except ValueError:
        return False
    return isinstance(rec, dict) and isinstance(rec.get("step"), int)


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
