"""Representation-space MMD against exact answers on the enumerable toy (3 tokens + mask, length 3)."""

import itertools

import pytest
import torch
from distill_toy import MASK, L, V, denoiser, tiny_dit

from didi_seq.distill.mmd import (
    draw_fills,
    features_of_fills,
    group_rewards,
    leave_one_out,
    median_alpha,
    rbf_kernel,
    reinforce_loss,
    sample_stats,
    token_advantages,
    token_credits,
    token_terms,
)
from didi_seq.distill.real_data_config import MMDConfig
from didi_seq.errors import DidiError
from didi_seq.models.networks import dit_block_features

X0 = torch.tensor([[2, 0, 1]])
FILLS = torch.tensor(list(itertools.product(range(V), repeat=L)))  # all 27 fills of S = every position


def toy_features():
    """Token features after block 0 of a frozen 2-block toy trunk (contextual: a token's feature depends on its neighbours)."""
    return dit_block_features(tiny_dit(5, layers=2).eval(), 0, bf16=False)


def fill_probs(seed=0):
    """A fixed factorised fill distribution P_i(v) over the three positions [L, V]."""
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(2 * torch.randn(L, V, generator=g), -1)


def population_reward(phi_real, phi_fill, p_fill, alpha):
    """2·E[mean_{i,j∈S} k(φ_j(x0), φ_i(X))] − E_{X, X′ iid}[mean_{i≠j} k(φ_i(X), φ_j(X′))], by enumeration.

    phi_real [L, H], phi_fill [27, L, H], p_fill [27]: written with explicit expectations, not the estimator."""
    cross = rbf_kernel(phi_real[None], phi_fill, alpha)  # [27, L(real), L(fill)]
    attraction = (p_fill * cross.mean((1, 2))).sum()
    k = rbf_kernel(phi_fill[:, None], phi_fill[None, :], alpha)  # [27, 27, L, L]
    off = 1 - torch.eye(L)
    repulsion = torch.einsum("a,b,ab->", p_fill, p_fill, (k * off).sum((-1, -2)) / (L * (L - 1)))
    return 2 * attraction - repulsion


def test_reward_estimator_is_unbiased_for_the_population_quantity():
    """E over B = 3 independent fills (all 27³ triples enumerated) of ``group_rewards`` == the population value."""
    feats = toy_features()
    phi_real, phi_fill = feats(X0)[0], feats(FILLS)
    selected = torch.ones(1, L, dtype=torch.bool)
    alpha = median_alpha(phi_fill, torch.ones(len(FILLS), L, dtype=torch.bool))
    p = fill_probs()
    p_fill = p[torch.arange(L), FILLS].prod(-1)  # [27]
    triples = torch.tensor(list(itertools.product(range(len(FILLS)), repeat=3)))  # [19683, 3]
    w = p_fill[triples].prod(-1)
    fills = phi_fill[triples][:, None]  # [T, G=1, B=3, L, H]
    r, active = group_rewards(phi_real.expand(len(triples), L, -1), fills, selected.expand(len(triples), L), alpha)
    assert bool(active.all())
    expected = (w.double() * r[:, 0].double()).sum().item()
    truth = population_reward(phi_real, phi_fill, p_fill, alpha).item()
    assert expected == pytest.approx(truth, abs=1e-5)
    # sensitivity: a repulsion over pairs inside one fill (dependent tokens) would be visibly biased
    k_one = rbf_kernel(phi_fill, phi_fill, alpha) * (1 - torch.eye(L))
    within = (p_fill * k_one.sum((-1, -2)) / (L * (L - 1))).sum().item()
    across = 2 * (p_fill * rbf_kernel(phi_real[None], phi_fill, alpha).mean((1, 2))).sum().item() - truth
    assert abs(within - across) > 1e-3


def test_inactive_rows_have_no_reward():
    feats = toy_features()
    x0 = torch.tensor([[2, 0, 1], [1, 1, 0]])
    selected = torch.tensor([[True, False, False], [True, True, False]])
    f = feats(x0)
    r, active = group_rewards(f, f[:, None, None].expand(2, 2, 2, L, -1), selected, 1e-2)
    assert active.tolist() == [False, True] and r[0].abs().max().item() == 0


