"""Distillation methods as registered objects, and how their options become ``distill`` flags.

A method (``DistillMethod``) owns its networks, losses, configuration and step; the run
(``didi_seq/distill/run.py`` on ``didi_seq/training/run.py``) owns everything else: the teacher,
the run directory, ``--resume``, provenance, checkpoint cadence and the metrics log.
Methods are registered through the ``register_methods`` hook, DiDi-Instruct by the core
(``didi_seq/distill/builtin.py``) exactly as a plugin registers its own.

A method's configuration is a dataclass (subclass ``MethodConfig``) holding the run's
settings ``RUN_FIELDS`` (each method picks its defaults) and its own. Every field
declared with ``option(default, help)`` is a flag of ``didi-seq distill`` (``disc_lr`` →
``--disc-lr``, a bool → ``--x/--no-x``); a flag of another method is refused by name.
"""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import DidiError

if TYPE_CHECKING:
    import torch

    from ..training.distributed import Ranks

# settings of the run every method config holds: `distill --steps/--ckpt-every/--seed/--threads` set them
RUN_FIELDS = ("steps", "ckpt_every", "seed", "threads")


def option(default, help: str, flag: str | None = None):
    """A config field that is also a ``distill`` flag (``flag``: its name if not the field's, e.g. "--positive")."""
    return field(default=default, metadata={"help": help, "flag": flag})


class MethodConfig:
    """Base of a method's config dataclass: dict round trip (checkpoints store it) and a validate hook."""

    def validate(self) -> None:
        """Raise DidiError on a bad value (called before anything loads)."""

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

    def corpus_rows(self) -> tuple[Any, dict]:
        """The real training rows of ``corpus`` at the teacher's length, and their provenance fields
        (for ``MethodTrainer.data_meta``): what a method that trains on data starts from."""
        return corpus_rows(self.domain, self.tokenizer, self.corpus, self.teacher.spec.max_length)


def corpus_rows(domain, tokenizer, corpus: str | None, length: int) -> tuple[Any, dict]:
    """A corpus as rows of ``length`` tokens (packed, or padded for variable-length domains; a tensor or
    a lazy column: index it, don't ask for .shape) and the fields naming it in provenance."""
    data = domain.load_corpus(corpus)
    meta = {"corpus": data["name"], "validation_sha256": data["validation_sha256"],
            **({"corpus_split": data["split"]} if data.get("split") else {})}
    return domain.rows(data["train"], tokenizer, length), meta


class MethodTrainer(Protocol):
    """What ``DistillMethod.build`` returns: the method's networks and optimisers, and one step."""

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


# -- flags ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Flag:
    field: str
    option: str  # "--disc-lr"
    kind: type  # bool | int | float | str
    help: str
    default: Any


def method_flags(config: type) -> dict[str, Flag]:
    """The ``distill`` flags of a method config, by option string (bools also under ``--no-x``)."""
    hints = typing.get_type_hints(config)
    flags: dict[str, Flag] = {}
    for f in fields(config):
        if "help" not in f.metadata:
            continue
        kind = next((t for t in (bool, int, float, str) if t is hints[f.name] or t in typing.get_args(hints[f.name])), str)
        option_name = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        default = f.default if f.default is not MISSING else None
        flag = Flag(f.name, option_name, kind, f.metadata["help"], default)
        flags[option_name] = flag
        if kind is bool:
            flags["--no-" + option_name[2:]] = flag
    return flags


def _convert(flag: Flag, text: str):
    try:
        return flag.kind(text)
    except ValueError:
        what = {int: "an integer", float: "a number"}.get(flag.kind, "a value")
        raise DidiError(f"{flag.option} expects {what}, got {text!r}") from None


def parse_method_flags(method: DistillMethod, methods: dict[str, DistillMethod], args: list[str]) -> dict[str, tuple[str, Any]]:
    """The method options on a command line: {config field: (as written, value)}.

    A flag of another registered method is refused by name (``--disc-lr`` with ``--method sdtt``),
    anything else unknown too, so no option is ever silently ignored.
    """
    mine = method_flags(method.config)
    given: dict[str, tuple[str, Any]] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        name, _, inline = arg.partition("=")
        if name not in mine:
            owners = [m.name for m in methods.values() if m.name != method.name and name in method_flags(m.config)]
            if owners:
                raise DidiError(f"{name} is an option of --method {' / '.join(owners)}, not of --method {method.name}")
            if not arg.startswith("--"):
                raise DidiError(f"unexpected argument {arg!r}")
            raise DidiError(f"no such option {name} (see `didi-seq distill --help` for the options of --method {method.name})")
        flag = mine[name]
        if flag.kind is bool:
            if inline:
                raise DidiError(f"{name} takes no value")
            given[flag.field] = (name, not name.startswith("--no-"))
            continue
        if not inline and "=" not in arg:
            if i >= len(args):
                raise DidiError(f"{name} needs a value")
            inline, i = args[i], i + 1
        given[flag.field] = (f"{name} {inline}", _convert(flag, inline))
    return given


def flags_help(methods: dict[str, DistillMethod]) -> str:
    """The method options of every registered method, for ``distill --help``."""
    lines = []
    for m in methods.values():
        lines.append(f"--method {m.name}: {m.description}")
        rows = [(f"{opt}/--no-{opt[2:]}" if flag.kind is bool else f"{opt} {flag.kind.__name__.upper()}",
                 f"{flag.help} [default: {flag.default}]")
                for opt, flag in method_flags(m.config).items() if not (flag.kind is bool and opt.startswith("--no-"))]
        width = max((len(spelled) for spelled, _ in rows), default=0)
        lines += [f"  {spelled:<{width}}  {text}" for spelled, text in rows]
    return "\n".join(lines)


def check_config(method: DistillMethod) -> None:
    """A registered method's config must hold the run's settings."""
    try:
        names = {f.name for f in fields(method.config)}
    except TypeError:
        raise DidiError(f"distillation method {method.name!r}: its config {method.config!r} is not a dataclass") from None
    missing = [n for n in RUN_FIELDS if n not in names]
    if missing:
        raise DidiError(f"distillation method {method.name!r}: its config lacks the run settings {', '.join(missing)}")
