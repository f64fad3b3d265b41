"""The evaluation harness: read samples, apply the domain's scorers, write one JSON record.

Every claim in didi-seq is a record made here, so records are complete on their own:
metric values (per seed, mean ± std over seeds, pooled over all samples), the number of
samples and seeds, the sampler, NFE, sampling dtype, checkpoint id and weight hash, the
real network calls and wall-clock of the sampling runs, the scorers' provenance (judge
id and revision), the reference values of real validation data scored the same way,
and the package version. The text domain's Gen PPL protocol is documented where it is
implemented (``didi_seq_text.judge``); entropy lives in ``didi_seq.metrics``.
"""

from __future__ import annotations

import json
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .checkpoint import atomic_write_bytes, file_sha256
from .errors import DidiError
from .metrics import mean_std
from .sample_io import read_jsonl
from .scorer import EvalContext, Scorer

# Fields that must agree across all samples of one evaluation: one configuration per record.
CONFIG_FIELDS = ("nfe", "sampler", "final", "dtype", "checkpoint")


def load_samples(paths: list[Path], domain) -> list[dict]:
    """Records from one or more JSONL files, checked for domain and field consistency."""
    records: list[dict] = []
    for path in paths:
        for rec in read_jsonl(path):
            where = f"{path} line {rec.pop('_line')}"
            other = rec.get("domain")
            if other is not None and other != domain.name:
                raise DidiError(f"{where} is a {other!r} sample, not {domain.name!r}; pass --domain {other}")
            check_record(rec, domain, where)
            records.append(rec)
    for key in CONFIG_FIELDS:
        values = {json.dumps(r.get(key)) for r in records}
        if len(values) > 1:
            raise DidiError(f"the samples mix several values of {key!r} ({', '.join(sorted(values))}); "
                            "evaluate one configuration at a time")
    return records


# what a record's "run" costs may hold: non-negative finite numbers
RUN_FIELDS = ("num_samples", "network_calls", "rows_evaluated", "wall_clock_s", "discriminator_calls")
MAX_TOKEN_ID = (1 << 31) - 1


def check_record(rec: dict, domain, where: str) -> None:
    """Types of every field evaluate reads (records are untrusted: hand-edited or from other tools)."""
    text = rec.get(domain.sample_field)
    if not isinstance(text, str):
        raise DidiError(f"{where} has no string field {domain.sample_field!r}: not a {domain.name} samples file")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise DidiError(f"{where}: {domain.sample_field!r} is not valid Unicode ({e.reason}, e.g. a lone surrogate "
                        f"escape like \\ud800)") from None
    tokens = rec.get("tokens")
    if tokens is not None and not (isinstance(tokens, list) and all(
            isinstance(t, int) and not isinstance(t, bool) and 0 <= t <= MAX_TOKEN_ID for t in tokens)):
        raise DidiError(f"{where}: 'tokens' must be a list of integer token ids (0..{MAX_TOKEN_ID})")
    seed = rec.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise DidiError(f"{where}: 'seed' must be an integer, got {json.dumps(seed)[:40]}")
    run = rec.get("run")
    if run is not None:
        if not isinstance(run, dict):
            raise DidiError(f"{where}: 'run' must be an object of sampling costs")
        for key in RUN_FIELDS:
            value = run.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise DidiError(f"{where}: run.{key} must be a non-negative number, got {json.dumps(value)[:40]}")


def sampling_costs(records: list[dict]) -> dict:
    """Real network calls and wall-clock of the sampling runs the records came from."""
    runs = {json.dumps([r.get("seed"), r["run"]], sort_keys=True): r["run"] for r in records if isinstance(r.get("run"), dict)}
    if not runs:
        return {"known": False}
    total = {k: sum(run.get(k, 0) for run in runs.values()) for k in RUN_FIELDS}
    n = max(total["num_samples"], 1)
    return {"known": True, "runs": len(runs), **total,
            "network_calls_per_sample": total["network_calls"] / n,
            "discriminator_calls_per_sample": total["discriminator_calls"] / n,
            "sequence_evaluations_per_sample": total["rows_evaluated"] / n,
            "s_per_sample": total["wall_clock_s"] / n}


def reference_records(domain, tokenizer, length: int, n: int, corpus: str | None = None) -> tuple[list[dict], dict]:
    """The first ``n`` validation blocks of the domain's corpus, as sample records."""
    data = domain.load_corpus(corpus)
    blocks = domain.rows(data["validation"].select(range(min(len(data["validation"]), 4 * n + 16))), tokenizer, length)
    records = []
    for ids in blocks[:n].tolist():
        rec = domain.sample_record(ids, tokenizer)
        rec["tokens"] = ids
        records.append(rec)
    return records, {"corpus": data.get("name"), "validation_sha256": data.get("validation_sha256"),
                     "num_blocks": len(records), "length": length}


