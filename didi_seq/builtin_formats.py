"""The core's own teacher format: didi-seq checkpoint directories.

Registered directly by the plugin manager (the core cannot depend on a plugin);
torch is imported only when a checkpoint is actually loaded.
"""

from __future__ import annotations

from pathlib import Path

from .checkpoint import CONFIG_FILE, LATEST_FILE
from .formats import TeacherFormat
from .hookspecs import hookimpl


def _is_native(path: Path) -> bool:
    if path.is_file():
        path = path.parent
    return (path / CONFIG_FILE).exists() or (path / LATEST_FILE).exists()


def _load_native(path: Path, bf16: bool = True, **_):
    from .checkpoint import load_checkpoint
    from .teacher import NativeTeacher

    return NativeTeacher.from_checkpoint(load_checkpoint(path), bf16=bf16)


NATIVE = TeacherFormat(
    name="native",
    description="didi-seq checkpoint directory (safetensors + config.json)",
    detect=_is_native,
    load=_load_native,
)


@hookimpl
def register_teacher_formats(register):
    register(NATIVE)
