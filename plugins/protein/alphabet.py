"""The ESM alphabet (fair-esm's ``ESM-1b`` architecture, shared by ESM-2 and DPLM).

33 tokens: ``<cls>``=0, ``<pad>``=1, ``<eos>``=2, ``<unk>``=3, the 20 standard residues
``L A G V S E R T I D P K Q N F Y M H W C`` (4–23), ``X B U Z O . -`` (24–30),
``<null_1>``=31, ``<mask>``=32. Rows are ``<cls> residues <eos>`` then ``<pad>``.
Ids are taken from fair-esm, not re-typed, so a DPLM/ESM checkpoint and our tokenizer
cannot silently disagree; ``from_file`` checks a saved copy against it.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from didi_seq import DidiError, install_command

STANDARD = "ACDEFGHIKLMNPQRSTVWY"  # the 20 residues samples may contain
ARCHITECTURE = "ESM-1b"


def require_transformers(what: str) -> None:
    """One clear line instead of an ImportError when the optional extra is missing."""
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        raise DidiError(f"{what} needs transformers; install the protein extra: {install_command('protein')}")


@functools.cache
def esm_tokens() -> tuple[str, ...]:
    from esm.data import Alphabet

    return tuple(Alphabet.from_architecture(ARCHITECTURE).all_toks)


class ProteinTokenizer:
    """Residue strings ↔ ESM ids. Specials are never masked (``never_mask``, padding) and
    never emitted (``never_emit``: all specials and the non-standard letters X B U Z O . -)."""

    def __init__(self, tokens: tuple[str, ...] | None = None):
        self.tokens = tuple(tokens or esm_tokens())
        self.index = {t: i for i, t in enumerate(self.tokens)}
        self.vocab_size = len(self.tokens)
        self.bos_id, self.pad_id, self.eos_id = self.index["<cls>"], self.index["<pad>"], self.index["<eos>"]
        self.mask_id, self.unk_id = self.index["<mask>"], self.index["<unk>"]
        self.x_id = self.index["X"]
        self.residue_ids = [self.index[a] for a in STANDARD]
        self.never_mask = [self.bos_id, self.eos_id]  # padding is frozen through pad_id
        self.specials = [i for i, t in enumerate(self.tokens) if t.startswith("<")]
        self.never_emit = sorted(set(range(self.vocab_size)) - set(self.residue_ids) - {self.mask_id})

    @classmethod
    def from_file(cls, path: Path | None = None) -> ProteinTokenizer:
        """The fair-esm alphabet, after checking that a saved copy (a checkpoint's) is identical."""
        tok = cls()
        if path is None:
            return tok
        from didi_seq.io.untrusted import read_json

        try:
            saved = read_json(Path(path), "tokenizer file")["tokens"]
        except (KeyError, TypeError) as e:
            raise DidiError(f"cannot read the protein tokenizer {path}: {e}") from None
        if tuple(saved) != tok.tokens:
            raise DidiError(f"{path}: its alphabet differs from fair-esm's {ARCHITECTURE} alphabet; "
                            "the checkpoint was not made for this protein domain")
        return tok

    def encode(self, sequence: str, name: str = "sequence") -> list[int]:
        """Residue ids (no <cls>/<eos>); a letter outside the 20 standard ones is an error naming its position."""
        ids = []
        for pos, letter in enumerate(sequence.upper(), start=1):
            i = self.index.get(letter)
            if i is None or letter not in STANDARD:
                raise DidiError(f"{name}: invalid residue {letter!r} at position {pos} (allowed: {STANDARD})")
            ids.append(i)
        return ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t, f"sequence {n}") for n, t in enumerate(texts, start=1)]

    def decode(self, ids: list[int]) -> str:
        """Residue letters between <cls> and <eos>/<pad>; any other special is kept visibly (e.g. ``<mask>``)."""
        out = []
        for i in ids:
            if i in (self.bos_id, self.pad_id):
                continue
            if i == self.eos_id:
                break
            out.append(self.tokens[i])
        return "".join(out)

    def to_json(self) -> str:
        return json.dumps({"alphabet": f"fair-esm {ARCHITECTURE}", "tokens": list(self.tokens)}, indent=1) + "\n"
