"""Protein corpora: the embedded UniProt subset (FASTA), or a user's FASTA file.

Returned as ``datasets`` splits with a ``text`` column holding residue strings, so the
core's trainers read proteins exactly as they read text.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from didi_seq import DidiError

EMBEDDED_CORPUS = Path(__file__).resolve().parent / "assets" / "corpus"
VALIDATION_FRACTION = 0.05


@functools.cache
def embedded_records() -> dict[str, list[tuple[str, str]]]:
    from .fasta import read_fasta

    manifest = json.loads((EMBEDDED_CORPUS / "manifest.json").read_text())
    return {name: read_fasta(EMBEDDED_CORPUS / split["file"]) for name, split in manifest["splits"].items()}


def load_protein_corpus(src: str | None) -> dict:
    """{"train", "validation"} Datasets (columns id, text), the corpus name and the validation hash.

    A user FASTA keeps its last 5 % of records as validation (appending records never moves them).
    """
    import datasets

    from didi_seq.domain.data import text_hash

    datasets.disable_progress_bars()
    if src is None:
        recs = embedded_records()
        train, val, name = recs["train"], recs["validation"], "embedded:mmseqs2-examples-uniprot"
    else:
        path = Path(src)
        if path.is_dir() or path.suffix.lower() not in (".fasta", ".fa", ".faa", ".gz", ".fas"):
            raise DidiError(f"protein corpus {src}: expected a FASTA file (.fasta, .fa, .faa, optionally .gz)")
        from .fasta import read_fasta

        recs = read_fasta(path)
        n_val = max(1, int(len(recs) * VALIDATION_FRACTION)) if len(recs) > 1 else 0
        train, val, name = recs[: len(recs) - n_val], recs[len(recs) - n_val:], str(src)

    def to_ds(pairs):
        return datasets.Dataset.from_dict({"id": [i for i, _ in pairs], "text": [s for _, s in pairs]})

    val_ds = to_ds(val)
    return {"train": to_ds(train), "validation": val_ds, "name": name,
            "validation_sha256": text_hash(val_ds) if len(val) else None}


def corpus_lengths(src: str | None = None) -> tuple[list[int], str]:
    """Lengths of the training split (what the default length model is fitted on)."""
    if src is None:
        return [len(s) for _, s in embedded_records()["train"]], "embedded:mmseqs2-examples-uniprot (train)"
    data = load_protein_corpus(src)
    return [len(s) for s in data["train"]["text"]], f"{src} (train)"


def validation_sequences(src: str | None = None) -> list[str]:
    """Held-out real sequences: the reference for the offline metrics."""
    if src is None:
        return [s for _, s in embedded_records()["validation"]]
    return list(load_protein_corpus(src)["validation"]["text"])
