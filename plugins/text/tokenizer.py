"""Byte-level BPE (Hugging Face ``tokenizers``) behind the DomainTokenizer protocol."""

from __future__ import annotations

from pathlib import Path

from didi_seq import DidiError

ASSETS = Path(__file__).resolve().parent / "assets"
EMBEDDED_TOKENIZER = ASSETS / "tokenizer.json"
EOS = "<|endoftext|>"
MASK = "<mask>"


class TextTokenizer:
    """Wraps a ``tokenizers.Tokenizer``; the mask is a special token inside the vocabulary."""

    def __init__(self, tok, mask_token: str = MASK, eos_token: str = EOS):
        self.tok = tok
        # A literal "<mask>" or "<|endoftext|>" inside a document is text, never the special
        # id: the mask id must not occur in training data (EOS is inserted by the packer).
        # Not stored in tokenizer.json, so it is set on every load.
        tok.encode_special_tokens = True
        self.vocab_size = tok.get_vocab_size()
        ids = {name: tok.token_to_id(name) for name in (mask_token, eos_token)}
        missing = [name for name, i in ids.items() if i is None]
        if missing:
            raise DidiError(f"tokenizer lacks the special tokens {missing}")
        self.mask_id = ids[mask_token]
        self.eos_id = self.bos_id = ids[eos_token]
        self.never_emit: list[int] = []

    @classmethod
    def from_file(cls, path: Path | None = None) -> TextTokenizer:
        from tokenizers import Tokenizer

        from didi_seq.io.untrusted import check_bounded_file

        path = Path(path) if path else EMBEDDED_TOKENIZER
        check_bounded_file(path, "tokenizer")  # a symlink to /dev/zero would be read until memory runs out
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as e:  # tokenizers raises a bare Exception on bad files
            raise DidiError(f"cannot read tokenizer {path}: {e}") from None

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tok.encode_batch(texts, add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(list(ids), skip_special_tokens=False)

    def to_json(self) -> str:
        return self.tok.to_str()
