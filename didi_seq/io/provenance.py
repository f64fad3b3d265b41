"""The provenance record a training run writes beside each checkpoint (``provenance.json``),
and the ``SourceInfo`` a teacher-format loader puts on the adapter it loads.

One typed record for teachers (pretrain) and students (every distillation method), so
the keys are spelled in one place. On disk it stays the flat JSON object earlier
versions wrote (``pretrain_config`` / ``distill_config``, ``teacher: {id, sha256, ...}``,
the data fields at the top level), and ``from_dict`` reads any of those files back:
keys it does not know are kept in ``extra`` and written out again unchanged.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from .._version import __version__

CONFIG_KEYS = {"teacher": "pretrain_config", "student": "distill_config"}
_TEACHER_OPTIONAL = ("format", "revision", "weights", "file_sha256")


def command_line() -> str:
    """How this process was started, as the user would type it again."""
    return " ".join(["didi-seq", *sys.argv[1:]])


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


_SOURCE_FIELDS = ("id", "path", "model_sha256", "format", "domain", "revision", "weights", "file_sha256",
                  "tokenizer", "tokenizer_file")


def student_method(recorded: str | None) -> str:
    """The distillation method a student's provenance names; students saved before the method registry
    record none, and were all DiDi-Instruct's."""
    return recorded or "didi-instruct"


@dataclass(eq=False)
class SourceInfo:
    """Where a loaded model came from: what its format loader read (``adapter.provenance``).

    The fields are what didi-seq itself reads (``id`` and ``model_sha256`` go next to every
    sample, ``domain`` refuses a checkpoint of another domain, ``tokenizer_file`` / ``tokenizer``
    name its tokenizer, ``path`` finds it again); format-specific keys (a native checkpoint's
    whole provenance.json, ``ema_decay``, ``token_dropout``, ...) stay in ``extra``.
    ``to_dict`` gives the dict loaders produced before this type existed, keys in the order
    they were given, so records and files written from it are unchanged.
    """

    id: str | None = None
    path: str | None = None
    model_sha256: str | None = None
    format: str | None = None
    domain: str | None = None
    revision: str | None = None
    weights: str | None = None
    file_sha256: str | None = None
    tokenizer: str | None = None  # a tokenizer the domain resolves by name (text: "gpt2") or a directory
    tokenizer_file: str | None = None  # a checkpoint's own tokenizer.json
    extra: dict = field(default_factory=dict)
    order: tuple = field(default=(), repr=False)  # the keys of the dict form, in order (fields set to None included)

    @classmethod
    def of(cls, value) -> SourceInfo:
        """``value`` itself, or the record of a plain dict (an adapter of a plugin predating this type)."""
        return value if isinstance(value, cls) else cls.from_dict(value or {})

    @classmethod
    def from_dict(cls, d: Mapping) -> SourceInfo:
        """The record of a loader's dict; keys that are not fields land in ``extra``, the order is kept."""
        d = dict(d)
        order = tuple(d)
        known = {k: d.pop(k) for k in _SOURCE_FIELDS if k in d}
        return cls(**known, extra=d, order=order)

    @classmethod
    def of_checkpoint(cls, ckpt, **more) -> SourceInfo:
        """A didi-seq checkpoint directory's: its provenance.json, then where it is, its id, the hash of its
        weights (computed, not provenance.json's claim) and domain, and ``more``."""
        return cls.from_dict({**ckpt.provenance, "path": str(ckpt.path), "id": ckpt.id, "model_sha256": ckpt.sha256,
                              "domain": ckpt.config.get("domain"), **more})

    @classmethod
    def build(cls, **values) -> SourceInfo:
        """What a loader writes: the fields and its own keys, in the order its dict form lists them."""
        return cls.from_dict(values)

    def to_dict(self) -> dict:
        """The loader's dict: the keys given, in their order; a field set later is appended."""
        keys = list(self.order)
        keys += [k for k in _SOURCE_FIELDS if k not in keys and getattr(self, k) is not None]
        keys += [k for k in self.extra if k not in keys]
        return {k: getattr(self, k) if k in _SOURCE_FIELDS else self.extra[k] for k in keys}


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
        """The reference to a loaded teacher (its format loader's ``SourceInfo``)."""
        src = SourceInfo.of(adapter.provenance)
        return cls(id=src.id, sha256=src.model_sha256, path=src.path, **{k: getattr(src, k) for k in _TEACHER_OPTIONAL})

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
             "teacher_pool", "teacher_pool_nfe", "row_length")
