"""The scorer contract: what a plugin registers through ``register_scorers``.

A scorer is split in two so the expensive part runs once: ``per_sample`` turns records
into per-sample statistics (e.g. a judge's NLL sum and token count), ``aggregate``
turns any subset of those into one number. The harness aggregates per seed and pooled
without re-scoring, and scores real validation data the same way for a reference line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EvalContext:
    domain: Any  # didi_seq.domain.Domain
    tokenizer: Any  # the domain tokenizer of the samples' checkpoint
    options: dict[str, Any] = field(default_factory=dict)  # e.g. {"judge": "gpt2-large", "batch_size": 8}
    info: dict[str, Any] = field(default_factory=dict)  # scorers record their provenance here (judge id, revision)
    advance: Callable[[int], None] | None = None  # progress: called with the number of samples just scored

    def tick(self, n: int) -> None:
        if self.advance is not None:
            self.advance(n)


@dataclass
class Scorer:
    name: str
    description: str
    per_sample: Callable[[list[dict], EvalContext], list[dict]]
    aggregate: Callable[[list[dict]], float]
    domains: tuple[str, ...] | None = None  # None: applies to every domain
    unit: str = ""
    expensive: bool = False  # loads a model; the harness reports its progress
    # options that must be given for the scorer to run (e.g. a folding model); without them
    # the harness skips it unless it is asked for by name, which is then an error
    requires: tuple[str, ...] = ()

    def applies_to(self, domain_name: str) -> bool:
        return self.domains is None or domain_name in self.domains
