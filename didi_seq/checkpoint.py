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

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CheckpointError, DidiError
from .provenance import Provenance

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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_parent_dir(target: Path) -> None:
    parent = Path(target).resolve().parent
    if not parent.is_dir():
        raise DidiError(f"output directory {parent} does not exist; create it first")
    if not os.access(parent, os.W_OK):
        raise DidiError(f"output directory {parent} is not writable")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file via a temporary sibling + os.replace, so readers see old or new, never half."""
    path = Path(path)
    check_parent_dir(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a result file gets normal permissions
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_dir(target: Path, write: Callable[[Path], None]) -> None:
    """Fill a fresh temporary directory with ``write(tmp)`` and swap it in for ``target``."""
    target = Path(target)
    check_parent_dir(target)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a checkpoint gets normal permissions
    try:
        write(tmp)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            os.rename(target, old)
            os.rename(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
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
        return self.record.model_sha256 or file_sha256(self.path / MODEL_FILE)

    @property
    def id(self) -> str:
        """Short, stable identifier recorded next to every sample: name@hash."""
        name = self.record.name or f"{self.config.get('domain', '?')}-{self.config.get('kind', 'model')}"
        return f"{name}@{self.sha256[:12]}"


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
        name = (p / LATEST_FILE).read_text().strip()
        return resolve_checkpoint_dir(p / "checkpoints" / name)
    if not (p / CONFIG_FILE).exists():
        raise CheckpointError(f"{src} holds no {CONFIG_FILE}: not a didi-seq checkpoint directory")
    return p


def read_config(path: Path) -> dict:
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path / CONFIG_FILE} is unreadable or not JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else None
        raise CheckpointError(f"{path / CONFIG_FILE} is not a didi-seq config (format={found!r})")
    return config


def load_checkpoint(src: str | Path) -> Checkpoint:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = resolve_checkpoint_dir(src)
    config = read_config(path)
    model_file = path / MODEL_FILE
    if not model_file.exists():
        raise CheckpointError(f"{path} has no {MODEL_FILE}")
    try:
        state = load_file(str(model_file))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{model_file} is truncated or not a safetensors file ({e})") from None
    prov_file = path / PROVENANCE_FILE
    provenance = json.loads(prov_file.read_text()) if prov_file.exists() else {}
    return Checkpoint(path=path, config=config, state=state, provenance=provenance)


def load_state_strict(module: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """load_state_dict(strict=True) with a readable report instead of torch's wall of text.

    Non-strict loading is how random weights silently survive (DiDi-Instruct's evaluation
    release copies its teacher and discriminator from the freshly built backbone, then loads
    the checkpoint with ``strict=False``: haoyangzheng-ai/didi-instruct, ``main.py`` and
    ``algo.py`` at 7825a02); every missing, unexpected or mis-shaped key is an error.
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    )
    problems = []
    for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", shapes)):
        if keys:
            shown = ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
            problems.append(f"{len(keys)} {label}: {shown}")
    if problems:
        raise CheckpointError(f"{source} does not match the model: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def load_training_state(out_dir: Path) -> dict:
    """The resume state of a training run (pretrain or distill): LATEST's training_state.pt,
    read with ``weights_only=True`` so a crafted pickle cannot execute code."""
    import torch

    latest = out_dir / LATEST_FILE
    if not latest.exists():
        raise DidiError(f"nothing to resume in {out_dir}: no {LATEST_FILE} file (start without --resume)")
    path = out_dir / "checkpoints" / latest.read_text().strip() / STATE_FILE
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        raise DidiError(f"cannot resume from {path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}") from None
