"""The evaluation harness: read samples, apply the domain's scorers, write one JSON record.

Every claim in didi-seq is a record made here, so records are complete on their own:
metric values (per seed, mean ± std over seeds, pooled over all samples, and for the scorers
that ask for one a percentile bootstrap CI of the pooled value over samples), the number of
samples and seeds, the sampler, NFE, sampling dtype, checkpoint id and weight hash, the
real network calls and wall-clock of the sampling runs, the scorers' provenance (judge
id and revision), the reference values of real validation data scored the same way,
and the package version. The reference's per-sample stats are cached (``didi_seq.io.cache``)
under the reference data's hash and the scorer's protocol, for the scorers that name one.
The text domain's Gen PPL and MAUVE protocols are documented where they are implemented
(``didi_seq_text.judge``, ``didi_seq_text.mauve``); entropy and rep-n live in ``didi_seq.evaluation.metrics``.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import time
from collections.abc import Callable
from pathlib import Path

from .._version import __version__
from ..errors import DidiError
from ..io.cache import cached_json
from ..io.checkpoint import atomic_write_bytes, file_sha256
from ..io.samples import DECODED, read_jsonl, with_decoded
from .metrics import bootstrap_ci, mean_std
from .scorer import EvalContext, Scorer

# Fields that must agree across all samples of one evaluation: one configuration per record.
CONFIG_FIELDS = ("nfe", "sampler", "final", "temperature", "dtype", "checkpoint")
BOOTSTRAP_SEED = 0  # every CI is reproducible from the record alone
# bump when the reference blocks or the cached stats change meaning: old cache entries stop matching
REFERENCE_CACHE_VERSION = 1


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
    text = with_decoded(rec, domain.sample_field).get(domain.sample_field)
    if not isinstance(text, str):
        raise DidiError(f"{where} has no string field {DECODED!r} or {domain.sample_field!r}: "
                        f"not a {domain.name} samples file")
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


def _reference_identity(ref_info: dict, tokenizer) -> dict | None:
    """What the reference records are determined by (None: unknown, so never cached)."""
    if ref_info.get("files"):
        return {"files": [f["sha256"] for f in ref_info["files"]], "num_blocks": ref_info["num_blocks"]}
    if not ref_info.get("validation_sha256"):
        return None
    to_json = getattr(tokenizer, "to_json", None)
    tok = hashlib.sha256(to_json().encode()).hexdigest() if to_json else None
    return {k: ref_info.get(k) for k in ("corpus", "validation_sha256", "num_blocks", "length")} | {"tokenizer": tok}


def _reference_stats(scorer: Scorer, refs: list[dict], ctx: EvalContext, identity: dict | None) -> list[dict]:
    """The scorer's per-sample stats of the reference, from the cache when its protocol is known."""
    protocol = scorer.cache_key(ctx) if scorer.cache_key and identity else None
    if protocol is None:
        return scorer.per_sample(refs, ctx)
    key = {"version": REFERENCE_CACHE_VERSION, "scorer": scorer.name, "protocol": protocol, "reference": identity}
    stats, hit = cached_json("reference", key, lambda: scorer.per_sample(refs, ctx))
    ctx.info["reference_cached"] = hit
    if hit:
        ctx.tick(len(refs))
    return stats


def _summarise(scorer: Scorer, stats: list[dict], seeds: list, ref_stats: list[dict], resamples: int) -> dict:
    """Mean ± std over seeds, the pooled value and (when the scorer asks) its bootstrap CI."""
    aggregate = scorer.aggregate if scorer.compare is None else lambda st: scorer.compare(st, ref_stats)
    per_seed = {}
    for seed in sorted(set(seeds), key=str):
        per_seed[str(seed)] = aggregate([s for s, k in zip(stats, seeds, strict=True) if k == seed])
    mean, std = mean_std(list(per_seed.values()))
    out = {"mean": mean, "std": std, "pooled": aggregate(stats), "per_seed": per_seed, "unit": scorer.unit}
    if resamples:
        out["ci"] = bootstrap_ci(aggregate, stats, resamples, seed=BOOTSTRAP_SEED)
    caveat = scorer.caveat(len(stats), len(ref_stats)) if scorer.caveat else None
    if caveat:
        out["caveat"] = caveat
    return out


