"""A small on-disk cache for results that are expensive and fully determined by their inputs.

Used for the real-data reference of ``evaluate``: its per-sample stats depend only on the
reference data (validation split sha256), the scorer's protocol (judge id + revision,
settings, a version) and the block layout, so they are stored under the sha256 of exactly
that key; any changed input is a different key and is recomputed. The directory is
``$DIDI_SEQ_CACHE`` or ``~/.cache/didi-seq``; entries are plain JSON, safe to delete.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import DidiError
from .checkpoint import atomic_write_bytes


def cache_dir() -> Path:
    return Path(os.environ.get("DIDI_SEQ_CACHE") or Path.home() / ".cache" / "didi-seq").expanduser()


def cached_json(kind: str, key: dict, compute: Callable[[], object]) -> tuple[object, bool]:
    """(value, hit): the value stored under ``key`` in ``kind/``, else ``compute()`` stored there."""
    blob = json.dumps(key, sort_keys=True, ensure_ascii=True)
    path = cache_dir() / kind / (hashlib.sha256(blob.encode()).hexdigest() + ".json")
    if path.is_file():
        try:
            entry = json.loads(path.read_text())
            if entry.get("key") == json.loads(blob):
                return entry["value"], True
        except (OSError, ValueError, KeyError):
            pass  # a damaged entry is recomputed and overwritten
    value = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps({"key": json.loads(blob), "value": value}).encode())
    except (OSError, DidiError):
        pass  # an unwritable cache only costs time
    return value, False
