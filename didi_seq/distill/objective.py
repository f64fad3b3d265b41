"""The pieces of DiDi-Instruct's objective (arXiv 2509.25035; ``algo.py`` ``training_step``), as small functions.

Integral KL: L(ν) = ∫ ω(t) KL(q_ν(·, t) ‖ q_θ(·, t)) dt between the forward-noised
marginals of the student's samples and of the target (teacher samples or real data).
Its gradient is a score-function estimate E[ω · R(z_t, t) · ∇ log P_ν(trajectory)] with
R = log q_ν − log q_θ, estimated by a discriminator. Sign convention here: the
discriminator's positive class is the target, so its logit ≈ −R ("looks like the
target") is a *reward*, and the policy loss is −ω·A·log P.

Every function takes plain tensors and callables so the exactness tests can drive them
with enumerable toy models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..models.process import LogLinearSchedule
from ..sampling.ancestral import categorical_from_uniform
from ..training.distributed import RowNoise, local_mean

# (x [N, L] long, positions bool [N, L], t [N]) -> log p(x0 | x) at those positions, fp32 [P, V]
Denoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# (values, weight=None) -> their (weighted) mean; Ranks.mean takes it over all ranks' values
Mean = Callable[..., torch.Tensor]


def sample_tau(n: int, a: int, b: int, lo: float, hi: float, generator: torch.Generator) -> torch.Tensor:
    """τ ~ Beta(a, b) clamped to [lo, hi]; Beta(1,1) is uniform (π off).

    For integer a, b the a-th smallest of a+b−1 uniforms is Beta(a, b): exact, and drawn from
    the seeded torch generator so a resumed run continues the same stream.
    """
    u = torch.rand(n, a + b - 1, dtype=torch.float64, generator=generator)
    return u.sort(-1).values[:, a - 1].clamp(lo, hi)


def omega(t: torch.Tensor, schedule: LogLinearSchedule, mode: str, lo: float = 0.1, hi: float = 10.0) -> torch.Tensor:
    """ω(t): the ELBO weight −α'/(1−α) (= 1/t for log-linear) clipped to [lo, hi], or 1."""
    if mode == "constant":
        return torch.ones_like(t)
    return schedule.nelbo_weight(t).clamp(lo, hi)


@dataclass
class Rollout:
    """A student trajectory all-mask → … → x with the log-prob of the revealed tokens."""

    x: torch.Tensor  # [N, L] final sample (a few masks may survive at t0 > 0)
    log_prob: torch.Tensor  # [N], differentiable: Σ over steps of log p_ν(revealed tokens)
    states: list[torch.Tensor]  # the inputs of each step (z_1 = all mask, z_τ, …)
    step_log_probs: list[torch.Tensor]  # per step: student log p at that state's masked positions [P, V]
    step_masks: list[torch.Tensor]  # per step: which positions were masked (bool [N, L])
    step_times: list[torch.Tensor]  # per step: the time t of the input state [N]


def rollout(student: Denoiser, x_start: torch.Tensor, times: list[torch.Tensor], schedule: LogLinearSchedule,
            mask_id: int, noise: RowNoise | torch.Generator) -> Rollout:
    """Ancestral steps t_0 → t_1 → … (per-row times, lists of [N] tensors) with the REINFORCE score.

    The step's sample is drawn (fp64) from the detached log-probs of the same forward pass
    that carries the gradient, so the recorded log-prob is exactly that of the policy that
    sampled. Positions that stay masked contribute a ν-independent constant and are left out.
    Each step draws one "reveal?" and one "which token" uniform per position, a fixed shape,
    so ranks holding rows of one global batch see the numbers one process would.
    """
    if isinstance(noise, torch.Generator):
        noise = RowNoise(noise, x_start.shape[0])
    x = x_start.clone()
    total = torch.zeros(x.shape[0], device=x.device)
    states, lps, masks, ts = [], [], [], []
    for t, s in zip(times[:-1], times[1:], strict=True):
        masked = x == mask_id
        lp = student(x, masked, t)  # [P, V] at masked positions, row-major
        a_t, a_s = schedule.alpha(t.double()), schedule.alpha(s.double())
        p_reveal = ((a_s - a_t) / (1 - a_t)).view(-1, 1).expand_as(x)
        u = noise.uniform(x.shape[1])
        u_token = noise.uniform(x.shape[1])
        reveal = (u < p_reveal)[masked].nonzero()[:, 0]  # indices into the P masked positions
        tokens = categorical_from_uniform(lp.detach()[reveal], u_token[masked][reveal])
        picked = lp[reveal].gather(-1, tokens[:, None]).squeeze(-1)
        total = total.index_add(0, masked.nonzero()[:, 0][reveal], picked)
        states.append(x)
        lps.append(lp)
        masks.append(masked)
        ts.append(t)
        values = torch.full((lp.shape[0],), mask_id, dtype=torch.long, device=x.device)
        values[reveal] = tokens
        x = x.clone()
        x[masked] = values
    return Rollout(x, total, states, lps, masks, ts)