def exact_expected_reward(fn_lp, phi_real, phi_fill, alpha, positions):
    """R(θ) = Σ_{X, X′} P_θ(X) P_θ(X′) r(X, X′) for B = 2 (all 27² pairs), differentiable in θ."""
    p_fill = fn_lp.exp()[torch.arange(L)[positions][:, None], FILLS[:, positions].T].prod(0)  # [27]
    pairs = torch.tensor(list(itertools.product(range(len(FILLS)), repeat=2)))
    sel = positions[None].expand(len(pairs), L)
    with torch.no_grad():
        r, _ = group_rewards(phi_real.expand(len(pairs), L, -1), phi_fill[pairs][:, None], sel, alpha)
    return (p_fill[pairs[:, 0]] * p_fill[pairs[:, 1]] * r[:, 0]).sum()


def flat_grad(model):
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])


def test_reinforce_gradient_matches_the_exact_gradient_of_the_expected_reward():
    """E[∇ loss] with leave-one-out advantages == −∇R / (|S|·B) (exact R over all fills); a baseline
    that includes the group's own reward (the plain group mean) is biased by (1 − 1/G) and is caught."""
    feats = toy_features()
    student = tiny_dit(3)
    fn = denoiser(student)
    positions = torch.ones(L, dtype=torch.bool)
    z = torch.full((1, L), MASK)
    t = torch.ones(1)
    phi_real, phi_fill = feats(X0)[0], feats(FILLS)
    alpha = median_alpha(phi_fill, torch.ones(len(FILLS), L, dtype=torch.bool))
    exact_expected_reward(fn(z, positions[None], t), phi_real, phi_fill, alpha, positions).backward()
    exact = -flat_grad(student).clone() / (int(positions.sum()) * 2)

    n, groups, draws = 6000, 4, 2
    x0, sel = X0.expand(n, L), positions[None].expand(n, L)
    g = torch.Generator().manual_seed(0)
    estimates = {}
    for name, baseline in (("leave-one-out", leave_one_out), ("group mean", lambda r: r - r.mean(-1, keepdim=True))):
        student.zero_grad()
        lp = fn(torch.full((n, L), MASK), sel, torch.ones(n))
        fills = draw_fills(lp, x0, sel, groups, draws, g)
        real, fake = features_of_fills(feats, x0, fills)
        r, _ = group_rewards(real, fake, sel, alpha)
        reinforce_loss(lp, fills, sel, baseline(r)).backward()
        estimates[name] = ((flat_grad(student) - exact).norm() / exact.norm()).item()
    assert estimates["leave-one-out"] < 0.08, estimates
    assert estimates["group mean"] > 0.15, estimates


def test_fills_follow_the_student_and_keep_x0_outside_the_masked_set():
    probs = fill_probs(1)
    x0 = torch.tensor([[2, 0, 1]]).expand(4000, L)
    sel = torch.tensor([True, False, True]).expand(4000, L)
    lp = probs.log()[torch.tensor([0, 2])].repeat(4000, 1)  # rows of the P = 8000 masked positions
    fills = draw_fills(lp, x0, sel, 2, 2, torch.Generator().manual_seed(0))
    assert fills.shape == (4000, 2, 2, L) and bool((fills[..., 1] == 0).all())
    freq = torch.nn.functional.one_hot(fills[..., 0].flatten(), V).float().mean(0)
    assert torch.allclose(freq, probs[0], atol=0.02)
    stats = sample_stats(fills[:5], sel[:5])
    assert len(stats["fill_rep1"]) == 5 * 4 and bool((stats["fill_rep1"] == 0.5).logical_or(stats["fill_rep1"] == 0).all())
    # two tokens per fill: entropy log 2 when they differ (rep-1 0), 0 when they repeat (rep-1 ½)
    assert torch.allclose(stats["fill_entropy"], (stats["fill_rep1"] == 0).float() * torch.log(torch.tensor(2.0)))


def test_median_alpha_and_config_checks():
    f = torch.tensor([[[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]]])  # squared distances 25, 100, 25
    assert median_alpha(f, torch.ones(1, 3, dtype=torch.bool)) == pytest.approx(1 / 25)
    with pytest.raises(DidiError, match="at least two tokens"):
        median_alpha(f, torch.tensor([[True, False, False]]))
    for bad in ({"groups": 1}, {"draws": 1}, {"alpha": 0.0}, {"feature_block": -1}):
        with pytest.raises(DidiError):
            MMDConfig(**bad).validate()


