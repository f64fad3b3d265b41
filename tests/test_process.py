import math

import pytest
import torch

from didi_seq.models.process import (
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


def test_masked_token_nll_by_hand_gives_the_mask_and_never_emit_zero_mass():
    """SUBS's zero-mass half, written out: −log of exp(ℓ_y) over Σ exp(ℓ_j) for j neither the mask nor never-emit."""
    g = torch.Generator().manual_seed(0)
    V, mask, never = 7, 6, [0]
    logits = torch.randn(5, V, generator=g) * 2
    logits[:, mask] += 3.0  # a model that puts real mass on the mask: SUBS must remove it
    targets = torch.tensor([1, 2, 3, 4, 5])
    got = masked_token_nll(logits, targets, mask, never_emit=torch.tensor(never))
    for row, y in enumerate(targets.tolist()):
        allowed = [j for j in range(V) if j != mask and j not in never]
        z = sum(math.exp(float(logits[row, j])) for j in allowed)
        assert float(got[row]) == pytest.approx(-(float(logits[row, y]) - math.log(z)), rel=1e-5)


def test_nelbo_of_uniform_model_exact_given_the_draw():
    """Given the drawn t and masks, the uniform model's NELBO is exactly Σ_rows w(t)·#masked·log(V−1).

    Separates SUBS (log(V−1)) from a loss that forgets to zero the mask (log V, +0.9 % at V = 32),
    which the Monte-Carlo test above cannot resolve."""
    V, L, B = 32, 64, 16
    g = torch.Generator().manual_seed(2)
    x0 = torch.randint(0, V - 1, (B, L), generator=g)
    t = stratified_times(B, g)
    xt = corrupt(x0, t, S, V - 1, generator=g)
    m = xt == V - 1
    got = nelbo_terms(masked_token_nll(torch.zeros(int(m.sum()), V), x0[m], V - 1), m, t, S)
    expected = [(1 - S.eps) / ((1 - S.eps) * float(t[r])) * int(m[r].sum()) * math.log(V - 1) for r in range(B)]
    assert got.tolist() == pytest.approx(expected, rel=1e-5)


def test_pretrain_nelbo_loss_matches_a_direct_computation():
    """pretrain.nelbo_loss (masking, head at masked positions, SUBS, 1/t weight) against the full-logit formula."""
    from didi_seq.models.dit import DiT, DiTConfig
    from didi_seq.training.pretrain import nelbo_loss

    V, L, B = 9, 12, 4  # ids 0..7 are tokens, 8 is the mask
    torch.manual_seed(0)
    model = DiT(DiTConfig(vocab_size=V, length=L, hidden=32, layers=1, heads=2, cond_dim=8)).eval()
    torch.nn.init.normal_(model.output_layer.linear.weight, std=1.0)  # logits far from uniform
    with torch.no_grad():
        model.output_layer.linear.bias[V - 1] = 4.0  # the raw head likes the mask: SUBS must take that mass away
    g = torch.Generator().manual_seed(1)
    x0 = torch.randint(0, V - 1, (B, L), generator=g)
    t = torch.tensor([0.2, 0.5, 0.7, 0.95])
    u = torch.rand(B, L, generator=g)
    with torch.no_grad():
        total, count = nelbo_loss(model, x0, t, S, V - 1, None, bf16=False, u=u)
        xt = torch.where(u < (1 - S.eps) * t[:, None], V - 1, x0)
        logits = model(xt, S.sigma(t)).double()
    expected = 0.0
    for b in range(B):
        for i in range(L):
            if xt[b, i] == V - 1:
                expected += (logits[b, i, :V - 1].logsumexp(-1) - logits[b, i, x0[b, i]]).item() / float(t[b])
    assert count == B * L and (xt == V - 1).sum() > 10
    assert total.item() == pytest.approx(expected, rel=1e-5)
