"""Evaluation protocol pieces with known answers: rep-n, bootstrap CIs, MAUVE, the reference cache."""

import math
import random

import pytest

from didi_seq.errors import DidiError
from didi_seq.evaluation.harness import _reference_stats, evaluate
from didi_seq.evaluation.metrics import bootstrap_ci, mean_std, repetition
from didi_seq.evaluation.scorer import EvalContext, Scorer
from didi_seq.io.cache import cached_json
from didi_seq.registry.plugins import get_domain


def test_repetition_hand_counts():
    sentence = [5, 6, 7, 8]
    ids = sentence * 3  # 11 bigrams, 4 distinct; 10 trigrams, 4 distinct; 9 four-grams, 4 distinct
    assert repetition(ids, 2) == pytest.approx(1 - 4 / 11)
    assert repetition(ids, 3) == pytest.approx(1 - 4 / 10)
    assert repetition(ids, 4) == pytest.approx(1 - 4 / 9)
    assert repetition(list(range(50)), 2) == 0 and repetition(list(range(50)), 4) == 0
    assert repetition([1, 1, 1, 1, 1], 2) == pytest.approx(1 - 1 / 4)
    assert repetition([1, 2, 3], 4) is None  # no 4-gram at all


def test_rep_scorers_are_per_sample_means():
    recs = [{"text": "x", "tokens": [5, 6, 7, 8] * 3, "seed": 0}, {"text": "y", "tokens": list(range(10, 30)), "seed": 0},
            {"text": "z", "tokens": [3, 3], "seed": 0}]
    out = evaluate(get_domain("text"), recs, metrics=["rep_2", "rep_4"], reference_samples=0)
    # per sample then mean; the 2-token sample has one bigram (nothing repeated) and no 4-gram (scores 0)
    assert out["metrics"]["rep_2"]["pooled"] == pytest.approx(((1 - 4 / 11) + 0 + 0) / 3)
    assert out["metrics"]["rep_4"]["pooled"] == pytest.approx(((1 - 4 / 9) + 0 + 0) / 3)
    assert out["metrics"]["rep_2"]["ci"]["resamples"] == 1000


def test_bootstrap_ci_covers_the_pooled_value_and_matches_the_normal_approximation():
    rng = random.Random(1)
    values = [rng.gauss(3.0, 2.0) for _ in range(400)]
    stats = [{"v": v} for v in values]
    agg = lambda st: mean_std([s["v"] for s in st])[0]  # noqa: E731
    ci = bootstrap_ci(agg, stats, 2000, seed=0)
    pooled = agg(stats)
    assert ci["low"] < pooled < ci["high"]
    half = 1.96 * mean_std(values)[1] / math.sqrt(len(values))  # independent: the normal-theory interval
    assert (ci["high"] - ci["low"]) / 2 == pytest.approx(half, rel=0.1)
    assert bootstrap_ci(agg, stats, 2000, seed=0) == ci  # fixed seed: reproducible
    assert bootstrap_ci(agg, [{"v": 1.0}] * 5, 100)["low"] == 1.0


def test_gen_ppl_bootstrap_resamples_sequences_and_pools_tokens():
    from didi_seq_text.scorers import token_weighted_ppl

    # one long low-NLL sequence and short high-NLL ones: a mean of per-sample PPLs would be far higher
    stats = [{"nll": 100.0, "tokens": 100}] + [{"nll": 30.0, "tokens": 10}] * 9
    pooled = token_weighted_ppl(stats)
    assert pooled == pytest.approx(math.exp(370 / 190))
    ci = bootstrap_ci(token_weighted_ppl, stats, 500, seed=0)
    assert math.exp(1.0) < ci["low"] <= pooled <= ci["high"] <= math.exp(3.0)  # between the two kinds of sequence


def _counting_scorer(calls, protocol):
    def per_sample(records, ctx):
        calls.append(len(records))
        return [{"n": len(r["text"])} for r in records]

    return Scorer("count", "", per_sample, lambda st: 0.0, cache_key=lambda ctx: protocol)


