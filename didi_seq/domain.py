"""What a domain plugin registers: tokenizer, corpora, embedded checkpoints, sample format."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class DomainTokenizer(Protocol):
    """Token ids ↔ domain objects. ``never_emit`` ids get zero mass in SUBS (besides the mask)."""

    vocab_size: int
    mask_id: int
    bos_id: int
    eos_id: int
    never_emit: list[int]

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...

    def decode(self, ids: list[int]) -> str: ...

    def to_json(self) -> str: ...


@dataclass
class Domain:
    name: str
    description: str
    # a tokenizer file (e.g. the one saved inside a checkpoint), a name the domain knows
    # (text: "gpt2"), or None → embedded; checkpoints name theirs in provenance["tokenizer"]
    load_tokenizer: Callable[[str | Path | None], DomainTokenizer]
    # corpus source or None → embedded; returns {"train": Dataset, "validation": Dataset}
    # with a "text" column, plus a "hash" entry describing the validation split
    load_corpus: Callable[[str | None], dict[str, Any]]
    embedded_teacher: Path | None = None
    embedded_student: Path | None = None
    default_length: int = 256
    default_preset: str = "small"
    sample_field: str = "text"  # the JSONL field that carries a decoded sample
    extra: dict[str, Any] = field(default_factory=dict)

    def sample_record(self, ids: list[int], tokenizer: DomainTokenizer) -> dict:
        return {self.sample_field: tokenizer.decode(ids)}
