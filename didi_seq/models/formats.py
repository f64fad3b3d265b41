"""TeacherFormat: how a plugin teaches didi-seq to read another checkpoint layout."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class TeacherFormat:
    """``detect(path)`` says whether a path is in this format; ``load(path, domain=…,
    **options)`` returns a ``didi_seq.models.teacher.TeacherAdapter``."""

    name: str
    description: str
    detect: Callable[[Path], bool]
    load: Callable[..., object]
