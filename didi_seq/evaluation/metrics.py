"""Domain-agnostic metrics, registered by the core the same way plugins register theirs.

Unigram entropy (DUO / DiDi ``record_entropy``): for each sample, the Shannon entropy in
nats of the empirical distribution of its own token ids (all positions, specials
included), then the mean over samples. A constant sequence scores 0, a sequence of
L distinct ids scores log L; repetition and mode collapse show up as low values, which
is why it is always reported next to Gen PPL.

Repetition rep-n (n = 2, 3, 4; the seq-rep-n of Welleck et al. 2019, "Neural Text Generation
with Unlikelihood Training", §5): for each sample, 1 − distinct n-grams / n-grams of its own
token ids (padding excluded), then the mean over samples. Per sample, not pooled over the set:
a pooled count would also call two *different* samples sharing a phrase repetitive, and the
guardrail is meant to catch degenerate sequences (loops inside one sample); set-level
diversity is entropy's and MAUVE's job. A sample of distinct tokens scores 0, a sentence
repeated k times approaches 1 − 1/k. A sample shorter than n repeats no n-gram and scores 0
(leaving it out could leave a seed or a bootstrap resample with no value at all).
"""

from __future__ import annotations

import math
from collections import Counter

from ..errors import DidiError
from ..registry.hookspecs import hookimpl
from .scorer import BOOTSTRAP_RESAMPLES, EvalContext, Scorer


def unigram_entropy(ids: list[int]) -> float:
    if not ids:
        return 0.0
    n = len(ids)
    return -sum(c / n * math.log(c / n) for c in Counter(ids).values())


def repetition(ids: list[int], n: int) -> float | None:
    """1 − distinct n-grams / n-grams of one sequence; None when it has no n-gram."""
    grams = [tuple(ids[i:i + n]) for i in range(len(ids) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else None


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, None
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def bootstrap_ci(aggregate, stats: list, resamples: int, seed: int = 0, level: float = 0.95) -> dict:
    """Percentile bootstrap CI of ``aggregate(stats)``: resample the samples with replacement.

    The aggregate is recomputed on each resample (for Gen PPL: the token-weighted pool over the
    resampled sequences, not a mean of per-sample perplexities), so the interval is for the
    pooled value. Fixed seed: the same stats give the same interval.
    A resample on which the aggregate is undefined (e.g. every drawn sample is empty, so Gen PPL has
    no token to score) is left out of the percentiles and counted in ``undefined``.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    values, undefined = [], 0
    for _ in range(resamples):
        try:
            values.append(aggregate([stats[i] for i in rng.integers(0, len(stats), len(stats))]))
        except DidiError:
            undefined += 1
    if not values:
        raise DidiError("no bootstrap resample has a defined value (are the samples empty?)")
    low, high = np.percentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return {"low": float(low), "high": float(high), "level": level, "resamples": resamples, "seed": seed,
            "undefined": undefined, "method": "percentile bootstrap over samples"}


def sample_token_ids(records: list[dict], ctx: EvalContext) -> list[list[int]]:
    """The model's own ids; records without them are re-encoded from their decoded field."""
    missing = [r for r in records if not isinstance(r.get("tokens"), list)]
    if missing:
        ctx.info["tokens_reencoded"] = len(missing)
        field = ctx.domain.sample_field
        encoded = iter(ctx.tokenizer.encode_batch([r[field] for r in missing]))
        return [r["tokens"] if isinstance(r.get("tokens"), list) else next(encoded) for r in records]
    return [r["tokens"] for r in records]


def own_ids(records: list[dict], ctx: EvalContext) -> list[list[int]]:
    """Each sample's own ids without padding (variable-length rows: padding is not part of a sample)."""
    pad = getattr(ctx.tokenizer, "pad_id", None)
    return [[i for i in ids if i != pad] for ids in sample_token_ids(records, ctx)]


def _entropy_per_sample(records: list[dict], ctx: EvalContext) -> list[dict]:
    return [{"entropy": unigram_entropy(ids)} for ids in own_ids(records, ctx)]


def rep_scorer(n: int) -> Scorer:
    key = f"rep_{n}"
    return Scorer(
        name=key,
        description=f"rep-{n}: 1 - distinct {n}-grams / {n}-grams of each sample's own token ids, mean over samples",
        per_sample=lambda records, ctx: [{key: repetition(ids, n) or 0.0} for ids in own_ids(records, ctx)],
        aggregate=lambda stats: mean_std([s[key] for s in stats])[0],
        bootstrap=BOOTSTRAP_RESAMPLES,
    )


ENTROPY = Scorer(
    name="entropy",
    description="per-sample unigram entropy of the model's own token ids (nats), mean over samples",
    per_sample=_entropy_per_sample,
    aggregate=lambda stats: mean_std([s["entropy"] for s in stats])[0],
    unit="nats",
    bootstrap=BOOTSTRAP_RESAMPLES,
)
REPETITION = [rep_scorer(n) for n in (2, 3, 4)]


@hookimpl
def register_scorers(register):
    register(ENTROPY)
    for scorer in REPETITION:
        register(scorer)
