"""Sample files: JSONL, one object per sample, written atomically."""

from __future__ import annotations

import json
from pathlib import Path

from .checkpoint import atomic_write_bytes


def write_jsonl(path: Path, records: list[dict]) -> None:
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_bytes(Path(path), payload.encode("utf-8"))
