"""Self-Distillation Through Time (SDTT; Deschenaux & Gulcehre, arXiv 2410.21035) as small functions.

The student's one ancestral step of size 2Δ learns the teacher's two steps of size Δ. One
iteration: real x0, t on [ε, 1], z_t = q(x0, α_t); with no gradient the teacher takes two
ancestral steps t → t − Δ → t − 2Δ from z_t, and the *target* at each masked position of z_t
is the teacher's x0 log-probs at the step where that position was revealed (positions still
masked after both steps take the last step's). The student's x0 log-probs at z_t's masked
positions are pulled to the target by a KL, reverse by default (the paper's best).

Only the first step's reveals shape the target: a position revealed by the *last* step gets
that step's log-probs, and so does one that stays masked, so the last step's draw does not
matter (two teacher steps cost two teacher forwards; the exactness tests rely on this).

Rounds: after each round the student's EMA becomes the teacher and Δ doubles, so a 1024-step
teacher becomes a 512-, 256-, …, 8-step student in 7 rounds (the paper's schedule).

Every function takes plain tensors and ``Denoiser`` callables so the exactness tests can
drive them with the enumerable toy.
"""

from __future__ import annotations

import torch

from ..models.process import LogLinearSchedule
from ..training.distributed import RowNoise, local_mean
from .noised_data import noised_rows
from .objective import Denoiser, Mean, entropy, kl_regulariser, rollout
from .real_data_config import SDTTConfig


def round_of(step: int, steps_per_round: int, rounds: int) -> int:
    """The round a (zero-based) step belongs to; steps past the last round stay in it."""
    return min(step // steps_per_round, rounds - 1)


def round_delta(round_index: int, start_nfe: int, teacher_steps: int = 2) -> float:
    """Δ of round r: its teacher samples with start_nfe / m^r steps of size Δ = m^r / start_nfe,
    and its student learns one step of size m·Δ (m = ``teacher_steps``; m = 2 doubles Δ per round)."""
    return teacher_steps ** round_index / start_nfe


def teacher_times(t: torch.Tensor, delta: float, n_steps: int, t_min: float) -> list[torch.Tensor]:
    """t_i = max(t − iΔ, ε) for i = 0..n_steps (fp64, one entry per row).

    These are the paper's step times (arXiv 2410.21035, Algorithm 1: ``t_curr = max(t_start −
    iΔ, ε)``). The released code (jdeschena/sdtt, ``src/sdtt/core/distill/multi_round_sdtt.py``)
    instead spaces them as ``t_start·space + (1 − t_start)·t_end``; we follow the paper.
    """
    t = t.double()
    return [(t - i * delta).clamp_min(t_min) for i in range(n_steps + 1)]


def reveal_step_target(step_masks: list[torch.Tensor], step_log_probs: list[torch.Tensor]) -> torch.Tensor:
    """The target at the masked positions of the first state ([P0, V], row-major order).

    ``step_masks[k]`` (bool [N, L]) are the positions masked at the input of teacher step k
    and ``step_log_probs[k]`` ([P_k, V]) the teacher's x0 log-probs there. A position takes
    the log-probs of the last step it entered masked: the step that revealed it, or the
    last step if it was never revealed. Masked sets only shrink, so later steps overwrite.
    """
    first = step_masks[0]
    where = torch.full(first.shape, -1, dtype=torch.long, device=first.device)
    where[first] = torch.arange(int(first.sum()), device=first.device)
    target = step_log_probs[0].clone()
    for masked, lp in zip(step_masks[1:], step_log_probs[1:], strict=True):
        target[where[masked]] = lp
    return target


@torch.no_grad()
def teacher_target(teacher: Denoiser, z_t: torch.Tensor, t: torch.Tensor, delta: float, n_steps: int,
                   schedule: LogLinearSchedule, mask_id: int, noise: RowNoise | torch.Generator,
                   t_min: float = 1e-3) -> torch.Tensor:
    """Run ``n_steps`` teacher ancestral steps of size Δ from z_t and return the target [P0, V]
    at z_t's masked positions (``reveal_step_target``)."""
    ro = rollout(teacher, z_t, teacher_times(t, delta, n_steps, t_min), schedule, mask_id, noise)
    return reveal_step_target(ro.step_masks, ro.step_log_probs)


def sdtt_loss(student_lp: torch.Tensor, target_lp: torch.Tensor, divergence: str = "reverse",
              mean: Mean = local_mean) -> torch.Tensor:
    """Mean over masked positions of KL(student ‖ target) ("reverse") or KL(target ‖ student)."""
    if divergence == "reverse":
        return kl_regulariser(target_lp, student_lp, "reverse", mean=mean)
    if divergence == "forward":
        return kl_regulariser(target_lp, student_lp, "forward", mean=mean)
    raise ValueError(f"unknown SDTT divergence {divergence!r}")


def sdtt_step(teacher: Denoiser, student: Denoiser, x0: torch.Tensor, maskable: torch.Tensor | None,
              schedule: LogLinearSchedule, mask_id: int, cfg: SDTTConfig, delta: float, generator: torch.Generator,
              noise: RowNoise, mean: Mean = local_mean) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One SDTT loss on real rows ``x0``: noise them, build the teacher's target, one student forward.

    ``teacher`` is this round's teacher (the initial model, then the previous round's EMA student);
    ``delta`` its step (``round_delta``). Returns the loss (this rank's share of the global mean,
    with a graph into the student) and detached metrics (shares too: sum them over ranks).
    """
    t, z = noised_rows(x0, maskable, schedule, mask_id, generator, noise, cfg.t_min)
    masked = z == mask_id
    target = teacher_target(teacher, z, t, delta, cfg.teacher_steps, schedule, mask_id, noise, cfg.t_min)
    lp = student(z, masked, t)
    loss = sdtt_loss(lp, target, cfg.divergence, mean)
    with torch.no_grad():
        metrics = {"loss": loss.detach(), "entropy": entropy(lp.detach(), mean), "target_entropy": entropy(target, mean)}
    return loss, metrics
