"""An enumerable toy for DiDi-Instruct: 3 tokens + mask, length 3, so every distribution is exact.

States are all 4³ = 64 sequences over {0, 1, 2, mask}; the student's few-step sampler,
the forward noising and the integral KL are 64×64 matrix products, differentiable in the
student's parameters, so the exact gradient is available from autograd.
"""

import itertools

import torch

from didi_seq.models.dit import DiT, DiTConfig
from didi_seq.models.networks import dit_denoiser
from didi_seq.models.process import LogLinearSchedule
from didi_seq.models.teacher import NativeTeacher, TeacherSpec

V, MASK, L = 3, 3, 3
STATES = torch.tensor(list(itertools.product(range(V + 1), repeat=L)))  # [64, L]
SCHEDULE = LogLinearSchedule()


def index_of(x: torch.Tensor) -> torch.Tensor:
    return (x * (V + 1) ** torch.arange(L - 1, -1, -1)).sum(-1)


def tiny_dit(seed: int, layers: int = 1) -> DiT:
    torch.manual_seed(seed)
    model = DiT(DiTConfig(vocab_size=V + 1, length=L, hidden=32, layers=layers, heads=2, cond_dim=8))
    torch.nn.init.normal_(model.output_layer.linear.weight, std=1.0)
    for b in model.blocks:
        torch.nn.init.normal_(b.adaLN_modulation.bias, std=0.5)
    return model


def toy_teacher(seed: int = 0) -> NativeTeacher:
    spec = TeacherSpec(vocab_size=V + 1, mask_id=MASK, max_length=L)
    return NativeTeacher(tiny_dit(seed), spec, SCHEDULE, {"id": "toy", "domain": "toy"}, bf16=False)


def denoiser(model: DiT):
    return dit_denoiser(model, MASK, [], SCHEDULE, bf16=False)


def step_matrix(fn, t: float, s: float) -> torch.Tensor:
    """T[i, j] = P(state j at time s | state i at time t) for one ancestral step."""
    masked = STATES == MASK
    probs = torch.zeros(len(STATES), L, V + 1)
    probs[~masked] = torch.nn.functional.one_hot(STATES[~masked], V + 1).float()
    a_t, a_s = SCHEDULE.alpha(torch.tensor(t)), SCHEDULE.alpha(torch.tensor(s))
    p = float((a_s - a_t) / (1 - a_t))
    rows = masked.any(-1)
    lp = fn(STATES[rows], masked[rows], torch.full((int(rows.sum()),), t))  # [P, V+1]
    reveal = torch.zeros(int(masked.sum()), V + 1)
    reveal[:, MASK] = 1 - p
    reveal = reveal + p * lp.exp()
    probs[masked] = reveal
    # product over positions of P(next token at l)
    out = torch.ones(len(STATES), len(STATES))
    for pos in range(L):
        out = out * probs[:, pos, :][:, STATES[:, pos]]
    return out


def noise_matrix(t: float) -> torch.Tensor:
    """Q[j, k] = P(z = k | x = j) under forward masking at time t."""
    a = float(SCHEDULE.alpha(torch.tensor(t)))
    out = torch.ones(len(STATES), len(STATES))
    for pos in range(L):
        x, z = STATES[:, pos][:, None], STATES[:, pos][None, :]
        keep = torch.where(x == MASK, (z == MASK).float(), torch.where(z == x, a, 0.0) + torch.where(z == MASK, 1 - a, 0.0))
        out = out * keep
    return out


def student_distribution(fn, tau: float | None, t0: float = 1e-3) -> torch.Tensor:
    start = torch.zeros(len(STATES))
    start[index_of(torch.full((L,), MASK))] = 1.0
    times = [1.0, t0] if tau is None else [1.0, tau, t0]
    p = start
    for t, s in zip(times[:-1], times[1:], strict=True):
        p = p @ step_matrix(fn, t, s)
    return p


def data_distribution(seed: int = 1) -> torch.Tensor:
    """A fixed random distribution over the 27 clean sequences (zero on masked states)."""
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(len(STATES), generator=g) ** 3 + 0.02
    w[(STATES == MASK).any(-1)] = 0
    return w / w.sum()


def noised_kl(p_student: torch.Tensor, p_target: torch.Tensor, t: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """KL(q_ν(·, t) ‖ q_θ(·, t)) and both noised marginals."""
    q = noise_matrix(t)
    qs, qt = p_student @ q, p_target @ q
    kl = (qs * (torch.log(qs.clamp_min(1e-30)) - torch.log(qt))).sum()
    return kl, qs, qt


def integral_kl(fn, p_target: torch.Tensor, taus: list[float], weights: list[float], omega_mode: str = "elbo") -> torch.Tensor:
    """Σ_k π_k ω(τ_k) KL_τk with the student split at τ_k and noised at τ_k (coupled time)."""
    from didi_seq.distill.objective import omega

    total = torch.zeros(())
    for tau, w in zip(taus, weights, strict=True):
        om = float(omega(torch.tensor(tau), SCHEDULE, omega_mode))
        total = total + w * om * noised_kl(student_distribution(fn, tau), p_target, tau)[0]
    return total
