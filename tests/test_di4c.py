"""Di4C (arXiv 2410.08709) against exact answers on the enumerable toy (3 tokens + mask, length 3).

The toy teacher's two-step joint over a full reveal (1 → 0.5 → 0) is correlated; a factorised
one-step student can do no better than the product of its marginals (KL = the joint's total
correlation), while the mixture student trained by ``di4c`` goes below that floor.
"""

import math

import pytest
import torch
from distill_toy import MASK, SCHEDULE, STATES, L, V, denoiser, index_of, step_matrix, tiny_dit

from didi_seq.distill.di4c import component_log_likelihoods, composed_step, di4c_loss, mixture_nll
from didi_seq.distill.real_data_config import Di4CConfig
from didi_seq.errors import DidiError
from didi_seq.models.dit import DiT, component_latents, with_mixture_latent
from didi_seq.models.networks import dit_denoiser
from didi_seq.sampling.ancestral import Prediction, SamplerConfig, in_batches, start_states
from didi_seq.models.teacher import NativeTeacher, TeacherSpec

CLEAN = ~(STATES == MASK).any(-1)  # the 27 fully revealed states
ALL_MASK = torch.full((1, L), MASK)


def toy_teacher_model() -> DiT:
    """The 2-block toy teacher, with adaLN weights that read the conditioning vector (as a trained DiT's do):
    the mixture latent acts only through it."""
    model = tiny_dit(2, layers=2)
    torch.manual_seed(3)
    for layer in [*(b.adaLN_modulation for b in model.blocks), model.output_layer.adaLN_modulation]:
        torch.nn.init.normal_(layer.weight, std=0.3)
    return model


@torch.no_grad()
def teacher_joint(fn) -> torch.Tensor:
    """P(x | all-mask) after two teacher steps 1 → 0.5 → 0 [64] (zero off the clean states)."""
    return (step_matrix(fn, 1.0, 0.5) @ step_matrix(fn, 0.5, 0.0))[index_of(ALL_MASK[0])]


@torch.no_grad()
def mixture_joint(model: DiT) -> torch.Tensor:
    """(1/K) Σ_k Π_i p(x_i | all-mask, λ_k) [64]: the one-step mixture's exact joint."""
    fn = dit_denoiser(model, MASK, [], SCHEDULE, bf16=False)
    lam = component_latents(model.config.mixture_components)
    x = ALL_MASK.repeat(len(lam), 1)
    p = fn(x, x == MASK, torch.ones(len(lam)), lam).exp().view(len(lam), L, V + 1)
    joint = torch.ones(len(lam), len(STATES))
    for pos in range(L):
        joint = joint * p[:, pos, :][:, STATES[:, pos]]
    return joint.mean(0) * CLEAN


def kl(p: torch.Tensor, q: torch.Tensor) -> float:
    keep = p > 0
    return float((p[keep] * (p[keep].log() - q[keep].clamp_min(1e-30).log())).sum())


def product_of_marginals(p: torch.Tensor) -> torch.Tensor:
    marg = [torch.zeros(V + 1).index_add(0, STATES[:, pos], p) for pos in range(L)]
    out = torch.ones(len(STATES))
    for pos in range(L):
        out = out * marg[pos][STATES[:, pos]]
    return out * CLEAN


def test_mixture_nll_is_minus_log_mean_likelihood():
    ll = torch.tensor([[-3.0, -40.0], [-5.0, -41.0], [-4.0, -39.5]])
    by_hand = [-math.log((math.exp(-3) + math.exp(-5) + math.exp(-4)) / 3),
               -math.log((math.exp(-40) + math.exp(-41) + math.exp(-39.5)) / 3)]
    assert torch.allclose(mixture_nll(ll), torch.tensor(by_hand), atol=1e-6)


def test_loss_is_per_revealed_token_and_gain_is_jensens_gap():
    ll = torch.tensor([[-3.0, -8.0], [-5.0, -8.0]])
    revealed = torch.tensor([2, 4])
    loss, gain = di4c_loss(ll, revealed)
    nll = [-math.log((math.exp(-3) + math.exp(-5)) / 2), 8.0]
    assert loss.item() == pytest.approx(sum(nll) / 6, abs=1e-6)
    assert gain.item() == pytest.approx((4.0 + 8.0) / 6 - sum(nll) / 6, abs=1e-6)
    assert di4c_loss(torch.full((3, 2), -2.0), revealed)[1].item() == pytest.approx(0.0, abs=1e-7)  # equal components


