"""FASTA in and out through Biopython, with residue checks that name record and position."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

from didi_seq import DidiError
from didi_seq.io.checkpoint import atomic_write_bytes

from .alphabet import STANDARD


def read_fasta(path: Path, allowed: str = STANDARD, strip_stop: bool = True) -> list[tuple[str, str]]:
    """(record id, upper-case sequence) pairs; ``*`` stop characters at the end are dropped.

    A letter outside ``allowed`` is an error: "FILE: record ID has invalid residue 'B' at
    position 17", so a user can fix the file (or filter it) instead of training on it.
    """
    from Bio import SeqIO

    path = Path(path)
    if not path.is_file():
        raise DidiError(f"FASTA file {path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for rec in SeqIO.parse(f, "fasta"):
                seq = str(rec.seq).upper()
                if strip_stop:
                    seq = seq.rstrip("*")
                bad = next(((i, c) for i, c in enumerate(seq, start=1) if c not in allowed), None)
                if bad is not None:
                    raise DidiError(f"{path}: record {rec.id!r} has invalid residue {bad[1]!r} at position {bad[0]} "
                                    f"(allowed: {allowed})")
                if not seq:
                    raise DidiError(f"{path}: record {rec.id!r} is empty")
                records.append((rec.id, seq))
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as e:
        raise DidiError(f"{path} is not a readable FASTA file ({type(e).__name__})") from None
    except ValueError as e:  # Biopython: text before the first '>' and similar format errors
        raise DidiError(f"{path} is not a FASTA file ({str(e).strip().splitlines()[0][:120]})") from None
    if not records:
        raise DidiError(f"{path} holds no FASTA records (expected lines starting with '>')")
    return records


def fasta_bytes(records: list[tuple[str, str]], description: list[str] | None = None) -> bytes:
    """FASTA text (60 residues per line) for (id, sequence) pairs."""
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqRecord import SeqRecord

    out = io.StringIO()
    descs = description or [""] * len(records)
    SeqIO.write((SeqRecord(Seq(s), id=i, description=d) for (i, s), d in zip(records, descs, strict=True)), out, "fasta")
    return out.getvalue().encode()


def write_fasta(path: Path, records: list[tuple[str, str]], description: list[str] | None = None) -> None:
    """Write atomically: a crash never leaves a half-written FASTA file."""
    atomic_write_bytes(Path(path), fasta_bytes(records, description))
