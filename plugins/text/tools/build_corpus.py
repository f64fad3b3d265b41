"""Build the embedded English corpus from Debian's ``python3.11-doc`` package.

Why this source: it is ~11 MB of real English prose (PSF licence) that any Debian
mirror serves, so the corpus can be rebuilt offline from a registry package.

Reproduce::

    apt-get download python3.11-doc && dpkg -x python3.11-doc_*.deb x
    python plugins/text/tools/build_corpus.py x/usr/share/doc/python3.11/html/_sources

Each ``*.rst.txt`` file is one document. A document goes to validation when the
first byte of sha1(relative path) is < 13 (≈5 %), so the split depends on nothing
but the file names. The manifest records the sha256 of every output file.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "assets" / "corpus"


def is_validation(rel_path: str) -> bool:
    return hashlib.sha1(rel_path.encode()).digest()[0] < 13


def main(src: str) -> None:
    root = Path(src)
    files = sorted(root.rglob("*.rst.txt"))
    if not files:
        sys.exit(f"no *.rst.txt files under {root}")
    splits: dict[str, list[dict]] = {"train": [], "validation": []}
    for f in files:
        rel = f.relative_to(root).as_posix()
        text = f.read_text(encoding="utf-8").strip()
        if text:
            splits["validation" if is_validation(rel) else "train"].append({"id": rel, "text": text})
    OUT.mkdir(parents=True, exist_ok=True)
    manifest = {"source": "Debian python3.11-doc, usr/share/doc/python3.11/html/_sources", "splits": {}}
    for name, docs in splits.items():
        path = OUT / f"{name}.jsonl.gz"
        payload = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs).encode()
        # mtime=0 keeps the gzip bytes reproducible.
        with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:
            gz.write(payload)
        manifest["splits"][name] = {
            "file": path.name,
            "documents": len(docs),
            "characters": sum(len(d["text"]) for d in docs),
            "sha256_uncompressed": hashlib.sha256(payload).hexdigest(),
        }
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main(sys.argv[1])