def student_times(n: int, tau: torch.Tensor | None, t0: float, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """1 → τ → t0 (score decomposition) or 1 → t0 (one jump) for n rows."""
    one = torch.ones(n, dtype=torch.float64, device=device)
    end = torch.full((n,), t0, dtype=torch.float64, device=device)
    return [one, end] if tau is None else [one, tau, end]


def discriminator_loss(logit_pos: torch.Tensor, mask_pos: torch.Tensor, logit_neg: torch.Tensor, mask_neg: torch.Tensor,
                       smoothing: float = 0.1, weight_pos: torch.Tensor | None = None,
                       weight_neg: torch.Tensor | None = None, mean: Mean = local_mean) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token BCE on masked positions only, each side averaged over its own masks, 50/50.

    Targets are 1 − s (positive: the target distribution) and s (negative: student). Optional
    per-row weights turn a batch of distinct states into an exact expectation (used by the
    exactness tests). Returns (loss, accuracy at threshold 0).
    """
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def side(logits, mask, target, weight):
        w = mask.float() if weight is None else mask.float() * weight.float()[:, None]
        per = bce(logits.float(), torch.full_like(logits.float(), target), reduction="none")
        right = (logits > 0) if target > 0.5 else (logits < 0)
        return mean(per, weight=w), mean(right.float(), weight=w)

    loss_p, acc_p = side(logit_pos, mask_pos, 1 - smoothing, weight_pos)
    loss_n, acc_n = side(logit_neg, mask_neg, smoothing, weight_neg)
    return 0.5 * (loss_p + loss_n), (0.5 * (acc_p + acc_n)).detach()


def rewards(logits: torch.Tensor, masked: torch.Tensor, clip: float = 8.0, eps: float = 1e-6) -> torch.Tensor:
    """Per row: clipped log-odds of "target" averaged over masked positions (≈ −R per token)."""
    p = torch.sigmoid(logits.float())
    log_odds = (torch.log(p + eps) - torch.log(1 - p + eps)).clamp(-clip, clip) * masked
    return log_odds.sum(-1) / masked.sum(-1).clamp_min(1)


def grouped_advantages(r: torch.Tensor, group: int, clip: float = 3.0) -> torch.Tensor:
    """Standardise rewards within consecutive groups of ``group`` rows (unbiased std), clip."""
    g = r.view(-1, group)
    a = (g - g.mean(-1, keepdim=True)) / (g.std(-1, keepdim=True) + 1e-8)
    return a.clamp(-clip, clip).reshape(-1)


def kl_regulariser(teacher_lp: torch.Tensor, student_lp: torch.Tensor, kind: str, mean: Mean = local_mean) -> torch.Tensor:
    """Mean per-position KL between teacher and student posteriors ([P, V] log-probs, −∞ allowed).

    forward = KL(teacher ‖ student), reverse = KL(student ‖ teacher), jeffrey = their mean.
    """
    def kl(lp_a, lp_b):
        pa = lp_a.exp()
        diff = torch.where(pa > 0, lp_a - lp_b.clamp_min(-1e4), torch.zeros_like(lp_a))
        return (pa * diff).sum(-1)

    if kind == "forward":
        per = kl(teacher_lp, student_lp)
    elif kind == "reverse":
        per = kl(student_lp, teacher_lp)
    elif kind == "jeffrey":
        per = 0.5 * (kl(teacher_lp, student_lp) + kl(student_lp, teacher_lp))
    else:
        raise ValueError(f"unknown regulariser {kind!r}")
    return mean(per)


def entropy(lp: torch.Tensor, mean: Mean = local_mean) -> torch.Tensor:
    """Mean categorical entropy of [P, V] log-probs."""
    p = lp.exp()
    per = -(p * torch.where(p > 0, lp, torch.zeros_like(lp))).sum(-1)
    return mean(per)
