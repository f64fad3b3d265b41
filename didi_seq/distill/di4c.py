"""Di4C (Hayakawa et al., "Distillation of Discrete Diffusion through Dimensional Correlations",
arXiv 2410.08709) as small functions: a mixture student learns the teacher's *joint* over a step.

Why: one ancestral step of a factorised network draws the tokens it reveals independently given
x_t. SDTT's target (the per-position marginals of several teacher steps) cannot change that, and
for a self-consistent teacher those marginals equal its one-step prediction (a martingale), so
SDTT's signal at this scale is a sharpening that a temperature already gives. Di4C's student is a
mixture p_θ(x0 | x_t) = E_λ Π_i p_θ(x0_i | x_t, λ) with λ an extra input (§4; here
``DiTConfig.mixture_components``), which can put the tokens one step reveals together into agreement.

One iteration (§3's distillation loss as a cross-entropy on teacher samples): real x0, t on [ε, 1],
z_t = q(x0, α_t); with no gradient the teacher takes ``teacher_steps`` ancestral steps from t to
s = t − 1/student_nfe, giving z_s; R = the positions z_s reveals. The loss is the student's negative
log-likelihood of z_s's tokens at R under its mixture, per revealed token:

    −log (1/K) Σ_k exp Σ_{i∈R} log p_θ(z_s,i | z_t, λ_k).

λ takes K fixed values (``component_latents``) and the sum runs over all of them: exact, for K student
forwards per row. Why not a continuous λ with a few draws per row: that estimate is a lower bound whose
optimum keeps every component alike — on the enumerable toy a mixture trained with 8 drawn components
stayed at the factorised floor while the same mixture with all 8 summed reached a tenth of it
(tests/test_di4c.py). The factorised part of the loss has no expected gradient (the martingale again);
what it moves is how the components differ. ``mixture_gain`` (nats per revealed token, ≥ 0 by Jensen)
measures how much the mixture explains that its components alone, on average, do not.

Every function takes plain tensors and ``Denoiser`` callables (a fourth argument, λ per row, for
the student) so the exactness tests can drive them with the enumerable toy.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ..models.process import LogLinearSchedule
from ..training.distributed import RowNoise, local_mean
from ..models.dit import component_latents
from .noised_data import noised_rows
from .objective import Denoiser, Mean, entropy, rollout
from .sdtt import teacher_times

# (x [N, L], positions bool [N, L], t [N], λ [N]) -> log p(x0 | x, λ) at those positions [P, V]
MixtureDenoiser = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@torch.no_grad()
def composed_step(teacher: Denoiser, z_t: torch.Tensor, t: torch.Tensor, student_nfe: int, teacher_steps: int,
                  schedule: LogLinearSchedule, mask_id: int, noise: RowNoise | torch.Generator,
                  t_min: float = 1e-3) -> torch.Tensor:
    """z_s: ``teacher_steps`` teacher ancestral steps of size 1/(student_nfe·teacher_steps) from z_t
    (times max(t − iΔ, ε), as SDTT's Algorithm 1): one student step's worth of the teacher."""
    delta = 1.0 / (student_nfe * teacher_steps)
    return rollout(teacher, z_t, teacher_times(t, delta, teacher_steps, t_min), schedule, mask_id, noise).x


def component_log_likelihoods(student: MixtureDenoiser, z_t: torch.Tensor, t: torch.Tensor, z_s: torch.Tensor,
                              latents: torch.Tensor, mask_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ll [K, N], revealed [N], log-probs): Σ over the positions z_s reveals of log p_θ(z_s,i | z_t, λ_k),
    for each of the K latents per row (``latents`` [K, N]) in one batched forward; how many positions
    that is; the first component's log-probs at z_t's masked positions (for the logged entropy)."""
    m, n = latents.shape
    masked = z_t == mask_id
    revealed = masked & (z_s != mask_id)
    rep = lambda x: x.repeat(m, *([1] * (x.dim() - 1)))  # noqa: E731 - component k's rows are rows k·N …
    lp = student(rep(z_t), rep(masked), rep(t), latents.reshape(-1))  # [P·K, V] at the masked positions
    picked = lp.gather(-1, rep(z_s)[rep(masked)][:, None]).squeeze(-1)  # the mask id where nothing was revealed
    picked = torch.where(rep(revealed)[rep(masked)], picked, torch.zeros_like(picked))
    rows = rep(masked).nonzero()[:, 0]
    ll = torch.zeros(m * n, dtype=picked.dtype, device=picked.device).index_add(0, rows, picked)
    return ll.view(m, n), revealed.sum(-1), lp[: int(masked.sum())]


def mixture_nll(ll: torch.Tensor) -> torch.Tensor:
    """−log (1/K) Σ_k exp ll_k per row ([K, N] → [N]): the NLL of an equal-weight mixture of K components."""
    return -(torch.logsumexp(ll, dim=0) - math.log(ll.shape[0]))


def di4c_loss(ll: torch.Tensor, revealed: torch.Tensor, mean: Mean = local_mean) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, mixture_gain): the mixture NLL per revealed token over the batch, and how far below the
    components' own mean NLL it lies (Jensen's gap: 0 while every λ gives the same output)."""
    count = revealed.to(ll.dtype)
    per = lambda nll: mean(nll / count.clamp_min(1), weight=count)  # noqa: E731 - Σ nll / Σ revealed
    loss = per(mixture_nll(ll))
    with torch.no_grad():
        gain = per(-ll.mean(0)) - loss.detach()
    return loss, gain


def di4c_step(teacher: Denoiser, student: MixtureDenoiser, x0: torch.Tensor, maskable: torch.Tensor | None,
              schedule: LogLinearSchedule, mask_id: int, cfg, generator: torch.Generator, noise: RowNoise,
              mean: Mean = local_mean) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One Di4C loss on real rows ``x0``: noise them, one teacher-composed step, the student's mixture NLL.

    ``cfg`` carries ``student_nfe``, ``teacher_steps``, ``components`` (K) and ``t_min``. Returns the loss (this
    rank's share, with a graph) and detached metrics."""
    t, z_t = noised_rows(x0, maskable, schedule, mask_id, generator, noise, cfg.t_min)
    z_s = composed_step(teacher, z_t, t, cfg.student_nfe, cfg.teacher_steps, schedule, mask_id, noise, cfg.t_min)
    latents = component_latents(cfg.components).to(x0.device)[:, None].expand(-1, x0.shape[0])  # [K, N]
    ll, revealed, lp = component_log_likelihoods(student, z_t, t, z_s, latents, mask_id)
    loss, gain = di4c_loss(ll, revealed, mean)
    with torch.no_grad():
        metrics = {"loss": loss.detach(), "mixture_gain": gain, "entropy": entropy(lp.detach(), mean),
                   "revealed": mean(revealed.float())}
    return loss, metrics
