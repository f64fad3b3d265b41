"""SDTT against exact answers on the enumerable toy (3 tokens + mask, length 3)."""

import pytest
import torch
from distill_toy import MASK, SCHEDULE, STATES, L, V, denoiser, step_matrix, tiny_dit

from didi_seq.distill.real_data_config import SDTTConfig
from didi_seq.distill.sdtt import reveal_step_target, round_delta, round_of, sdtt_loss, teacher_target, teacher_times
from didi_seq.errors import DidiError

T, DELTA = 0.9, 0.3  # the first teacher step reveals each mask with probability ≈ 1/3: both steps matter
MASKED = STATES == MASK
NOISY = MASKED.any(-1).nonzero()[:, 0]  # the 63 states with at least one mask


def toy_teacher_fn():
    """A 2-block toy teacher whose predictions depend visibly on context (so Δ and the reveal step matter)."""
    return denoiser(tiny_dit(2, layers=2))


@torch.no_grad()
def composition_marginals(fn, t: float, delta: float) -> torch.Tensor:
    """P(x0_i = v | z_t) for every state and position [64, L, V+1]: one teacher step t → t − Δ,
    then the teacher's step t − Δ → 0 (α = 1, every mask revealed), composed as 64×64 matrices."""
    final = step_matrix(fn, t, t - delta) @ step_matrix(fn, t - delta, 0.0)
    onehot = torch.nn.functional.one_hot(STATES, V + 1).float()  # [64, L, V+1]
    return torch.einsum("ij,jlv->ilv", final, onehot)


@torch.no_grad()
def enumerated_targets(fn, t: float, delta: float):
    """Every (z_t, z_{t−Δ}) pair with its probability and ``reveal_step_target``'s target there.

    Returns (weight of each target row [P], index of its z_t state [P], its position [P], target [P, V+1]).
    """
    step = step_matrix(fn, t, t - delta)
    src, dst = (step[NOISY] > 0).nonzero().unbind(-1)
    src = NOISY[src]
    z0, z1 = STATES[src], STATES[dst]
    m0, m1 = z0 == MASK, z1 == MASK
    tt = torch.full((len(src),), t)
    target = reveal_step_target([m0, m1], [fn(z0, m0, tt), fn(z1, m1, tt - delta)])
    rows, pos = m0.nonzero().unbind(-1)
    return step[src, dst][rows], src[rows], pos, target


def expected_exp_target(fn, t, delta):
    w, state, pos, target = enumerated_targets(fn, t, delta)
    out = torch.zeros(len(STATES), L, V + 1)
    out.index_put_((state, pos), w[:, None] * target.exp(), accumulate=True)
    return out


def test_step_times_follow_algorithm_1():
    times = teacher_times(torch.tensor([0.5, 0.0015]), 0.25, 2, 1e-3)
    assert torch.allclose(torch.stack(times, -1), torch.tensor([[0.5, 0.25, 1e-3], [0.0015, 1e-3, 1e-3]], dtype=torch.float64))
    assert teacher_times(torch.tensor([0.5]), 0.25, 2, 1e-3)[0].dtype == torch.float64


def test_rounds_double_delta_from_1024_to_an_8_step_student():
    cfg = SDTTConfig()
    deltas = [round_delta(r, cfg.start_nfe, cfg.teacher_steps) for r in range(cfg.rounds)]
    assert deltas[0] == 1 / 1024 and all(b == 2 * a for a, b in zip(deltas, deltas[1:], strict=False))
    assert 1 / (cfg.teacher_steps * deltas[-1]) == 8  # the last round's student takes 8 steps
    assert [round_of(s, 10, 3) for s in (0, 9, 10, 29, 30, 45)] == [0, 0, 1, 2, 2, 2]
    with pytest.raises(DidiError, match="multiple of 128"):
        SDTTConfig(start_nfe=1000).validate()


def test_expected_target_is_the_enumerated_two_step_composition():
    """E[exp target] over the teacher's first step == the marginal of the composed teacher steps t → t−Δ → 0."""
    fn = toy_teacher_fn()
    exact = composition_marginals(fn, T, DELTA)
    got = expected_exp_target(fn, T, DELTA)
    assert (got - exact)[MASKED].abs().max().item() < 1e-5
    # sensitivity: a target that always took the first step's log-probs would be the one-step prediction
    first = fn(STATES[NOISY], MASKED[NOISY], torch.full((len(NOISY),), T)).exp()
    assert (first - exact[NOISY][MASKED[NOISY]]).abs().max().item() > 0.05


