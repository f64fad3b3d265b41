"""Hook implementations that register the text domain (found via the didi_seq entry point)."""

from __future__ import annotations

from pathlib import Path

from didi_seq import Domain, hookimpl

ASSETS = Path(__file__).resolve().parent / "assets"


def _load_tokenizer(ref: str | Path | None):
    """None: the embedded BPE; "gpt2" or a directory with vocab.json + merges.txt: GPT-2 with
    MDLM's mask id (what real OWT teachers name in their provenance); else a tokenizer.json."""
    from . import gpt2
    from .tokenizer import TextTokenizer

    if ref is not None and (str(ref) == gpt2.NAME or (Path(ref).is_dir() and gpt2.pair_in(Path(ref)))):
        return gpt2.load(None if str(ref) == gpt2.NAME else ref)
    return TextTokenizer.from_file(Path(ref) if ref is not None else None)


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
    special_texts=("<|endoftext|>",),  # BOS = EOS of the embedded and GPT-2 tokenizers; kept in "text" for Gen PPL
)


@hookimpl
def register_domains(register):
    register(TEXT)


@hookimpl
def register_teacher_formats(register):
    from .mdlm_formats import FORMATS

    for fmt in FORMATS:
        register(fmt)


@hookimpl
def register_scorers(register):
    from .scorers import GEN_PPL, MAUVE

    register(GEN_PPL)
    register(MAUVE)
