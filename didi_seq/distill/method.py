"""Distillation methods as registered objects, and how their options become ``distill`` flags.

A method (``DistillMethod``) owns its networks, losses, configuration and step; the run
(``didi_seq/distill/run.py`` on ``didi_seq/training/run.py``) owns everything else: the teacher,
the run directory, ``--resume``, provenance, checkpoint cadence and the metrics log.
Methods are registered through the ``register_methods`` hook, DiDi-Instruct by the core
(``didi_seq/distill/builtin.py``) exactly as a plugin registers its own.

A method's configuration is a dataclass (subclass ``MethodConfig``) holding the run's
settings ``RUN_FIELDS`` (each method picks its defaults) and its own. Every field
declared with ``didi_seq.options.option(default, help)`` is a flag of ``didi-seq distill``
(``disc_lr`` → ``--disc-lr``, a bool → ``--x/--no-x``); a flag of another method is refused by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import DidiError

if TYPE_CHECKING:
    import torch

    from ..training.distributed import Ranks

# settings of the run every method config holds: `distill --steps/--ckpt-every/--seed/--threads` set them
RUN_FIELDS = ("steps", "ckpt_every", "seed", "threads")


class MethodConfig:
    """Base of a method's config dataclass: dict round trip (checkpoints store it) and a validate hook."""

    def validate(self) -> None:
        """Raise DidiError on a bad value (called before anything loads)."""

    def shortfall(self, steps_done: int, last: dict | None = None) -> str | None:
        """Why a student trained for ``steps_done`` iterations (``last``: its final metrics line, None
        before the run) falls short of what the method promises, or None. Printed as a warning before a
        run too short to finish and after a ``--max-minutes`` stop; most methods have nothing to say."""
        return None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class MethodContext:
    """What the run hands a method's ``build``: the loaded teacher and where the data comes from."""

    domain: Any  # didi_seq.domain.Domain
    teacher: Any  # a TeacherAdapter on the training device (``teacher.device``)
    tokenizer: Any
    corpus: str | None  # `distill --corpus` (None: the domain's embedded corpus)
    ranks: Ranks
    on_prepare: Callable[[str], None] = lambda message: None  # progress text for slow preparation
    length: int | None = None  # `distill --length` (None: the teacher's maximum length)

    @property
    def row_length(self) -> int:
        """Tokens per training row: of the corpus rows, of the student's rollouts and of its target samples."""
        return self.length or self.teacher.spec.max_length

    def corpus_rows(self) -> tuple[Any, dict]:
        """The real training rows of ``corpus`` at ``row_length``, tokenised with the run's tokenizer (a
        checkpoint's own, ``TeacherAdapter.own_tokenizer``, where it has one), and their provenance fields
        (for ``MethodTrainer.data_meta``): what a method that trains on data starts from."""
        return corpus_rows(self.domain, self.tokenizer, self.corpus, self.row_length)


def corpus_rows(domain, tokenizer, corpus: str | None, length: int) -> tuple[Any, dict]:
    """A corpus as rows of ``length`` tokens (packed, or padded for variable-length domains; a tensor or
    a lazy column: index it, don't ask for .shape) and the fields naming it in provenance."""
    data = domain.load_corpus(corpus)
    meta = {"corpus": data["name"], "validation_sha256": data["validation_sha256"],
            **({"corpus_split": data["split"]} if data.get("split") else {})}
    return domain.rows(data["train"], tokenizer, length), meta


class MethodTrainer(Protocol):
    """What ``DistillMethod.build`` returns: the method's networks and optimisers, and one step.

    The core's trainers keep student, EMA, optimisers, RNG and step in one ``TrainState`` and get
    ``step_count``, ``state_dict``, ``load_state_dict`` and ``student_state`` from ``StateTrainer``
    (``didi_seq/training/state.py``); a plugin's trainer may do the same."""

    step_count: int  # iterations taken (restored by ``load_state_dict``)
    student: torch.nn.Module  # the student being trained; its ``config.to_dict()`` goes into config.json
    data_meta: dict  # provenance fields naming the training data, e.g. {"corpus": ..., "validation_sha256": ...}

    def step(self) -> dict:
        """One iteration; returns its metrics line {"step": n, ...} (JSON-able). Raise FloatingPointError on a
        non-finite loss: the run stops with one clear line and keeps the last good checkpoint."""

    def state_dict(self) -> dict:
        """Everything an exact ``--resume`` needs (weights, optimisers, EMA, RNG states), torch.save-able
        with ``weights_only`` loading (tensors, numbers, strings, lists, dicts)."""

    def load_state_dict(self, state: dict, source: str) -> None:
        """Restore ``state_dict()`` (loaded on the CPU) and ``step_count = state["step"]``."""

    def student_state(self) -> dict[str, torch.Tensor]:
        """The weights a checkpoint publishes as model.safetensors (e.g. the student's EMA)."""

    def save_artifacts(self, tmp: Path) -> None:
        """Write extra files into each checkpoint directory (e.g. a discriminator); may do nothing."""


@dataclass(frozen=True)
class DistillMethod:
    """A registered distillation method: ``distill --method NAME``."""

    name: str
    description: str  # one line, for `didi-seq plugins`
    config: type  # a MethodConfig dataclass with RUN_FIELDS
    build: Callable[[MethodContext, Any], MethodTrainer]  # (context, config) -> trainer; import torch inside

    def __post_init__(self) -> None:
        check_config(self)


def check_config(method: DistillMethod) -> None:
    """A registered method's config must hold the run's settings."""
    try:
        names = {f.name for f in fields(method.config)}
    except TypeError:
        raise DidiError(f"distillation method {method.name!r}: its config {method.config!r} is not a dataclass") from None
    missing = [n for n in RUN_FIELDS if n not in names]
    if missing:
        raise DidiError(f"distillation method {method.name!r}: its config lacks the run settings {', '.join(missing)}")
