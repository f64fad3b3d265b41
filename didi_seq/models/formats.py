"""Teacher formats: how didi-seq reads a checkpoint layout, and the core's own (``native``).

A plugin teaches didi-seq another layout (MDLM, DPLM, ...) by registering a ``TeacherFormat``
through ``register_teacher_formats``; the core registers ``native`` (didi-seq checkpoint
directories) and the masked diffusion LLMs ``llada`` and ``dream`` (``dllm_formats``) through the
same hook, as an entry point like any plugin's. torch is imported only when a checkpoint is
actually loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..io.checkpoint import CONFIG_FILE, LATEST_FILE
from ..registry.hookspecs import hookimpl
from .dllm_formats import FAMILIES, detector, loader


@dataclass(frozen=True)
class TeacherFormat:
    """``detect(path)`` says whether a path is in this format; ``load(path, domain=…,
    **options)`` returns a ``didi_seq.models.teacher.TeacherAdapter``."""

    name: str
    description: str
    detect: Callable[[Path], bool]
    load: Callable[..., object]


def _is_native(path: Path) -> bool:
    """A didi-seq checkpoint (or run directory) of the core DiT. Not: another library's directory
    (a transformers config names a ``model_type`` and no didi-seq ``format``), nor a didi-seq
    checkpoint of another architecture (a plugin's format loads those)."""
    from ..errors import DidiError
    from ..io.checkpoint import resolve_checkpoint_dir
    from ..io.untrusted import read_json

    if path.is_file():
        path = path.parent
    if not (path / CONFIG_FILE).exists() and not (path / LATEST_FILE).exists():
        return False
    try:
        config = read_json(resolve_checkpoint_dir(path) / CONFIG_FILE, "config")
    except (OSError, ValueError, DidiError):
        return True  # ours or not, loading it reports the broken file by name
    if not isinstance(config, dict):
        return True
    if "model_type" in config and "format" not in config:
        return False
    return config.get("architecture", "dit") == "dit"


def _load_native(path: Path, bf16: bool = True, **_):
    from ..io.checkpoint import load_checkpoint
    from .teacher import NativeTeacher

    return NativeTeacher.from_checkpoint(load_checkpoint(path), bf16=bf16)


NATIVE = TeacherFormat(
    name="native",
    description="didi-seq checkpoint directory (safetensors + config.json)",
    detect=_is_native,
    load=_load_native,
)


DLLM = tuple(TeacherFormat(f.name, f.description, detector(f), loader(f)) for f in FAMILIES)


@hookimpl
def register_teacher_formats(register):
    register(NATIVE)
    for fmt in DLLM:
        register(fmt)