def evaluate(domain, samples: list[Path] | list[dict], *, judge: str | None = None, metrics: list[str] | None = None,
             reference_samples: int = 64, tokenizer=None, options: dict | None = None,
             reference: list[Path] | list[dict] | None = None, bootstrap: int | None = None,
             on_progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Score samples of ``domain`` and return the result record (see module docstring).

    ``samples`` are JSONL paths or already-loaded records; ``judge`` is passed to the
    scorers that use one; ``reference_samples`` validation blocks (0: none) are scored
    as the reference line, or ``reference`` (real records of this domain, or JSONL paths)
    when given; ``bootstrap`` resamples replace each scorer's own count (0: no CIs);
    ``on_progress(scorer, done, total)`` reports progress.
    """
    from ..limits import check_bootstrap, check_int
    from ..registry.plugins import scorers as registered

    check_bootstrap(bootstrap)
    check_int("reference_samples", reference_samples, low=0, high=1 << 20)
    start = time.perf_counter()
    records, files = _records(samples, domain)
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
    has_reference = bool(reference) or reference_samples > 0
    unmet = {s.name: why for s in available if (why := _cannot_run(s, opts, has_reference))}
    if metrics and unmet:
        raise DidiError(f"metric(s) {', '.join(f'{name} ({why})' for name, why in unmet.items())} cannot run")
    skipped = sorted(unmet)
    available = [s for s in available if s.name not in unmet]
    tokenizer = tokenizer or domain.load_tokenizer(None)
    refuse_unfinished(records, tokenizer)
    first = records[0]
    # packed rows: the samples' width; variable-length rows: the domain's full width, so that
    # real sequences of every length can enter the reference, not only those as short as the samples
    fixed = isinstance(first.get("tokens"), list) and domain.length_model is None
    length = len(first["tokens"]) if fixed else domain.default_length
    if reference:
        refs, ref_files = _records(reference, domain)
        ref_info = {"source": "records", "files": describe_files(ref_files), "num_blocks": len(refs)}
    elif reference_samples > 0:
        refs, ref_info = reference_records(domain, tokenizer, length, reference_samples)
    else:
        refs, ref_info = [], {}
    identity = _reference_identity(ref_info, tokenizer) if refs else None
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
        ref_stats = _reference_stats(scorer, refs, ctx, identity) if refs else []
        resamples = scorer.bootstrap if bootstrap is None or not scorer.bootstrap else bootstrap
        out_metrics[scorer.name] = _summarise(scorer, stats, seeds, ref_stats, resamples)
        if refs and scorer.compare is None:
            out_reference[scorer.name] = scorer.aggregate(ref_stats)
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


def _cannot_run(scorer: Scorer, opts: dict, has_reference: bool) -> str | None:
    """Why a scorer cannot run with these options here (None: it can)."""
    need = [o for o in scorer.requires if not opts.get(o)]
    if need:
        return f"needs --{', --'.join(o.replace('_', '-') for o in need)}"
    if scorer.compare is not None and not has_reference:
        return "compares with real data: needs --reference-samples > 0 or --reference"
    return scorer.missing() if scorer.missing else None


def _records(items: list[Path] | list[dict], domain) -> tuple[list[dict], list[Path]]:
    """(records, files): already-loaded records, or the records of JSONL paths (checked)."""
    if isinstance(items, (str, Path, dict)) or not isinstance(items, (list, tuple)):
        raise DidiError(f"samples must be a list of records (dicts) or of JSONL paths, got {type(items).__name__}")
    if items and all(isinstance(r, dict) for r in items):
        records = [dict(r) for r in items]  # checked like a file's records, never changed in the caller's hands
        for i, rec in enumerate(records):
            check_record(rec, domain, f"record {i}")
        return records, []
    if not all(isinstance(p, (str, Path)) for p in items):
        raise DidiError("samples must be all records (dicts) or all JSONL paths, not a mix or other types")
    files = [Path(p) for p in items]
    return load_samples(files, domain), files


def refuse_unfinished(records: list[dict], tokenizer) -> None:
    """A samples file written before masked outputs were refused (or edited by hand) may still hold the mask
    token: its text would be judged as if the model had finished it. One error line instead of a score."""
    mask = getattr(tokenizer, "mask_id", None)
    if mask is None:
        return
    left = [i for i, rec in enumerate(records) if isinstance(rec.get("tokens"), list) and mask in rec["tokens"]]
    if left:
        raise DidiError(f"{len(left)} of {len(records)} samples still hold the mask token (first: sample {left[0]}): "
                        "they are unfinished, not samples; sample them again")


def describe_files(paths: list[Path]) -> list[dict]:
    return [{"path": str(p), "sha256": file_sha256(Path(p))} for p in paths]


def write_result(path: Path, record: dict) -> None:
    atomic_write_bytes(Path(path), (json.dumps(record, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
