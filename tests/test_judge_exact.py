"""The numbers ``evaluate`` reports, against hand calculations on a judge whose probabilities are known.

The judge is a bigram model over a 4-word vocabulary: p(next | previous) is a fixed table, so
every token's NLL is written out here from the table with ``math``, independently of the
batched, padded, shifted tensor code in ``plugins/text/judge.py``. The texts put separators in
the middle of a document, the only place where scoring the wrong position (an off-by-one
between the log-prob and the scored mask) changes the result.
"""

import math
import re
from types import SimpleNamespace

import pytest
import torch

from didi_seq.evaluation.harness import evaluate
from didi_seq.evaluation.metrics import mean_std
from didi_seq.registry.plugins import get_domain
from didi_seq_text.judge import Judge
from didi_seq_text.scorers import token_weighted_ppl

SEP = "<|endoftext|>"
VOCAB = {SEP: 0, "a": 1, "b": 2, "c": 3}
# Unnormalised bigram logits: row = previous token, column = next token. Every entry differs,
# so scoring a wrong (previous, next) pair changes the total.
TABLE = [[0.3, 1.7, -0.4, 0.9],
         [1.1, -0.8, 2.2, 0.1],
         [-1.3, 0.6, 0.2, 1.4],
         [0.5, 1.9, -0.2, -1.1]]


def p_next(prev: int, nxt: int) -> float:
    return math.exp(TABLE[prev][nxt]) / sum(math.exp(v) for v in TABLE[prev])


class WordTokenizer:
    """Whitespace words; the separator is one token, the judge's EOS, and there is no BOS."""

    eos_token, eos_token_id, bos_token_id = SEP, 0, None

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [VOCAB[w] for w in re.findall(r"<\|endoftext\|>|[^\s<]+", text)]}


class BigramLM:
    device = torch.device("cpu")

    def __call__(self, input_ids, attention_mask=None, output_hidden_states=False):
        logits = torch.tensor(TABLE)[input_ids]  # the next-token table row of each position's own token
        return SimpleNamespace(logits=logits, hidden_states=(logits,) if output_hidden_states else None)


def bigram_judge(context=1024):
    return Judge(BigramLM(), WordTokenizer(), {"id": "bigram", "revision": None, "context": context})


# (text, the (previous, next) pairs the protocol scores): the start token (the separator) is
# prepended when missing; separators are context, never targets; text after them is scored.
CASES = [
    ("a b<|endoftext|>c a", [(0, 1), (1, 2), (0, 3), (3, 1)]),
    ("<|endoftext|>c c c b", [(0, 3), (3, 3), (3, 3), (3, 2)]),
    ("b <|endoftext|><|endoftext|> a", [(0, 2), (0, 1)]),
    ("", []),
]


def hand_nll(pairs):
    return -sum(math.log(p_next(a, b)) for a, b in pairs)


@pytest.mark.parametrize("batch_size", [1, 3])
def test_judge_nll_per_text_by_hand(batch_size):
    out = bigram_judge().score([text for text, _ in CASES], batch_size=batch_size)
    for (text, pairs), got in zip(CASES, out, strict=True):
        assert got["tokens"] == len(pairs), text
        assert got["nll"] == pytest.approx(hand_nll(pairs), rel=1e-6, abs=1e-9), text


def test_judge_truncates_to_its_context_before_scoring():
    # [sep, a, b, sep | c, a] cut at 4 tokens: only a|sep and b|a remain
    (got,) = bigram_judge(context=4).score(["a b<|endoftext|>c a"])
    assert got["tokens"] == 2 and got["nll"] == pytest.approx(hand_nll([(0, 1), (1, 2)]), rel=1e-6)


def test_gen_ppl_is_token_weighted_per_seed_and_pooled(monkeypatch):
    """evaluate(): per seed exp(Σ NLL / Σ tokens) (not a mean of per-sample perplexities), mean ± std over seeds, pooled."""
    from didi_seq_text import judge as judge_mod

    monkeypatch.setattr(judge_mod, "load_judge", lambda *a, **k: bigram_judge())
    seeds = [0, 0, 1, 1]
    records = [{"text": text, "seed": s} for (text, _), s in zip(CASES, seeds, strict=True)]
    out = evaluate(get_domain("text"), records, judge="bigram", metrics=["gen_ppl"], reference_samples=0)["metrics"]["gen_ppl"]

    def ppl(cases):
        return math.exp(sum(hand_nll(p) for _, p in cases) / sum(len(p) for _, p in cases))

    seed0, seed1 = ppl(CASES[:2]), ppl(CASES[2:])
    assert out["per_seed"] == {"0": pytest.approx(seed0, rel=1e-6), "1": pytest.approx(seed1, rel=1e-6)}
    assert out["mean"] == pytest.approx((seed0 + seed1) / 2, rel=1e-6)
    assert out["std"] == pytest.approx(abs(seed0 - seed1) / math.sqrt(2), abs=1e-5)  # a difference: fp32 round-off
    assert out["pooled"] == pytest.approx(ppl(CASES), rel=1e-6)
    # the token-weighted pool differs from the mean of per-sample perplexities on these texts
    assert abs(out["pooled"] - sum(ppl([c]) for c in CASES[:3]) / 3) > 0.05


def test_gen_ppl_of_no_scorable_token_is_an_error():
    from didi_seq.errors import DidiError

    with pytest.raises(DidiError, match="no sample has a token"):
        token_weighted_ppl([{"nll": 0.0, "tokens": 0}])


def entropy_by_hand(ids):
    n = len(ids)
    return -sum(ids.count(v) / n * math.log(ids.count(v) / n) for v in set(ids))


def test_entropy_scorer_per_sample_in_nats_mean_over_samples():
    """Per-sample unigram entropy (nats) of the model's own ids, then the mean over samples per seed."""
    # id 1 is the text domain's mask, which evaluate refuses in a sample: the ids here avoid it
    samples = {0: [[6, 6, 2, 3], [5, 5, 5, 5, 5, 5]], 1: [[6, 2], [4, 4, 4, 9, 9, 6, 6, 6]]}
    records = [{"text": "x", "tokens": ids, "seed": s} for s, rows in samples.items() for ids in rows]
    out = evaluate(get_domain("text"), records, metrics=["entropy"], reference_samples=0)["metrics"]["entropy"]
    # written out: H([6,6,2,3]) = 1.5 log 2; a constant row 0; H([6,2]) = log 2
    assert entropy_by_hand([6, 6, 2, 3]) == pytest.approx(1.5 * math.log(2))
    seed0 = (1.5 * math.log(2) + 0.0) / 2
    seed1 = (math.log(2) + entropy_by_hand([4, 4, 4, 9, 9, 6, 6, 6])) / 2
    assert out["per_seed"] == {"0": pytest.approx(seed0), "1": pytest.approx(seed1)}
    assert (out["mean"], out["std"]) == (pytest.approx(mean_std([seed0, seed1])[0]), pytest.approx(abs(seed0 - seed1) / math.sqrt(2)))
    assert out["pooled"] == pytest.approx((seed0 + seed1) / 2)  # equal sample counts per seed