def test_mixture_copy_starts_at_the_teacher_for_every_latent_and_counts_its_parameters():
    teacher = toy_teacher_model()
    student = with_mixture_latent(teacher, 4)
    x = torch.tensor([[MASK, 0, MASK], [1, MASK, MASK]])
    for lam in (0.0, 0.3, 0.99):
        assert torch.equal(student(x, None, torch.full((2,), lam)), teacher(x))
    cfg = student.config
    assert cfg.mixture_components == 4 and sum(p.numel() for p in student.parameters()) == cfg.num_parameters()
    assert {k: tuple(v.shape) for k, v in student.state_dict().items()} == cfg.parameter_shapes()
    torch.nn.init.normal_(student.latent_map.mlp[2].weight)
    assert not torch.allclose(student(x, None, torch.zeros(2)), student(x, None, torch.full((2,), 0.5)))


def test_component_log_likelihoods_match_a_direct_sum():
    torch.manual_seed(0)
    model = with_mixture_latent(toy_teacher_model(), 4)
    torch.nn.init.normal_(model.latent_map.mlp[2].weight)
    fn = dit_denoiser(model, MASK, [], SCHEDULE, bf16=False)
    z_t = torch.tensor([[MASK, MASK, 2], [MASK, 0, MASK], [MASK, MASK, MASK]])
    z_s = torch.tensor([[1, MASK, 2], [2, 0, 0], [0, 1, MASK]])
    t = torch.tensor([0.9, 0.6, 1.0])
    lam = torch.rand(4, 3, dtype=torch.float64)
    ll, revealed, _ = component_log_likelihoods(fn, z_t, t, z_s, lam, MASK)
    assert revealed.tolist() == [1, 2, 2]
    for m in range(4):
        logits = model(z_t, SCHEDULE.sigma(t), lam[m]).detach().double()
        logits[..., MASK] = -math.inf  # the mask is never a clean token
        lp = torch.log_softmax(logits, -1)
        for n in range(3):
            want = sum(lp[n, i, z_s[n, i]] for i in range(L) if z_t[n, i] == MASK and z_s[n, i] != MASK)
            assert ll[m, n].item() == pytest.approx(float(want), abs=2e-5)


def test_composed_step_draws_the_teachers_two_step_joint():
    fn = denoiser(toy_teacher_model())
    n = 20_000
    z = composed_step(fn, ALL_MASK.repeat(n, 1), torch.ones(n), 1, 2, SCHEDULE, MASK, torch.Generator().manual_seed(0),
                      t_min=0.0)
    assert (z != MASK).all()
    freq = torch.bincount(index_of(z), minlength=len(STATES)).double() / n
    expected = teacher_joint(fn).double()
    keep = expected > 0
    chi2 = lambda f: float(((f[keep] - expected[keep]) ** 2 / expected[keep]).sum() * n)  # noqa: E731
    assert chi2(freq) < 60, chi2(freq)  # 26 degrees of freedom: p ≈ 2e-4 at 60
    # negative control: one teacher step (a factorised draw) is another law, and the statistic sees it
    one = composed_step(fn, ALL_MASK.repeat(n, 1), torch.ones(n), 1, 1, SCHEDULE, MASK, torch.Generator().manual_seed(1),
                        t_min=0.0)
    assert chi2(torch.bincount(index_of(one), minlength=len(STATES)).double() / n) > 200


def test_di4c_training_beats_the_factorised_floor_on_the_toy():
    teacher = toy_teacher_model()
    fn_t = denoiser(teacher)
    target = teacher_joint(fn_t)
    floor = kl(target, product_of_marginals(target))  # the best any factorised one-step student can do
    assert floor > 0.02
    torch.manual_seed(0)
    student = with_mixture_latent(teacher)
    assert kl(target, mixture_joint(student)) >= floor - 1e-6  # starts factorised (at the teacher's one step)
    fn_s = dit_denoiser(student, MASK, [], SCHEDULE, bf16=False)
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    n, m = 256, 8
    for _ in range(300):
        z_s = composed_step(fn_t, ALL_MASK.repeat(n, 1), torch.ones(n), 1, 2, SCHEDULE, MASK, gen, t_min=0.0)
        lam = torch.rand(m, n, dtype=torch.float64, generator=gen)
        ll, revealed, _ = component_log_likelihoods(fn_s, ALL_MASK.repeat(n, 1), torch.ones(n), z_s, lam, MASK)
        loss, _ = di4c_loss(ll, revealed)
        opt.zero_grad()
        loss.backward()
        opt.step()
    learned = kl(target, mixture_joint(student))
    print(f"floor {floor:.4f} learned {learned:.4f}")
    assert learned < 0.5 * floor