def test_reference_cache_hits_and_is_invalidated_by_each_input():
    calls = []
    refs = [{"text": "abc"}, {"text": "de"}]
    ident = {"validation_sha256": "aaa", "length": 16}
    ctx = EvalContext(get_domain("text"), None)
    first = _reference_stats(_counting_scorer(calls, {"judge": "j", "revision": "r1"}), refs, ctx, ident)
    assert calls == [2] and ctx.info["reference_cached"] is False
    again = _reference_stats(_counting_scorer(calls, {"judge": "j", "revision": "r1"}), refs, ctx, ident)
    assert calls == [2] and again == first and ctx.info["reference_cached"] is True
    _reference_stats(_counting_scorer(calls, {"judge": "j", "revision": "r2"}), refs, ctx, ident)  # new judge revision
    _reference_stats(_counting_scorer(calls, {"judge": "j", "revision": "r1"}), refs, ctx, {**ident, "validation_sha256": "b"})
    _reference_stats(_counting_scorer(calls, None), refs, ctx, ident)  # unknown protocol: never cached
    _reference_stats(_counting_scorer(calls, {"judge": "j", "revision": "r1"}), refs, ctx, None)  # unknown data: never
    assert calls == [2, 2, 2, 2, 2]


def test_cache_lives_in_didi_seq_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIDI_SEQ_CACHE", str(tmp_path))
    assert cached_json("k", {"a": 1}, lambda: [1, 2]) == ([1, 2], False)
    assert cached_json("k", {"a": 1}, lambda: [3]) == ([1, 2], True)
    (entry,) = (tmp_path / "k").iterdir()
    entry.write_text("{broken")  # a damaged entry is recomputed
    assert cached_json("k", {"a": 1}, lambda: [3]) == ([3], False)


mauve = pytest.importorskip("didi_seq_text.mauve")
needs_mauve = pytest.mark.skipif(mauve.missing() is not None, reason='mauve-text not installed (pip install -e ".[mauve]")')


@needs_mauve
def test_mauve_known_answers_on_features():
    rng = random.Random(0)
    cloud = lambda n, shift: [[rng.gauss(shift if d < 4 else 0, 1) for d in range(16)] for _ in range(n)]  # noqa: E731
    a = cloud(60, 0.0)
    assert mauve.mauve_score(a, a) == pytest.approx(1.0)  # identical sets (mauve-text's own sort gives 0.75)
    same = mauve.mauve_score(cloud(60, 0.0), a)
    far = mauve.mauve_score(cloud(60, 4.0), a)
    assert same > 0.8 and far < 0.2, (same, far)
    with pytest.raises(DidiError, match="at least 8 samples"):
        mauve.mauve_score(a[:5], a, clusters=8)


def test_frontier_area_is_exact_on_ties_and_matches_the_trapezoid_rule():
    assert mauve.frontier_area([1, 1, 1, 0], [0, 1, 1, 1]) == 1.0
    assert mauve.frontier_area([1, 0.5, 0], [0, 0.5, 1]) == pytest.approx(0.5)  # the diagonal


def test_bootstrap_skips_resamples_where_the_aggregate_is_undefined():
    """Gen PPL of a resample drawing only empty samples has no token to score: that resample is
    counted as undefined and left out, not an error for the whole evaluation."""
    from didi_seq.errors import DidiError
    from didi_seq.evaluation.metrics import bootstrap_ci

    def mean_of_nonempty(xs):
        kept = [x for x in xs if x is not None]
        if not kept:
            raise DidiError("nothing to average")
        return sum(kept) / len(kept)

    ci = bootstrap_ci(mean_of_nonempty, [None, 1.0], resamples=400, seed=0)
    # P(both draws empty) = 1/4: about 100 of 400 resamples are undefined; every defined one is 1.0
    assert 60 < ci["undefined"] < 140 and ci["low"] == ci["high"] == 1.0
