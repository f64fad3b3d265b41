"""Sample files: JSONL, one self-describing object per sample, written atomically.

Each record carries what ``evaluate`` must report without guessing: the decoded sample
(``decoded`` in every domain, without the domain's special tokens, and again under the domain's own
name, ``text`` or ``sequence``, as the tokenizer decodes it: scorers read that copy),
the model's own token ids (entropy is computed on those, not on a re-tokenisation), the
domain, sampler settings (NFE, temperature, final step, the sampler's own options under its
name), the checkpoint id and weight hash, and the cost of the run that produced it (real
network calls and wall-clock).
"""

from __future__ import annotations

import json
from pathlib import Path

from .._version import __version__
from ..errors import DidiError
from .checkpoint import atomic_write_bytes
from .provenance import SourceInfo, student_method
from .untrusted import check_regular_file, parse_json

DECODED = "decoded"  # the decoded sample's key in every domain; Domain.sample_field names its alias


def with_decoded(record: dict, field: str) -> dict:
    """Fill whichever of ``decoded`` / the domain's ``field`` a record lacks from the other, so
    readers accept files written by any version and plugins keep their own name for the sample."""
    for have, missing in ((field, DECODED), (DECODED, field)):
        if missing not in record and have in record:
            record[missing] = record[have]
    return record


def distilled_by(source: SourceInfo) -> dict:
    """``{"method": ...}`` for a distilled student (the distillation method its provenance names), else nothing."""
    if source.extra.get("kind") != "student":
        return {}
    return {"method": student_method(source.extra.get("method"))}


def sample_records(domain, tokenizer, result, *, seed: int, sampler: str, final: str, provenance: SourceInfo | dict,
                   extra: dict | None = None, temperature: float = 1.0) -> list[dict]:
    """JSONL records for a ``SampleResult``; run-level costs (and ``extra``, e.g. RGAS settings) repeat in every record."""
    source = SourceInfo.of(provenance)
    run = {"num_samples": int(result.tokens.shape[0]), "network_calls": result.network_calls,
           "rows_evaluated": result.rows_evaluated, "wall_clock_s": round(result.wall_clock_s, 4),
           "discriminator_calls": result.aux_calls}
    records = []
    for i, ids in enumerate(result.tokens.tolist()):
        rec = domain.sample_record(ids, tokenizer)
        rec = {DECODED: domain.readable(rec[domain.sample_field]), **rec} if domain.sample_field in rec else \
            with_decoded(rec, domain.sample_field)
        rec.update({"index": i, "domain": domain.name, "nfe": result.nfe, "seed": seed, "sampler": sampler,
                    "final": final, "temperature": temperature, "dtype": "float64", "checkpoint": source.id,
                    "checkpoint_sha256": source.model_sha256, **distilled_by(source), "tokens": ids, "run": run,
                    "didi_seq_version": __version__, **(extra or {})})
        records.append(rec)
    return records


def jsonl_text(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def write_jsonl(path: Path, records: list[dict]) -> None:
    atomic_write_bytes(Path(path), jsonl_text(records).encode("utf-8"))


def jsonl_bytes(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")



def read_jsonl(path: Path) -> list[dict]:
    """All records of a JSONL file; a broken line is named, blank lines are skipped.

    Bounded before reading: the file by ``limits.max_samples_file_bytes`` (records expand in memory),
    each line by ``limits.MAX_RECORD_BYTES``; lines are read one at a time, never the whole file at once."""
    from ..limits import MAX_RECORD_BYTES, max_samples_file_bytes

    path = Path(path)
    if not path.exists():
        raise DidiError(f"samples file {path} does not exist")
    size, limit = check_regular_file(path, "samples file").st_size, max_samples_file_bytes()
    if size > limit:
        raise DidiError(f"samples file {path} is {size >> 20} MiB, more than this machine evaluates at once "
                        f"({limit >> 20} MiB); split it and pass the parts as separate runs")
    records = []
    try:
        with open(path, "rb") as f:
            for n, raw in enumerate(iter(lambda: f.readline(MAX_RECORD_BYTES + 1), b""), start=1):
                if len(raw) > MAX_RECORD_BYTES:
                    raise DidiError(f"{path} line {n} is longer than {MAX_RECORD_BYTES >> 20} MiB: not a sample record")
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DidiError(f"{path} is not UTF-8 text ({e.reason} at line {n})") from None
                if not line.strip():
                    continue
                rec = parse_json(line, f"{path} line {n}")
                if not isinstance(rec, dict):
                    raise DidiError(f"{path} line {n} is a JSON {type(rec).__name__}, expected one object per line")
                rec["_line"] = n
                records.append(rec)
    except OSError as e:
        raise DidiError(f"cannot read samples file {path}: {e.strerror}") from None
    if not records:
        raise DidiError(f"samples file {path} is empty: no JSON records in it")
    return records
