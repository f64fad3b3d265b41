"""Sample files: JSONL, one self-describing object per sample, written atomically.

Each record carries what ``evaluate`` must report without guessing: the decoded sample
(``text`` / ``sequence``), the model's own token ids (entropy is computed on those, not
on a re-tokenisation), the domain, sampler settings (NFE, temperature, final step, the
sampler's own options under its name), the checkpoint id and weight hash,
and the cost of the run that produced it (real network calls and wall-clock).
"""

from __future__ import annotations

import json
from pathlib import Path

from . import __version__
from .checkpoint import atomic_write_bytes
from .errors import DidiError


def sample_records(domain, tokenizer, result, *, seed: int, sampler: str, final: str, provenance: dict,
                   extra: dict | None = None, temperature: float = 1.0) -> list[dict]:
    """JSONL records for a ``SampleResult``; run-level costs (and ``extra``, e.g. RGAS settings) repeat in every record."""
    run = {"num_samples": int(result.tokens.shape[0]), "network_calls": result.network_calls,
           "rows_evaluated": result.rows_evaluated, "wall_clock_s": round(result.wall_clock_s, 4),
           "discriminator_calls": result.aux_calls}
    records = []
    for i, ids in enumerate(result.tokens.tolist()):
        rec = domain.sample_record(ids, tokenizer)
        rec.update({"index": i, "domain": domain.name, "nfe": result.nfe, "seed": seed, "sampler": sampler,
                    "final": final, "temperature": temperature, "dtype": "float64", "checkpoint": provenance.get("id"),
                    "checkpoint_sha256": provenance.get("model_sha256"), "tokens": ids, "run": run,
                    "didi_seq_version": __version__, **(extra or {})})
        records.append(rec)
    return records


def write_jsonl(path: Path, records: list[dict]) -> None:
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write_bytes(Path(path), payload.encode("utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    """All records of a JSONL file; a broken line is named, blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise DidiError(f"samples file {path} does not exist")
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DidiError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DidiError(f"{path} line {n} is not valid JSON ({e.msg}, column {e.colno})") from None
        if not isinstance(rec, dict):
            raise DidiError(f"{path} line {n} is a JSON {type(rec).__name__}, expected one object per line")
        rec["_line"] = n
        records.append(rec)
    if not records:
        raise DidiError(f"samples file {path} is empty: no JSON records in it")
    return records
