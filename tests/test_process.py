import math

import torch

from didi_seq.process import (
    LogLinearSchedule,
    corrupt,
    masked_token_nll,
    nelbo_terms,
    prior,
    stratified_times,
    subs_log_probs,
)

S = LogLinearSchedule()


def test_corrupt_mask_rate_matches_schedule():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 50, (200, 500), generator=g)
    for t in (0.05, 0.3, 0.7, 1.0):
        xt = corrupt(x0, torch.full((200,), t), S, mask_id=99, generator=g)
        p = float(S.mask_prob(torch.tensor(t)))
        n = x0.numel()
        rate = (xt == 99).float().mean().item()
        assert abs(rate - p) < 5 * math.sqrt(p * (1 - p) / n) + 1e-9, (t, rate, p)
        assert torch.equal(xt[xt != 99], x0[xt != 99])  # unmasked tokens are untouched


def test_corrupt_respects_maskable():
    x0 = torch.randint(0, 50, (4, 64))
    keep = torch.zeros_like(x0, dtype=torch.bool)
    keep[:, 10:] = True
    xt = corrupt(x0, torch.ones(4), S, 99, maskable=keep)
    assert torch.equal(xt[:, :10], x0[:, :10])


def test_prior_is_all_mask():
    assert bool((prior((3, 7), 5) == 5).all())


def test_subs_no_mass_on_mask_and_carry_over():
    torch.manual_seed(0)
    V, mask = 11, 10
    xt = torch.tensor([[mask, 3, mask, 7]])
    lp = subs_log_probs(torch.randn(1, 4, V), xt, mask, never_emit=torch.tensor([0]))
    probs = lp.exp()
    assert torch.allclose(probs.sum(-1), torch.ones(1, 4))
    assert (probs[..., mask] == 0).all() and (probs[..., 0] == 0).all()
    assert probs[0, 1, 3] == 1 and probs[0, 3, 7] == 1  # unmasked tokens are carried over


def _nelbo_per_token(logits_fn, V=32, L=64, B=512):
    g = torch.Generator().manual_seed(1)
    x0 = torch.randint(0, V - 1, (B, L), generator=g)
    t = stratified_times(B, g)
    xt = corrupt(x0, t, S, V - 1, generator=g)
    m = xt == V - 1
    nll = masked_token_nll(logits_fn(x0)[m], x0[m], V - 1)
    return (nelbo_terms(nll, m, t, S).sum() / x0.numel()).item()


def test_nelbo_of_perfect_model_is_zero():
    V = 32
    perfect = lambda x0: torch.nn.functional.one_hot(x0, V).float() * 1e4  # noqa: E731
    assert _nelbo_per_token(perfect, V) < 1e-3


def test_nelbo_of_uniform_model_is_log_v_per_token():
    V = 32
    uniform = lambda x0: torch.zeros(*x0.shape, V)  # noqa: E731
    # mask excluded → V−1 classes; E[w(t)·P(masked)] = 1 − ε per token
    expected = math.log(V - 1) * (1 - S.eps)
    assert abs(_nelbo_per_token(uniform, V) - expected) / expected < 0.03


def test_nelbo_weight_is_one_over_t():
    t = torch.tensor([0.01, 0.5, 1.0])
    assert torch.allclose(S.nelbo_weight(t), 1 / t)