def test_sampled_target_matches_the_composition():
    """``teacher_target`` (real ancestral draws at Algorithm 1's times) averaged over 20k copies of two states."""
    fn = toy_teacher_fn()
    exact = composition_marginals(fn, T, DELTA)
    states = [int(NOISY[-1]), 1 * 16 + 3 * 4 + 3]  # all mask; (1, mask, mask)
    n = 20_000
    z = STATES[states].repeat_interleave(n, 0)
    target = teacher_target(fn, z, torch.full((len(z),), T), DELTA, 2, SCHEDULE, MASK, torch.Generator().manual_seed(0))
    counts = [int(MASKED[s].sum()) for s in states]
    per_state = [part.view(n, c, V + 1).mean(0) for part, c in zip(target.exp().split([n * c for c in counts]), counts, strict=True)]
    want = [exact[s][MASKED[s]] for s in states]
    assert max((a - b).abs().max().item() for a, b in zip(per_state, want, strict=True)) < 0.015
    wrong = composition_marginals(fn, T, 2 * DELTA)  # a step of 2Δ instead of Δ is visibly different
    assert max((wrong[s][MASKED[s]] - b).abs().max().item() for s, b in zip(states, want, strict=True)) > 0.05


def expected_loss(theta, w, state_pos, target, divergence):
    """Σ over (z_t, z_{t−Δ}) pairs of P · KL at each masked position (a tabular student θ per (state, position))."""
    lp = torch.log_softmax(theta[state_pos], -1)
    per = torch.stack([sdtt_loss(lp[k:k + 1], target[k:k + 1], divergence) for k in range(len(w))])
    return (w * per).sum()


@pytest.mark.parametrize("divergence", ["forward", "reverse"])
def test_loss_is_stationary_at_the_exact_optimum(divergence):
    """The expected SDTT loss of a tabular student has zero gradient exactly at the enumerated optimum:
    forward KL at the composition's marginals, reverse KL at the normalised geometric mean of the target.
    Where the target is deterministic (one masked position: both steps see the same state) the loss is 0."""
    fn = toy_teacher_fn()
    w, state, pos, target = enumerated_targets(fn, T, DELTA)
    keys = state * L + pos
    uniq, state_pos = keys.unique(return_inverse=True)
    finite = torch.isfinite(target)
    if divergence == "forward":
        opt = torch.zeros(len(uniq), V + 1).index_add(0, state_pos, w[:, None] * target.exp()).log()
    else:  # E[log target] over the outcomes (mass 1 per position), −∞ where the target forbids a token
        opt = torch.zeros(len(uniq), V + 1).index_add(0, state_pos, w[:, None] * torch.where(finite, target, 0.0))
        opt[:, MASK] = float("-inf")
    theta = opt.clone().requires_grad_(True)
    loss = expected_loss(theta, w, state_pos, target, divergence)
    loss.backward()
    assert theta.grad[:, :V].abs().max().item() < 1e-5
    # per (z_t, position): the optimum's expected loss is 0 exactly where the target is deterministic
    with torch.no_grad():
        lp = torch.log_softmax(opt[state_pos], -1)
        per = torch.stack([sdtt_loss(lp[k:k + 1], target[k:k + 1], divergence) for k in range(len(w))])
        at_opt = torch.zeros(len(uniq)).index_add(0, state_pos, w * per)
    one_mask = MASKED[uniq // L].sum(-1) == 1
    assert at_opt[one_mask].abs().max().item() < 1e-5 and at_opt[~one_mask].min().item() > 1e-4
    # the same student moved off the optimum: higher expected loss and a non-zero gradient
    bumped = (opt + 0.3 * torch.randn(opt.shape, generator=torch.Generator().manual_seed(1))).requires_grad_(True)
    loss_b = expected_loss(bumped, w, state_pos, target, divergence)
    loss_b.backward()
    assert loss_b.item() > loss.item() and bumped.grad[:, :V].abs().max().item() > 1e-3
