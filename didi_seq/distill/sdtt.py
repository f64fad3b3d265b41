"""Self-Distillation Through Time (SDTT; Deschenaux & Gulcehre, arXiv 2410.21035) as small functions.

The student's one ancestral step of size 2Δ learns the teacher's two steps of size Δ. One
iteration: real x0, t on [ε, 1], z_t = q(x0, α_t); with no gradient the teacher takes two
ancestral steps t → t − Δ → t − 2Δ from z_t, and the *target* at each masked position of z_t
is the teacher's x0 log-probs at the step where that position was revealed (positions still
masked after both steps take the last step's). The student's x0 log-probs at z_t's masked
positions are pulled to the target by a KL, reverse by default (the paper's best, §5).

Only the first step's reveals shape the target: a position revealed by the *last* step gets
that step's log-probs, and so does one that stays masked, so the last step's draw is never
used (two teacher steps cost two teacher forwards and one draw).

Rounds: after each round the student's EMA becomes the teacher and Δ doubles, so a 1024-step
teacher becomes a 512-, 256-, …, 8-step student in 7 rounds (the paper's schedule).

Every function takes plain tensors and ``Denoiser`` callables so the exactness tests can
drive them with the enumerable toy.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch

from ..distributed import RowNoise, local_mean
from ..errors import DidiError
from ..process import LogLinearSchedule
from .noised_data import noised_rows
from .objective import Denoiser, Mean, entropy, kl_regulariser, rollout


@dataclass
class SDTTConfig:
    """SDTT's hyperparameters; each default names its source (paper = arXiv 2410.21035)."""

    lr: float = 6e-5  # paper: Adam 6e-5, no weight decay (repository default 3e-4)
    warmup_steps: int = 50  # paper 500 linear of 10k per round, then constant; [CPU] scaled with the round length
    teacher_steps: int = 2  # paper: 2 teacher steps per target (4 and 8 were worse)
    divergence: str = "reverse"  # paper: reverse KL(student ‖ target) best; "forward" = KL(target ‖ student)
    start_nfe: int = 1024  # round 0's teacher steps (Δ = 1/1024); paper: teacher sampled with 1024 steps
    rounds: int = 7  # paper: 7 rounds (1024 → 8 steps)
    steps_per_round: int = 0  # 0 = the run's --steps split evenly over the rounds; paper 10k (5k/2.5k hurt MAUVE)
    ema: float = 0.999  # paper 0.9999, not reset between rounds; [CPU] rounds of hundreds of steps need a shorter average
    grad_clip: float = 1.0  # paper
    t_min: float = 1e-3  # ε of t ~ U[ε, 1] and of Algorithm 1's max(t − iΔ, ε) (MDLM's sampling ε)

    def validate(self) -> None:
        if self.divergence not in ("reverse", "forward"):
            raise DidiError(f"--sdtt-divergence must be reverse or forward, got {self.divergence!r}")
        for name in ("teacher_steps", "start_nfe", "rounds"):
            if getattr(self, name) < 1:
                raise DidiError(f"--sdtt-{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.start_nfe % self.teacher_steps ** self.rounds:
            raise DidiError(f"--sdtt-start-nfe {self.start_nfe} must divide by {self.teacher_steps} {self.rounds} times "
                            f"(a multiple of {self.teacher_steps ** self.rounds})")
        if not self.lr > 0 or self.steps_per_round < 0 or self.warmup_steps < 0 or not 0 <= self.ema < 1:
            raise DidiError("SDTT needs lr > 0, steps_per_round ≥ 0, warmup_steps ≥ 0 and 0 ≤ ema < 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SDTTConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


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
