"""One token per nucleotide, plus an end-of-record separator and the mask.

Ids: A=0 C=1 G=2 T=3, ``|`` (end of record, also used as BOS like the text domain's
``<|endoftext|>``) = 4, ``<mask>`` = 5. The mask must be inside the vocabulary: the
absorbing state is just another token id the network sees.
"""

from __future__ import annotations

import json
from pathlib import Path

from didi_seq.errors import DidiError

NUCLEOTIDES = "ACGT"
SEPARATOR = "|"
MASK = "<mask>"


class DnaTokenizer:
    """Implements ``didi_seq.domain.DomainTokenizer``."""

    def __init__(self, alphabet: str = NUCLEOTIDES):
        self.alphabet = alphabet
        self.index = {c: i for i, c in enumerate(alphabet)}
        self.eos_id = self.bos_id = len(alphabet)
        self.mask_id = len(alphabet) + 1
        self.vocab_size = len(alphabet) + 2
        self.never_emit: list[int] = []  # the separator is real data (record boundaries)

    @classmethod
    def from_file(cls, path: Path | None = None) -> DnaTokenizer:
        """The tokenizer saved in a checkpoint (``tokenizer.json``), or the default one."""
        if path is None:
            return cls()
        try:
            spec = json.loads(Path(path).read_text())
            return cls(spec["alphabet"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
            raise DidiError(f"cannot read DNA tokenizer {path}: {e}") from None

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        out = []
        for text in texts:
            try:
                out.append([self.index[c] for c in text.upper()])
            except KeyError as e:
                raise DidiError(f"{e.args[0]!r} is not a nucleotide ({', '.join(self.alphabet)})") from None
        return out

    def decode(self, ids: list[int]) -> str:
        symbols = [*self.alphabet, SEPARATOR, "N"]  # the mask never survives sampling; N if it did
        return "".join(symbols[i] for i in ids)

    def to_json(self) -> str:
        return json.dumps({"kind": "didi-seq-dna", "alphabet": self.alphabet, "separator": SEPARATOR, "mask": MASK}) + "\n"
