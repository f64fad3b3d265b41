"""Text metrics: generative perplexity under an independent judge (protocol in ``judge.py``) and
MAUVE against held-out real text on the judge's features (protocol in ``mauve.py``).

Both read the same judge forward pass: Gen PPL keeps each text's features in ``_FEATURES``
so MAUVE does not run the judge again over the same texts.
"""

from __future__ import annotations

import math

from didi_seq import DidiError, EvalContext, Scorer
from didi_seq.evaluation.scorer import BOOTSTRAP_RESAMPLES

from . import mauve

GEN_PPL_PROTOCOL = "decode with specials, re-tokenise, truncate, token-weighted NLL, separators unscored"
GEN_PPL_VERSION = 1  # bump when the scoring above changes: cached reference stats then stop matching
MAUVE_VERSION = 1
MAUVE_BOOTSTRAP = 200  # each resample re-clusters (PCA + 5 k-means restarts, ~0.15 s per 256 + 64 texts on one core)
_FEATURES: dict[tuple, list[float]] = {}  # (judge id, revision, context, text) → last-token features
MEMO_LIMIT = 20_000  # texts (~45 MB of features at the default judge's width 576)


def _judge(ctx: EvalContext):
    from .judge import DEFAULT_CONTEXT, load_judge

    judge = load_judge(ctx.options.get("judge"), int(ctx.options.get("judge_context") or DEFAULT_CONTEXT),
                       str(ctx.options.get("device") or "cpu"))
    ctx.info["judge"] = judge.info
    return judge


def _feature_key(judge, text: str) -> tuple:
    return judge.info["id"], judge.info["revision"], judge.context, text


def _gen_ppl_per_sample(records: list[dict], ctx: EvalContext) -> list[dict]:
    judge = _judge(ctx)
    ctx.info["protocol"] = GEN_PPL_PROTOCOL
    texts = [r["text"] for r in records]
    out = judge.score(texts, batch_size=_batch_size(ctx), advance=ctx.tick, features=True)
    if len(_FEATURES) > MEMO_LIMIT:  # MAUVE did not run to consume them (e.g. --metrics gen_ppl): stay bounded
        _FEATURES.clear()
    for text, o in zip(texts, out, strict=True):
        _FEATURES[_feature_key(judge, text)] = o.pop("features")
    return out


def _batch_size(ctx: EvalContext) -> int:
    return int(ctx.options.get("judge_batch_size") or 8)


def _judge_protocol(ctx: EvalContext, version: int, **extra) -> dict | None:
    """The cache key of a judge-based scorer; None when the judge's revision is unknown (hub download)."""
    from .judge import DEFAULT_CONTEXT, judge_identity

    ident = judge_identity(ctx.options.get("judge"))
    if ident["revision"] is None:
        return None
    return {**ident, "context": int(ctx.options.get("judge_context") or DEFAULT_CONTEXT), "batch_size": _batch_size(ctx),
            "version": version, **extra}


def token_weighted_ppl(stats: list[dict]) -> float:
    tokens = sum(s["tokens"] for s in stats)
    if tokens == 0:
        raise DidiError("no sample has a token the judge can score (are the samples empty?)")
    return math.exp(sum(s["nll"] for s in stats) / tokens)


def _judge_line(info: dict) -> list[str]:
    judge = info.get("judge")
    if not judge:
        return []
    return [f"judge: {judge['id']} (revision {str(judge['revision'])[:19]}, context {judge['context']})"]


GEN_PPL = Scorer(
    name="gen_ppl",
    description="generative perplexity under an independent causal LM judge (token-weighted)",
    per_sample=_gen_ppl_per_sample,
    aggregate=token_weighted_ppl,
    domains=("text",),
    bootstrap=BOOTSTRAP_RESAMPLES,
    cache_key=lambda ctx: _judge_protocol(ctx, GEN_PPL_VERSION, protocol=GEN_PPL_PROTOCOL),
    report=_judge_line,
)


def _mauve_clusters(ctx: EvalContext) -> int | None:
    k = ctx.options.get("mauve_clusters")
    return int(k) if k else None


def _mauve_per_sample(records: list[dict], ctx: EvalContext) -> list[dict]:
    judge = _judge(ctx)
    ctx.info["mauve"] = mauve.settings(_mauve_clusters(ctx))
    texts = [r["text"] for r in records]
    todo = [t for t in dict.fromkeys(texts) if _feature_key(judge, t) not in _FEATURES]
    for text, o in zip(todo, judge.score(todo, batch_size=_batch_size(ctx), features=True), strict=True):
        _FEATURES[_feature_key(judge, text)] = o["features"]
    ctx.tick(len(texts))
    clusters = _mauve_clusters(ctx)
    features = {t: _FEATURES.pop(_feature_key(judge, t)) for t in dict.fromkeys(texts)}  # consumed: the memo stays small
    return [{"features": features[t], "clusters": clusters} for t in texts]


def _mauve_compare(stats: list[dict], reference: list[dict]) -> float:
    return mauve.mauve_score([s["features"] for s in stats], [s["features"] for s in reference], stats[0]["clusters"])


def _mauve_line(info: dict) -> list[str]:
    m = info.get("mauve")
    if not m:
        return []
    return [f"mauve: {m['features']}, {m['num_clusters']} clusters, scaling factor {m['scaling_factor']}, "
            f"k-means seed {m['kmeans_seed']}"]


MAUVE = Scorer(
    name="mauve",
    description="MAUVE against held-out real text on the judge's last-layer, last-token features (1: indistinguishable)",
    per_sample=_mauve_per_sample,
    aggregate=lambda stats: math.nan,  # two-sample: the harness calls compare
    domains=("text",),
    compare=_mauve_compare,
    bootstrap=MAUVE_BOOTSTRAP,
    cache_key=lambda ctx: _judge_protocol(ctx, MAUVE_VERSION, features="last hidden layer, last token"),
    report=_mauve_line,
    missing=mauve.missing,
    caveat=mauve.caveat,
)
