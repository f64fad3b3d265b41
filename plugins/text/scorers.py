"""Text metrics: generative perplexity under an independent judge (protocol in ``judge.py``)."""

from __future__ import annotations

import math

from didi_seq.errors import DidiError
from didi_seq.scorer import EvalContext, Scorer


def _gen_ppl_per_sample(records: list[dict], ctx: EvalContext) -> list[dict]:
    from .judge import DEFAULT_CONTEXT, load_judge

    judge = load_judge(ctx.options.get("judge"), int(ctx.options.get("judge_context") or DEFAULT_CONTEXT),
                       str(ctx.options.get("device") or "cpu"))
    ctx.info["judge"] = judge.info
    ctx.info["protocol"] = "decode with specials, re-tokenise, truncate, token-weighted NLL, separators unscored"
    return judge.score([r["text"] for r in records], batch_size=int(ctx.options.get("judge_batch_size") or 8), advance=ctx.tick)


def token_weighted_ppl(stats: list[dict]) -> float:
    tokens = sum(s["tokens"] for s in stats)
    if tokens == 0:
        raise DidiError("no sample has a token the judge can score (are the samples empty?)")
    return math.exp(sum(s["nll"] for s in stats) / tokens)


GEN_PPL = Scorer(
    name="gen_ppl",
    description="generative perplexity under an independent causal LM judge (token-weighted)",
    per_sample=_gen_ppl_per_sample,
    aggregate=token_weighted_ppl,
    domains=("text",),
    expensive=True,
)
