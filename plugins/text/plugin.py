"""Hook implementations that register the text domain (found via the didi_seq entry point)."""

from __future__ import annotations

from pathlib import Path

from didi_seq.domain import Domain
from didi_seq.hookspecs import hookimpl

ASSETS = Path(__file__).resolve().parent / "assets"


def _load_tokenizer(path: Path | None):
    from .tokenizer import TextTokenizer

    return TextTokenizer.from_file(path)


def _load_corpus(src: str | None):
    from .corpus import load_text_corpus

    return load_text_corpus(src)


TEXT = Domain(
    name="text",
    description="English text; byte-level BPE 4096; embedded corpus: Python 3.11 docs",
    load_tokenizer=_load_tokenizer,
    load_corpus=_load_corpus,
    embedded_teacher=ASSETS / "teacher",
    embedded_student=ASSETS / "student",
    default_length=256,
    default_preset="small",
    sample_field="text",
)


@hookimpl
def register_domains(register):
    register(TEXT)


@hookimpl
def register_scorers(register):
    from .scorers import GEN_PPL

    register(GEN_PPL)
