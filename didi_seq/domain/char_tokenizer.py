"""A character-level tokenizer: the ``DomainTokenizer`` contract for any alphabet in a few lines.

Ids: one per alphabet character in order, then the separator (end of record; also BOS, like
the text domain's ``<|endoftext|>``), then the mask. The mask must be inside the vocabulary:
the absorbing state is just another token id the network sees. For a packed domain
(``didi_seq.domain.data.pack_blocks``): records joined by the separator into fixed-length rows.
``decode`` receives whole rows, so it must map every id, the separator included.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DidiError


class CharTokenizer:
    """Implements ``didi_seq.domain.DomainTokenizer``; ``symbol`` names one character in errors ("nucleotide")."""

    def __init__(self, alphabet: str, *, kind: str = "didi-seq-char", separator: str = "|", mask: str = "<mask>",
                 mask_symbol: str = "?", upper: bool = False, symbol: str = "character"):
        if len(set(alphabet)) != len(alphabet) or separator in alphabet:
            raise DidiError(f"alphabet {alphabet!r} must list distinct characters and not contain the separator {separator!r}")
        self.alphabet, self.kind, self.separator, self.mask = alphabet, kind, separator, mask
        self.mask_symbol, self.upper, self.symbol = mask_symbol, upper, symbol
        self.index = {c: i for i, c in enumerate(alphabet)}
        self.eos_id = self.bos_id = len(alphabet)
        self.mask_id = len(alphabet) + 1
        self.vocab_size = len(alphabet) + 2
        self.never_emit: list[int] = []  # the separator is real data (record boundaries)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        out = []
        for text in texts:
            try:
                out.append([self.index[c] for c in (text.upper() if self.upper else text)])
            except KeyError as e:
                raise DidiError(f"{e.args[0]!r} is not a {self.symbol} ({', '.join(self.alphabet)})") from None
        return out

    def decode(self, ids: list[int]) -> str:
        symbols = [*self.alphabet, self.separator, self.mask_symbol]  # the mask never survives sampling
        return "".join(symbols[i] for i in ids)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "alphabet": self.alphabet, "separator": self.separator, "mask": self.mask}) + "\n"

    @staticmethod
    def saved_alphabet(path: Path) -> str:
        """The alphabet a checkpoint's ``tokenizer.json`` (written by ``to_json``) holds."""
        try:
            return json.loads(Path(path).read_text())["alphabet"]
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise DidiError(f"cannot read tokenizer {path}: {e}") from None