def _summarise(scorer: Scorer, stats: list[dict], seeds: list) -> dict:
    per_seed = {}
    for seed in sorted(set(seeds), key=str):
        per_seed[str(seed)] = scorer.aggregate([s for s, k in zip(stats, seeds, strict=True) if k == seed])
    mean, std = mean_std(list(per_seed.values()))
    return {"mean": mean, "std": std, "pooled": scorer.aggregate(stats), "per_seed": per_seed, "unit": scorer.unit}


def evaluate(domain, samples: list[Path] | list[dict], *, judge: str | None = None, metrics: list[str] | None = None,
             reference_samples: int = 64, tokenizer=None, options: dict | None = None,
             on_progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Score samples of ``domain`` and return the result record (see module docstring).

    ``samples`` are JSONL paths or already-loaded records; ``judge`` is passed to the
    scorers that use one; ``reference_samples`` validation blocks (0: none) are scored
    as the reference line; ``on_progress(scorer, done, total)`` reports progress.
    """
    from .plugins import scorers as registered

    start = time.perf_counter()
    if samples and isinstance(samples[0], dict):
        records, files = list(samples), []
    else:
        files = [Path(p) for p in samples]
        records = load_samples(files, domain)
    if not records:
        raise DidiError("no samples to evaluate")
    available = registered(domain.name)
    if metrics:
        unknown = sorted(set(metrics) - {s.name for s in available})
        if unknown:
            names = ", ".join(s.name for s in available)
            raise DidiError(f"unknown metric(s) {', '.join(unknown)} for domain {domain.name!r}; available: {names}")
        available = [s for s in available if s.name in metrics]
    opts = {"judge": judge, **(options or {})}
    unmet = {s.name: [o for o in s.requires if not opts.get(o)] for s in available}
    if metrics:
        asked = [f"{name} (needs --{', --'.join(o.replace('_', '-') for o in need)})" for name, need in unmet.items() if need]
        if asked:
            raise DidiError(f"metric(s) {', '.join(asked)} cannot run without those options")
    skipped = sorted(name for name, need in unmet.items() if need)
    available = [s for s in available if not unmet[s.name]]
    tokenizer = tokenizer or domain.load_tokenizer(None)
    first = records[0]
    # packed rows: the samples' width; variable-length rows: the domain's full width, so that
    # real sequences of every length can enter the reference, not only those as short as the samples
    fixed = isinstance(first.get("tokens"), list) and domain.length_model is None
    length = len(first["tokens"]) if fixed else domain.default_length
    refs, ref_info = reference_records(domain, tokenizer, length, reference_samples) if reference_samples > 0 else ([], {})
    seeds = [r.get("seed") for r in records]
    out_metrics, out_reference, provenance = {}, {}, {}
    for scorer in available:
        ctx = EvalContext(domain, tokenizer, opts)
        total = len(records) + len(refs)
        done = 0

        def advance(n: int, name=scorer.name, total=total) -> None:
            nonlocal done
            done += n
            if on_progress:
                on_progress(name, done, total)

        ctx.advance = advance
        stats = scorer.per_sample(records, ctx)
        out_metrics[scorer.name] = _summarise(scorer, stats, seeds)
        if refs:
            out_reference[scorer.name] = scorer.aggregate(scorer.per_sample(refs, ctx))
        provenance[scorer.name] = ctx.info
    return {
        "domain": domain.name,
        "metrics": out_metrics,
        "reference": {"values": out_reference, **ref_info} if refs else None,
        "num_samples": len(records),
        "seeds": sorted({s for s in seeds if s is not None}),
        "samples_per_seed": {str(k): seeds.count(k) for k in sorted(set(seeds), key=str)},
        **{key: first.get(key) for key in CONFIG_FIELDS},
        "checkpoint_sha256": first.get("checkpoint_sha256"),
        "sampling": sampling_costs(records),
        "scorers": provenance,
        **({"skipped_metrics": skipped} if skipped else {}),
        "samples_files": describe_files(files),
        "evaluation_wall_clock_s": round(time.perf_counter() - start, 2),
        "didi_seq_version": __version__,
        "python": platform.python_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def describe_files(paths: list[Path]) -> list[dict]:
    return [{"path": str(p), "sha256": file_sha256(Path(p))} for p in paths]


def write_result(path: Path, record: dict) -> None:
    atomic_write_bytes(Path(path), (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
