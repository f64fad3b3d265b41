"""Build the embedded protein corpus from Debian's ``mmseqs2-examples`` package.

Why this source: 20,000 real UniProt sequences (Swiss-Prot and TrEMBL, many organisms) that
any Debian mirror serves, so the corpus can be rebuilt offline from a registry package.

Reproduce::

    sudo apt-get install mmseqs2-examples
    python plugins/protein/tools/build_corpus.py /usr/share/doc/mmseqs2/example-data/DB.fasta.gz

Filters: only the 20 standard residues, length ≤ 512 (``MAX_LENGTH``), exact duplicates
removed (first occurrence kept). A sequence goes to validation when the first byte of
sha1(sequence) is < 13 (≈5 %): the split depends on nothing but the residues, and no
sequence is in both splits. Headers keep the UniProt accession only (``sp|P12345|NAME``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import statistics
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "assets" / "corpus"
STANDARD = set("ACDEFGHIKLMNPQRSTVWY")
MAX_LENGTH = 512


def read_raw(path: Path) -> list[tuple[str, str]]:
    from Bio import SeqIO

    with gzip.open(path, "rt") as f:
        return [(r.id, str(r.seq).upper()) for r in SeqIO.parse(f, "fasta")]


def main(src: str) -> None:
    raw = read_raw(Path(src))
    seen: set[str] = set()
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "validation": []}
    dropped = {"non_standard": 0, "too_long": 0, "duplicate": 0}
    for rid, seq in raw:
        if not set(seq) <= STANDARD:
            dropped["non_standard"] += 1
        elif len(seq) > MAX_LENGTH:
            dropped["too_long"] += 1
        elif seq in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(seq)
            split = "validation" if hashlib.sha1(seq.encode()).digest()[0] < 13 else "train"
            splits[split].append((rid, seq))
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {"source": "Debian mmseqs2-examples, usr/share/doc/mmseqs2/example-data/DB.fasta.gz",
                "source_records": len(raw), "filters": {"alphabet": "".join(sorted(STANDARD)), "max_length": MAX_LENGTH,
                                                        "dropped": dropped}, "splits": {}}
    for name, recs in splits.items():
        text = "".join(f">{rid}\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n" for rid, seq in recs)
        path = OUT / f"{name}.fasta.gz"
        with open(path, "wb") as raw_f, gzip.GzipFile(fileobj=raw_f, mode="wb", mtime=0) as gz:  # mtime=0: reproducible
            gz.write(text.encode())
        lengths = [len(s) for _, s in recs]
        manifest["splits"][name] = {"file": path.name, "sequences": len(recs), "residues": sum(lengths),
                                    "length_min": min(lengths), "length_median": statistics.median(lengths),
                                    "length_max": max(lengths),
                                    "sha256_uncompressed": hashlib.sha256(text.encode()).hexdigest()}
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