def table_features(seed=0, width=4):
    """Context-free token features φ(v) (a fixed random table): a token's feature ignores its neighbours,
    the case in which crediting each token with only its own kernel terms is exact."""
    table = torch.randn(V + 1, width, generator=torch.Generator().manual_seed(seed))
    return lambda ids: table[ids]


def credit_estimate(fn, feats, alpha, positions, credit_of, n=6000, groups=4, draws=2, seed=0):
    """Monte-Carlo E[∇ loss] of the REINFORCE loss with per-token advantages from ``credit_of``."""
    x0, sel = X0.expand(n, L), positions[None].expand(n, L)
    lp = fn(torch.full((n, L), MASK), sel, torch.ones(n))
    fills = draw_fills(lp, x0, sel, groups, draws, torch.Generator().manual_seed(seed))
    real, fake = features_of_fills(feats, x0, fills)
    reinforce_loss(lp, fills, sel, credit_of(real, fake, sel)).backward()


def test_token_credit_is_unbiased_for_context_free_features_and_its_bugs_are_caught():
    """E[∇ loss] with token credits == −∇R / (|S|·B), the sequence estimator's expectation (exact R over all
    fills); crediting repulsion once per pair (2·att − rep per token) or a baseline that holds the group's own
    credit is biased and caught. Token credit's error at equal n is below the sequence estimator's."""
    feats = table_features()
    student = tiny_dit(3)
    fn = denoiser(student)
    positions = torch.ones(L, dtype=torch.bool)
    z = torch.full((1, L), MASK)
    phi_real, phi_fill = feats(X0)[0], feats(FILLS)
    alpha = median_alpha(phi_fill, torch.ones(len(FILLS), L, dtype=torch.bool))
    exact_expected_reward(fn(z, positions[None], torch.ones(1)), phi_real, phi_fill, alpha, positions).backward()
    exact = -flat_grad(student).clone() / (int(positions.sum()) * 2)

    def rep_once(real, fake, sel):  # the bug: the group formula per token, 2·att − rep (a pair credited once)
        att, rep = token_terms(real, fake, sel, alpha)
        return token_advantages(2 * att - rep, sel)

    def own_group_baseline(real, fake, sel):
        c = token_credits(real, fake, sel, alpha)
        return (c - c.mean((1, 2), keepdim=True)) / (c.shape[2] * int(positions.sum()))

    def sequence(real, fake, sel):
        r, _ = group_rewards(real, fake, sel, alpha)
        return leave_one_out(r)

    errors = {}
    for name, credit_of in (("token", lambda r, f, s: token_advantages(token_credits(r, f, s, alpha), s)),
                            ("repulsion once", rep_once), ("own-group baseline", own_group_baseline), ("sequence", sequence)):
        student.zero_grad()
        credit_estimate(fn, feats, alpha, positions, credit_of)
        errors[name] = ((flat_grad(student) - exact).norm() / exact.norm()).item()
    assert errors["token"] < 0.08, errors
    assert errors["repulsion once"] > 0.15 and errors["own-group baseline"] > 3 * errors["token"], errors
    assert errors["token"] < errors["sequence"], errors


def test_token_credits_split_the_group_reward():
    """The per-token terms are the group reward's own: 2·mean(att) − mean(rep) over b and i ∈ S == r_g
    (rows with a partial S included), and tokens outside S get nothing."""
    feats = toy_features()
    x0 = torch.tensor([[2, 0, 1], [1, 1, 0]])
    sel = torch.tensor([[True, True, True], [True, True, False]])
    fills = torch.tensor([[[[2, 1, 1], [0, 0, 1], [1, 2, 1]], [[1, 1, 0], [2, 2, 2], [0, 1, 2]]],
                          [[[1, 0, 0], [2, 1, 0], [1, 1, 0]], [[0, 0, 0], [2, 2, 0], [1, 2, 0]]]])  # [N=2, G=2, B=3, L]
    real, fake = features_of_fills(feats, x0, fills)
    r, _ = group_rewards(real, fake, sel, 0.05)
    att, rep = token_terms(real, fake, sel, 0.05)
    size = 3 * sel.sum(-1).float()[:, None]  # B·|S|
    assert torch.allclose(2 * att.sum((2, 3)) / size - rep.sum((2, 3)) / size, r, atol=1e-6)
    assert token_credits(real, fake, sel, 0.05)[1, :, :, 2].abs().max().item() == 0
