"""Checkpoints on disk: a directory with safetensors weights, config, tokenizer, provenance.

Layout (one directory per checkpoint)::

    model.safetensors   weights (the EMA weights for a trained teacher)
    config.json         {"format": "didi-seq", "domain": ..., "kind": ..., "model": {...}, ...}
    tokenizer.json      the domain tokenizer, so a checkpoint is self-contained
    provenance.json     where the weights came from: command, step, data hash, metrics
    README.md           a Hugging Face-style model card generated from the two above (model_card.py)

Why directories are written to a temporary sibling and renamed into place: a crash or
a full disk must never leave a half-written checkpoint where a good one was.
A training run directory holds ``checkpoints/<step>/`` plus a ``LATEST`` pointer
file; passing the run directory anywhere a checkpoint is expected resolves it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError, DidiError
from .provenance import Provenance
from .untrusted import check_regular_file, first_line, read_bounded, read_json, safetensors_shapes

FORMAT = "didi-seq"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
PROVENANCE_FILE = "provenance.json"
STATE_FILE = "training_state.pt"  # optimiser/RNG state beside a checkpoint, for --resume
LATEST_FILE = "LATEST"

if TYPE_CHECKING:  # torch is imported lazily so `didi-seq --help` stays fast
    import torch


def file_sha256(path: Path) -> str:
    """sha256 of a file, streamed in 1 MiB chunks (weights may be larger than memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_HASHES: dict[tuple, str] = {}


def weights_sha256(path: Path) -> str:
    """The sha256 of a weights file as it is on disk now, cached for this process by (file, size, mtime).

    Why hashed and not read from provenance.json: a checkpoint's id and sha256 go next to every
    sample and RGAS finds its teacher by them, and provenance.json is a file anyone can edit; zeroed
    or re-typed weights must not pass for the model their provenance names. A file rewritten in place
    changes size or mtime, so a stale cache entry is never used."""
    st = check_regular_file(Path(path), "weights file", error=CheckpointError)
    key = (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        try:
            _HASHES[key] = file_sha256(Path(path))
        except OSError as e:
            raise CheckpointError(f"cannot read weights file {path}: {e.strerror or first_line(e)}") from None
    return _HASHES[key]


def check_parent_dir(target: Path) -> None:
    parent = Path(target).resolve().parent
    if not parent.is_dir():
        raise DidiError(f"output directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise DidiError(f"output directory {parent} is not writable")


def write_error(path: Path, e: OSError) -> DidiError:
    """A failed write (disk full, permission denied, read-only file system) as one line naming the file."""
    return DidiError(f"cannot write {path}: {e.strerror or first_line(e)}")


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-"


def remove_stale_temps(path: Path) -> None:
    """Delete temporaries a killed write to ``path`` left behind (``.NAME.tmp-PID-*`` of a dead PID)."""
    path = Path(path)
    prefix = _temp_prefix(path)
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue  # another process is writing this path right now
        with contextlib.suppress(OSError):
            os.unlink(path.parent / name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def write_temp(path: Path, data: bytes) -> Path:
    """``data`` fsynced into a hidden temporary beside ``path`` (``.NAME.tmp-PID-*``), with normal permissions.

    Nothing is visible under ``path`` yet; ``os.replace(tmp, path)`` publishes it. Temporaries of
    earlier writes whose process died are removed first, so a killed write leaves debris only
    until the next write to the same path.
    """
    path = Path(path)
    check_parent_dir(path)
    remove_stale_temps(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{_temp_prefix(path)}{os.getpid()}-")
    except OSError as e:
        raise write_error(path, e) from None
    umask = os.umask(0)
    os.umask(umask)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o666 & ~umask)  # mkstemp makes 0600; a result file gets normal permissions
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise write_error(path, e) from None
        raise
    return Path(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file via a temporary sibling + os.replace, so readers see old or new, never half."""
    path = Path(path)
    tmp = write_temp(path, data)
    try:
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_error(path, e) from None


def atomic_write_dir(target: Path, write: Callable[[Path], None]) -> None:
    """Fill a fresh temporary directory with ``write(tmp)`` and swap it in for ``target``."""
    target = Path(target)
    check_parent_dir(target)
    try:
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    except OSError as e:
        raise write_error(target, e) from None
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a checkpoint gets normal permissions
    try:
        _fill_dir(tmp, target, write)
        for f in tmp.rglob("*"):  # a sharded training state is a subdirectory (training/sharding.py)
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise write_error(target, e) from None
        raise


def _fill_dir(tmp: Path, target: Path, write: Callable[[Path], None]) -> None:
    """``write(tmp)``; a full disk inside a writer library (safetensors, torch.save) is an error naming ``target``."""
    try:
        write(tmp)
    except RuntimeError as e:  # torch.save and safetensors wrap OS errors of their writers
        if "No space left" in str(e) or "Disk quota" in str(e):
            raise DidiError(f"cannot write {target}: No space left on device") from None
        raise


@dataclass
class Checkpoint:
    path: Path
    config: dict
    state: dict[str, torch.Tensor]
    provenance: dict = field(default_factory=dict)

    @property
    def record(self) -> Provenance:
        """The provenance as a typed record (``provenance`` is the JSON object as read)."""
        return Provenance.from_dict(self.provenance)

    @property
    def tokenizer_file(self) -> Path | None:
        p = self.path / TOKENIZER_FILE
        return p if p.exists() else None

    @property
    def sha256(self) -> str:
        """The hash of the weights file itself (``weights_sha256``), never provenance.json's claim."""
        return weights_sha256(self.path / MODEL_FILE)

    @property
    def name(self) -> str:
        """provenance.json's name when it is a non-empty string, else ``domain-kind``."""
        name = self.provenance.get("name")
        if isinstance(name, str) and name.strip():
            return name
        return f"{self.config.get('domain', '?')}-{self.config.get('kind', 'model')}"

    @property
    def id(self) -> str:
        """Short, stable identifier recorded next to every sample: name@hash of the weights."""
        return f"{self.name}@{self.sha256[:12]}"


def checkpoint_config(domain: str, kind: str, model: dict, spec, schedule, architecture: str | None = None) -> dict:
    """The one layout of a checkpoint's config.json (``save_checkpoint`` adds the format's name and version):
    the domain, "teacher" or "student", the network's config, the teacher spec and the noise schedule.
    ``architecture`` names the network family a format loads it with; without it the native DiT is meant
    (what pretraining writes)."""
    return {"domain": domain, "kind": kind, **({"architecture": architecture} if architecture else {}), "model": model,
            "spec": spec.to_dict(), "schedule": schedule.to_dict()}


def save_checkpoint(
    target: Path,
    state: dict[str, torch.Tensor],
    config: dict,
    provenance: dict | None = None,
    tokenizer_json: str | None = None,
    extra: Callable[[Path], None] | None = None,
) -> None:
    """Write a checkpoint directory atomically; ``extra(tmp)`` may add files (training state)."""
    from safetensors.torch import save_file

    from .model_card import write_model_card

    config = {"format": FORMAT, "format_version": FORMAT_VERSION, **config}

    def write(tmp: Path) -> None:
        save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp / MODEL_FILE))
        prov = dict(provenance or {})
        prov["model_sha256"] = file_sha256(tmp / MODEL_FILE)
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        (tmp / PROVENANCE_FILE).write_text(json.dumps(prov, indent=2) + "\n")
        write_model_card(tmp, config, prov)
        if tokenizer_json is not None:
            (tmp / TOKENIZER_FILE).write_text(tokenizer_json)
        if extra is not None:
            extra(tmp)

    atomic_write_dir(Path(target), write)


def resolve_checkpoint_dir(src: str | Path) -> Path:
    """A checkpoint directory, a file inside one, or a training run directory (→ LATEST)."""
    p = Path(src)
    if not p.exists():
        raise CheckpointError(f"checkpoint {src} not found")
    if p.is_file():
        if p.name == MODEL_FILE or p.name == CONFIG_FILE:
            return p.parent
        raise CheckpointError(f"{src} is a file; pass the checkpoint directory that holds {MODEL_FILE}")
    if (p / LATEST_FILE).exists():
        return resolve_checkpoint_dir(latest_checkpoint(p))
    if not (p / CONFIG_FILE).exists():
        raise CheckpointError(f"{src} holds no {CONFIG_FILE}: not a didi-seq checkpoint directory")
    return p


def latest_checkpoint(run_dir: Path) -> Path:
    """The checkpoint directory a run's LATEST names. LATEST is untrusted: it may only name a
    directory directly under the run's ``checkpoints/`` (no ``..``, no absolute path, no binary)."""
    latest = Path(run_dir) / LATEST_FILE
    raw = read_bounded(latest, "file", limit=4096, error=CheckpointError)
    try:
        name = raw.decode("ascii").strip()
    except UnicodeDecodeError:
        name = None
    if not name or not name.isprintable() or name in (".", "..") or "/" in name or "\\" in name:
        raise CheckpointError(f"{latest} does not name a checkpoint of this run (expected e.g. step_0000100); "
                              f"the run directory is damaged")
    path = Path(run_dir) / "checkpoints" / name
    if not path.is_dir():
        raise CheckpointError(f"{latest} names {name}, but {path} does not exist; the run directory is damaged")
    return path


def read_config(path: Path) -> dict:
    try:
        config = read_json(path / CONFIG_FILE, "config", error=CheckpointError)
    except CheckpointError as e:
        raise CheckpointError(f"{path / CONFIG_FILE} is unreadable or not JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise CheckpointError(f"{path / CONFIG_FILE} is not a didi-seq config (format={found!r})")
    return config


def read_provenance(path: Path) -> dict:
    """A checkpoint's provenance.json (``{}`` when it has none); a malformed one is an error."""
    prov_file = Path(path) / PROVENANCE_FILE
    if not prov_file.exists():
        return {}
    prov = read_json(prov_file, "provenance file", error=CheckpointError)
    if not isinstance(prov, dict):
        raise CheckpointError(f"{prov_file} holds a JSON {type(prov).__name__}, expected an object")
    return prov


def load_checkpoint(src: str | Path) -> Checkpoint:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = resolve_checkpoint_dir(src)
    config = read_config(path)
    model_file = path / MODEL_FILE
    if not model_file.exists():
        raise CheckpointError(f"{path} has no {MODEL_FILE}")
    safetensors_shapes(model_file, error=CheckpointError)  # a bounded header, before the weights are mapped
    try:
        state = load_file(str(model_file))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{model_file} is truncated or not a safetensors file ({e})") from None
    return Checkpoint(path=path, config=config, state=state, provenance=read_provenance(path))


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict(strict=True) with a readable report instead of torch's wall of text.

    Non-strict loading is how random weights silently survive (DiDi-Instruct's evaluation
    release copies its teacher and discriminator from the freshly built backbone, then loads
    the checkpoint with ``strict=False``: haoyangzheng-ai/didi-instruct, ``main.py`` and
    ``algo.py`` at 7825a02); every missing, unexpected or mis-shaped key is an error.
    """
    check_state_matches({k: tuple(v.shape) for k, v in module.state_dict().items()}, state, source)
    module.load_state_dict(state, strict=True)


def check_state_matches(expected: dict[str, tuple[int, ...]], state: dict[str, torch.Tensor], source: str) -> None:
    """Every missing, unexpected or mis-shaped key of ``state`` against ``expected`` (name → shape), as one error."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} vs model {tuple(v)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v)
    )
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes)):
        if keys:
            shown = ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
            problems.append(f"{len(keys)} {label}: {shown}")
    if problems:
        raise CheckpointError(f"{source} does not match the model: " + "; ".join(problems))


# the checkpoint kind each training command writes, and the command that writes it
RUN_KINDS = {"teacher": "pretrain", "student": "distill"}


def load_training_state(out_dir: Path, kind: str | None = None) -> dict:
    """The resume state of a training run (pretrain or distill): LATEST's training_state.pt,
    read with ``weights_only=True`` so a crafted pickle cannot execute code. ``kind`` ("teacher"
    for pretrain, "student" for distill): the run must be one the resuming command wrote."""
    import torch

    latest = out_dir / LATEST_FILE
    if not latest.exists():
        raise DidiError(f"nothing to resume in {out_dir}: no {LATEST_FILE} file (start without --resume)")
    ckpt = latest_checkpoint(out_dir)
    if kind is not None:
        found = read_config(ckpt).get("kind")
        if found != kind:
            raise DidiError(f"{out_dir} is a {RUN_KINDS.get(found, str(found))} run, not a {RUN_KINDS[kind]} run; "
                            f"resume it with `didi-seq {RUN_KINDS.get(found, '...')} --resume` or choose another --out")
    path = ckpt / STATE_FILE
    check_regular_file(path, "training state", error=CheckpointError)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        raise DidiError(f"cannot resume from {path}: {type(e).__name__}: {first_line(e)}") from None
    if not isinstance(state, dict) or not isinstance(state.get("step"), int) or not isinstance(state.get("config"), dict):
        raise DidiError(f"cannot resume from {path}: it is not a didi-seq training state")
    return state
