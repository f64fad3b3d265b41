"""One token per nucleotide, plus an end-of-record separator and the mask (the core's character helper).

Ids: A=0 C=1 G=2 T=3, ``|`` (end of record, also used as BOS like the text domain's
``<|endoftext|>``) = 4, ``<mask>`` = 5.
"""

from __future__ import annotations

from pathlib import Path

from didi_seq import CharTokenizer

NUCLEOTIDES = "ACGT"


class DnaTokenizer(CharTokenizer):
    def __init__(self, alphabet: str = NUCLEOTIDES):
        super().__init__(alphabet, kind="didi-seq-dna", mask_symbol="N", upper=True, symbol="nucleotide")

    @classmethod
    def from_file(cls, path: Path | None = None) -> DnaTokenizer:
        """The tokenizer saved in a checkpoint (``tokenizer.json``), or the default one."""
        return cls() if path is None else cls(cls.saved_alphabet(path))
