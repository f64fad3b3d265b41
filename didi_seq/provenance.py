"""The provenance record a training run writes beside each checkpoint (``provenance.json``).

One typed record for teachers (pretrain) and students (every distillation method), so
the keys are spelled in one place. On disk it stays the flat JSON object earlier
versions wrote (``pretrain_config`` / ``distill_config``, ``teacher: {id, sha256, ...}``,
the data fields at the top level), and ``from_dict`` reads any of those files back:
keys it does not know are kept in ``extra`` and written out again unchanged.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, fields

from ._version import __version__

CONFIG_KEYS = {"teacher": "pretrain_config", "student": "distill_config"}
_TEACHER_OPTIONAL = ("format", "revision", "weights", "file_sha256")


def command_line() -> str:
    """How this process was started, as the user would type it again."""
    return " ".join(["didi-seq", *sys.argv[1:]])


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass
class TeacherRef:
    """The teacher a student was distilled from: enough to find it again and to check it is that one."""

    id: str | None
    sha256: str | None
    path: str | None = None
    format: str | None = None
    revision: str | None = None
    weights: str | None = None
    file_sha256: str | None = None

    @classmethod
    def of(cls, adapter) -> TeacherRef:
        """The reference to a loaded teacher (its format loader's provenance)."""
        p = adapter.provenance
        return cls(id=p.get("id"), sha256=p.get("model_sha256"), path=p.get("path"),
                   **{k: p[k] for k in _TEACHER_OPTIONAL if k in p})

    def to_dict(self) -> dict:
        d = {"id": self.id, "sha256": self.sha256, "path": self.path}
        return {**d, **{k: getattr(self, k) for k in _TEACHER_OPTIONAL if getattr(self, k) is not None}}

    @classmethod
    def from_dict(cls, d: dict | None) -> TeacherRef | None:
        if not d:
            return None
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Provenance:
    """Where a checkpoint came from. ``kind`` is "teacher" (pretrain) or "student" (distill)."""

    name: str
    kind: str
    step: int
    wall_clock_s: float
    config: dict  # the run's full configuration (PretrainConfig / the method's config), as a dict
    data: dict = field(default_factory=dict)  # what it trained on: domain, corpus, validation_sha256, ...
    weights: str = "ema"
    method: str | None = None  # students: the distillation method (`distill --method`)
    teacher: TeacherRef | None = None  # students
    val_nelbo: float | None = None  # teachers: validation NELBO at this step (None between evaluations)
    val_ppl_bound: float | None = None
    last_metrics: dict | None = None  # students: the metrics line of this step
    command: str = field(default_factory=command_line)
    didi_seq_version: str = __version__
    torch_version: str | None = None
    created: str = field(default_factory=utc_now)
    model_sha256: str | None = None  # filled in by save_checkpoint from the written weights
    extra: dict = field(default_factory=dict)  # keys of other writers, kept as they were

    def __post_init__(self) -> None:
        if self.torch_version is None:
            import torch

            self.torch_version = torch.__version__

    def to_dict(self) -> dict:
        """The JSON object of provenance.json (the key layout every earlier version wrote)."""
        d: dict = {"name": self.name, "kind": self.kind, "weights": self.weights, "step": self.step}
        if self.method is not None:
            d["method"] = self.method
        d.update(command=self.command, wall_clock_s=self.wall_clock_s)
        if self.kind == "teacher":
            d.update(val_nelbo=self.val_nelbo, val_ppl_bound=self.val_ppl_bound)
        if self.teacher is not None:
            d["teacher"] = self.teacher.to_dict()
        config_key = CONFIG_KEYS.get(self.kind, "config")
        if self.kind != "teacher":  # students wrote their config before the versions, teachers after
            d[config_key] = self.config
        if self.last_metrics is not None:
            d["last_metrics"] = self.last_metrics
        d.update(didi_seq_version=self.didi_seq_version, torch_version=self.torch_version, created=self.created)
        if self.kind == "teacher":
            d[config_key] = self.config
        d.update(self.data)
        d.update(self.extra)
        if self.model_sha256 is not None:
            d["model_sha256"] = self.model_sha256
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Provenance:
        """Read a provenance.json object (any version); unknown keys land in ``extra``."""
        d = dict(d) if isinstance(d, dict) else {}
        kind = d.pop("kind", "model")
        config = d.pop(CONFIG_KEYS.get(kind, "config"), None) or {}
        simple = ("name", "step", "wall_clock_s", "weights", "method", "val_nelbo", "val_ppl_bound", "last_metrics",
                  "command", "didi_seq_version", "torch_version", "created", "model_sha256")
        values = {k: d.pop(k) for k in simple if k in d}
        teacher = TeacherRef.from_dict(d.pop("teacher")) if isinstance(d.get("teacher"), dict) else None
        data = {k: d.pop(k) for k in DATA_KEYS if k in d}
        values.setdefault("name", "")
        values.setdefault("step", 0)
        values.setdefault("wall_clock_s", 0.0)
        values.setdefault("torch_version", "")
        return cls(kind=kind, config=config, teacher=teacher, data=data, extra=d, **values)


# the training-data fields the runs write at the top level (corpus blocks or a teacher-sample pool)
DATA_KEYS = ("domain", "corpus", "validation_sha256", "corpus_split", "tokenizer", "train_blocks", "validation_blocks",
             "teacher_pool", "teacher_pool_nfe")
