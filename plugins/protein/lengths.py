"""Length models: how long each generated protein is, decided before sampling (as DPLM does).

* ``EmpiricalLengths``: the length histogram of a corpus (the default: the training split),
  drawn with replacement — generated lengths follow the data's distribution.
* ``FixedLength``: every sample has one length.
* ``LengthList``: DPLM's evaluation protocol — N samples split evenly over the given lengths
  (e.g. 100,200,300 with N=30 gives ten of each).

Draws take a torch generator so a seed fixes them; lengths above the teacher's capacity
(``max_residues``) are an error for fixed/list models and are left out of a fitted histogram.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from didi_seq.errors import DidiError


class EmpiricalLengths:
    def __init__(self, lengths: list[int], source: str, max_residues: int):
        kept = [n for n in lengths if 1 <= n <= max_residues]
        if not kept:
            raise DidiError(f"no length of {source} fits the teacher's {max_residues} residues")
        self.counts = sorted(Counter(kept).items())
        self.source, self.left_out = source, len(lengths) - len(kept)

    def draw(self, n: int, generator: torch.Generator) -> list[int]:
        values = torch.tensor([v for v, _ in self.counts])
        weights = torch.tensor([c for _, c in self.counts], dtype=torch.float64)
        return values[torch.multinomial(weights, n, replacement=True, generator=generator)].tolist()

    def describe(self) -> dict:
        total = sum(c for _, c in self.counts)
        mean = sum(v * c for v, c in self.counts) / total
        return {"kind": "empirical", "source": self.source, "sequences": total, "left_out_too_long": self.left_out,
                "min": self.counts[0][0], "max": self.counts[-1][0], "mean": round(mean, 1)}


class FixedLength:
    def __init__(self, length: int):
        self.length = length

    def draw(self, n: int, generator: torch.Generator) -> list[int]:
        return [self.length] * n

    def describe(self) -> dict:
        return {"kind": "fixed", "length": self.length}


class LengthList:
    def __init__(self, lengths: list[int]):
        self.lengths = lengths

    def draw(self, n: int, generator: torch.Generator) -> list[int]:
        per, rest = divmod(n, len(self.lengths))
        return [v for k, v in enumerate(self.lengths) for _ in range(per + (k < rest))]

    def describe(self) -> dict:
        return {"kind": "list", "lengths": self.lengths}


def _is_file(spec: str) -> bool:
    """Whether ``spec`` names a file; a long length list is not a path (the OS refuses names over 255 bytes)."""
    try:
        return Path(spec).is_file()
    except (OSError, ValueError):
        return False


def parse_lengths(spec: str | None, max_residues: int, corpus_lengths) -> EmpiricalLengths | FixedLength | LengthList:
    """``None``/"corpus" → fitted on the domain corpus (``corpus_lengths()`` → (lengths, name));
    "120" → fixed; "100,200,300" → list; a FASTA path → fitted on that file."""
    if spec is None or spec == "corpus":
        lengths, name = corpus_lengths()
        return EmpiricalLengths(lengths, name, max_residues)
    if _is_file(spec):
        from .fasta import read_fasta

        return EmpiricalLengths([len(s) for _, s in read_fasta(Path(spec))], spec, max_residues)
    try:
        values = [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise DidiError(f"--lengths {spec!r}: expected a length, a comma-separated list of lengths, "
                        "'corpus' or a FASTA file") from None
    bad = [v for v in values if not 1 <= v <= max_residues]
    if not values or bad:
        raise DidiError(f"--lengths {spec!r}: lengths must lie in 1..{max_residues} (the teacher's capacity)")
    return FixedLength(values[0]) if len(values) == 1 else LengthList(values)
