"""What a domain plugin registers: tokenizer, corpora, embedded checkpoints, sample format."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


class DomainTokenizer(Protocol):
    """Token ids ↔ domain objects. ``never_emit`` ids get zero mass in SUBS (besides the mask).

    Variable-length domains also offer ``pad_id`` and ``never_mask`` (ids the process
    never corrupts, e.g. BOS/EOS); fixed-length domains leave them out.
    """

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
    # corpus source or None → embedded; returns {"train": Dataset, "validation": Dataset} with a
    # "text" column, a "name" and a "validation_sha256" (didi_seq.domain.data.text_hash of the validation
    # split), both recorded in provenance
    load_corpus: Callable[[str | None], dict[str, Any]]
    embedded_teacher: Path | None = None
    embedded_student: Path | None = None
    default_length: int = 256
    default_preset: str = "small"
    sample_field: str = "text"  # the JSONL field that carries a decoded sample
    # special tokens' text (e.g. "<|endoftext|>") that the human-readable ``decoded`` drops; the
    # ``sample_field`` copy and ``tokens`` keep them, since scorers' protocols read them (Gen PPL's separators)
    special_texts: tuple[str, ...] = ()
    # documents → training rows: (dataset, tokenizer, length) → LongTensor [N, length];
    # None packs blocks (didi_seq.domain.data.pack_blocks); variable-length domains pass pad_rows
    make_rows: Callable[..., Any] | None = None
    # variable-length domains: (spec or None → fitted default, max residues) → an object with
    # ``draw(n, generator) -> list[int]`` and ``describe() -> dict``; None: fixed-length rows
    length_model: Callable[[str | None, int], Any] | None = None
    # extra pretrain presets (name → PretrainConfig fields), next to the core's tiny/small
    presets: dict[str, dict] = field(default_factory=dict)
    # extra sample files beside the JSONL (e.g. FASTA): suffix → records → file bytes; the core picks
    # each file's name (never an input's or another output's) and writes all of them together
    sample_files: dict[str, Callable[[list[dict]], bytes]] = field(default_factory=dict)

    def rows(self, dataset, tokenizer, length: int):
        """Training rows of this domain's layout."""
        from .data import pack_blocks

        return (self.make_rows or pack_blocks)(dataset, tokenizer, length)

    def sample_record(self, ids: list[int], tokenizer: DomainTokenizer) -> dict:
        return {self.sample_field: tokenizer.decode(ids)}

    def readable(self, decoded: str) -> str:
        """The sample as a person reads it: ``decoded`` without the domain's special tokens (issue 25: a
        new user's samples ended in ``<|endoftext|>``). Scorers keep reading the ``sample_field`` copy."""
        for special in self.special_texts:
            decoded = decoded.replace(special, "")
        return decoded
