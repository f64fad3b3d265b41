"""Length models: how long each generated sequence is, decided before sampling (as DPLM does).

For variable-length domains (one record per row: BOS, tokens, EOS, padding), which plug one in
as ``Domain.length_model``; the protein domain uses them, and any other domain can (they live
in the core so a new domain never imports another plugin).

* ``EmpiricalLengths``: the length histogram of a corpus (the default: the training split),
  drawn with replacement — generated lengths follow the data's distribution.
* ``FixedLength``: every sample has one length.
* ``LengthList``: DPLM's evaluation protocol — N samples split evenly over the given lengths
  (e.g. 100,200,300 with N=30 gives ten of each).

Draws take a torch generator so a seed fixes them; lengths above the teacher's capacity
(``max_length``, in domain units: residues, bases) are an error for fixed/list models and are left out of a fitted histogram.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import DidiError


class EmpiricalLengths:
    def __init__(self, lengths: list[int], source: str, max_length: int):
        kept = [n for n in lengths if 1 <= n <= max_length]
        if not kept:
            raise DidiError(f"no length of {source} fits the teacher's {max_length} positions")
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


def fasta_lengths(path: Path) -> list[int]:
    """Record lengths of a FASTA file (Biopython): any alphabet, so any sequence domain can fit a length model."""
    from Bio import SeqIO

    try:
        return [len(rec.seq) for rec in SeqIO.parse(str(path), "fasta")]
    except (ValueError, UnicodeDecodeError) as e:
        raise DidiError(f"{path} is not a readable FASTA file ({e})") from None


def parse_lengths(spec: str | None, max_length: int, corpus_lengths: Callable[[], tuple[list[int], str]],
                  file_lengths: Callable[[Path], list[int]] = fasta_lengths) -> EmpiricalLengths | FixedLength | LengthList:
    """``None``/"corpus" → fitted on the domain corpus (``corpus_lengths()`` → (lengths, name));
    "120" → fixed; "100,200,300" → list; a file → fitted on it (``file_lengths``: FASTA by default,
    a domain passes its own reader to check its alphabet)."""
    if spec is None or spec == "corpus":
        lengths, name = corpus_lengths()
        return EmpiricalLengths(lengths, name, max_length)
    if _is_file(spec):
        return EmpiricalLengths(file_lengths(Path(spec)), spec, max_length)
    try:
        values = [int(v) for v in spec.split(",") if v.strip()]
    except ValueError:
        raise DidiError(f"--lengths {spec!r}: expected a length, a comma-separated list of lengths, "
                        "'corpus' or a FASTA file") from None
    bad = [v for v in values if not 1 <= v <= max_length]
    if not values or bad:
        raise DidiError(f"--lengths {spec!r}: lengths must lie in 1..{max_length} (the teacher's capacity)")
    return FixedLength(values[0]) if len(values) == 1 else LengthList(values)
