"""A DNA metric: GC content, the fraction of G and C among the nucleotides of a sample.

Cheap and interpretable: phage lambda's genome is 49.9 % GC, and ``evaluate`` scores the
held-out genome the same way as a reference line, so a sampler that drifts shows at once.
"""

from __future__ import annotations

from didi_seq import EvalContext, Scorer
from didi_seq.evaluation.metrics import mean_std, sample_token_ids

A, C, G, T = range(4)


def _gc_per_sample(records: list[dict], ctx: EvalContext) -> list[dict]:
    stats = []
    for ids in sample_token_ids(records, ctx):
        bases = [i for i in ids if i <= T]
        stats.append({"gc": sum(i in (C, G) for i in bases) / len(bases) if bases else 0.0})
    ctx.tick(len(records))
    return stats


GC_CONTENT = Scorer(
    name="gc_content",
    description="fraction of G and C among the sampled nucleotides, mean over samples",
    per_sample=_gc_per_sample,
    aggregate=lambda stats: mean_std([s["gc"] for s in stats])[0],
    domains=("dna",),
    unit="fraction",
)
