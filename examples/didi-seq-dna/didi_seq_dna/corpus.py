"""DNA corpora from FASTA: the embedded phage lambda genome, or any local FASTA file.

Records are cut into fixed-size documents (``FRAGMENT`` bases) so that even a single
genome gives a held-out validation split: the last 5 % of documents, as the text
domain does. ``didi_seq.data.pack_blocks`` then packs them into training rows.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

from didi_seq.errors import DidiError

EMBEDDED_FASTA = Path(__file__).resolve().parent / "assets" / "lambda_phage.fa.gz"
FRAGMENT = 1000
VALIDATION_FRACTION = 0.05
VALID = set("ACGTacgt")


def read_fasta(path: Path) -> list[tuple[str, str]]:
    """(header, sequence) records; any letter outside A/C/G/T is an error naming its line."""
    opener = gzip.open if path.suffix == ".gz" else open
    records: list[tuple[str, list[str]]] = []
    try:
        with opener(path, "rt", encoding="ascii") as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                if line.startswith(">"):
                    records.append((line[1:].strip(), []))
                    continue
                if not records:
                    raise DidiError(f"{path} line {n}: sequence before the first '>' header: not FASTA")
                bad = sorted(set(line) - VALID)
                if bad:
                    raise DidiError(f"{path} line {n}: invalid letter(s) {''.join(bad)!r}; only A, C, G, T are allowed")
                records[-1][1].append(line.upper())
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError, OSError) as e:
        raise DidiError(f"cannot read FASTA {path}: {type(e).__name__}: {e}") from None
    records = [(h, "".join(parts)) for h, parts in records if parts]
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
