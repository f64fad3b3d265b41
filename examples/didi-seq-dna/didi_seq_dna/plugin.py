"""The hook implementations didi-seq finds through the ``didi_seq`` entry point."""

from __future__ import annotations

from pathlib import Path

from didi_seq import Domain, hookimpl

ASSETS = Path(__file__).resolve().parent / "assets"


def _load_tokenizer(path: Path | None):
    from .tokenizer import DnaTokenizer

    return DnaTokenizer.from_file(path)


def _load_corpus(src: str | None):
    from .corpus import load_dna_corpus  # imports datasets: only when a corpus is needed

    return load_dna_corpus(src)


DNA = Domain(
    name="dna",
    description="DNA (A/C/G/T); embedded corpus: the phage lambda genome (48.5 kbp)",
    load_tokenizer=_load_tokenizer,
    load_corpus=_load_corpus,
    embedded_teacher=ASSETS / "teacher",  # `--checkpoint teacher`; absent until one is trained and copied in
    embedded_student=ASSETS / "student",
    default_length=64,
    default_preset="tiny",
    sample_field="sequence",
)


@hookimpl
def register_domains(register):
    register(DNA)


@hookimpl
def register_scorers(register):
    from .scorers import GC_CONTENT

    register(GC_CONTENT)
