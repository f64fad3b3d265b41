"""Domain-agnostic metrics, registered by the core the same way plugins register theirs.

Unigram entropy (DUO / DiDi ``record_entropy``): for each sample, the Shannon entropy in
nats of the empirical distribution of its own token ids (all positions, specials
included), then the mean over samples. A constant sequence scores 0, a sequence of
L distinct ids scores log L; repetition and mode collapse show up as low values, which
is why it is always reported next to Gen PPL.
"""

from __future__ import annotations

import math
from collections import Counter

from .hookspecs import hookimpl
from .scorer import EvalContext, Scorer


def unigram_entropy(ids: list[int]) -> float:
    if not ids:
        return 0.0
    n = len(ids)
    return -sum(c / n * math.log(c / n) for c in Counter(ids).values())


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, None
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def sample_token_ids(records: list[dict], ctx: EvalContext) -> list[list[int]]:
    """The model's own ids; records without them are re-encoded from their decoded field."""
    missing = [r for r in records if not isinstance(r.get("tokens"), list)]
    if missing:
        ctx.info["tokens_reencoded"] = len(missing)
        field = ctx.domain.sample_field
        encoded = iter(ctx.tokenizer.encode_batch([r[field] for r in missing]))
        return [r["tokens"] if isinstance(r.get("tokens"), list) else next(encoded) for r in records]
    return [r["tokens"] for r in records]


def _entropy_per_sample(records: list[dict], ctx: EvalContext) -> list[dict]:
    pad = getattr(ctx.tokenizer, "pad_id", None)  # variable-length rows: padding is not part of a sample
    return [{"entropy": unigram_entropy([i for i in ids if i != pad])} for ids in sample_token_ids(records, ctx)]


ENTROPY = Scorer(
    name="entropy",
    description="per-sample unigram entropy of the model's own token ids (nats), mean over samples",
    per_sample=_entropy_per_sample,
    aggregate=lambda stats: mean_std([s["entropy"] for s in stats])[0],
    unit="nats",
)


@hookimpl
def register_scorers(register):
    register(ENTROPY)
