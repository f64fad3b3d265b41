"""DNA corpora from FASTA (read with Biopython): the embedded phage lambda genome, or any local FASTA file.

Records are cut into fixed-size documents (``FRAGMENT`` bases) so that even a single
genome gives a held-out validation split: the last 5 % of documents, as the text
domain does. ``didi_seq.domain.data.pack_blocks`` then packs them into training rows.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

from didi_seq import DidiError

EMBEDDED_FASTA = Path(__file__).resolve().parent / "assets" / "lambda_phage.fa.gz"
FRAGMENT = 1000
VALIDATION_FRACTION = 0.05
VALID = set("ACGT")


def read_fasta(path: Path) -> list[tuple[str, str]]:
    """(record id, upper-case sequence) records read by Biopython; a letter outside A/C/G/T is an error naming its record."""
    from Bio import SeqIO

    opener = gzip.open if path.suffix == ".gz" else open
    records = []
    try:
        with opener(path, "rt", encoding="ascii") as f:
            for rec in SeqIO.parse(f, "fasta"):
                seq = str(rec.seq).upper()
                bad = sorted(set(seq) - VALID)
                if bad:
                    raise DidiError(f"{path}: record {rec.id!r}: invalid letter(s) {''.join(bad)!r}; only A, C, G, T are allowed")
                if seq:
                    records.append((rec.id, seq))
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, OSError, ValueError) as e:
        raise DidiError(f"cannot read FASTA {path}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    if not records:
        raise DidiError(f"{path} holds no FASTA records with a sequence")
    return records


def load_dna_corpus(src: str | None) -> dict:
    """The Domain.load_corpus contract: {"train", "validation"} Datasets with a "text" column."""
    import datasets

    path = EMBEDDED_FASTA if src is None else Path(src)
    if not path.is_file():
        raise DidiError(f"DNA corpus {src} is not a FASTA file (.fa, .fasta, optionally .gz)")
    docs = [seq[i:i + FRAGMENT] for _, seq in read_fasta(path) for i in range(0, len(seq), FRAGMENT)]
    n_val = max(1, int(len(docs) * VALIDATION_FRACTION)) if len(docs) > 1 else 0
    train, val = docs[: len(docs) - n_val], docs[len(docs) - n_val:]
    h = hashlib.sha256("\0".join(val).encode()).hexdigest() if val else None
    return {"train": datasets.Dataset.from_dict({"text": train}), "validation": datasets.Dataset.from_dict({"text": val}),
            "name": "embedded:phage-lambda" if src is None else str(src), "validation_sha256": h}
