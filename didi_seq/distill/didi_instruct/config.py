"""DiDi-Instruct hyperparameters: defaults, where each comes from, and the ablation switches.

Sources, all from DiDi-Instruct (arXiv 2509.25035; github.com/haoyangzheng-ai/didi-instruct):
[INIT] ``configs/algo/didi_instruct.yaml`` at the first commit 80ac6c1 (the full training
config, deleted from the repository a minute later in 1b43c35), [LATE] the defaults of the
training code in ``algo.py`` released on 2026-02-05, [HEAD] the evaluation release at
7825a02, [NOTES] the paper's reported values as given in summaries of its ICLR 2026
version (not yet checked against the paper's text), [MEASURED] chosen for the small
embedded models on this CPU by measurement (the 169M values, e.g. a student lr of 1e-6 for
10k steps, would not move a 6M model in a few hundred steps).

Ablation switches (the paper's cumulative ablation table): ``score_decomposition`` (2-step generator 1→τ→t0
instead of one jump), ``coupled_time`` (discriminator noise level = the student's τ),
``omega`` ("elbo" vs "constant"), ``pi`` ("beta22" vs "uniform"), ``regularization``
("forward" | "reverse" | "jeffrey" | "none"), and RGAS at sampling time. ``positive``
picks the discriminator's target class: "data" (what the released code does) or
"teacher" samples (what the paper describes).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...errors import DidiError
from ...numbers import check_float_fields, check_range
from ...options import option
from ..method import MethodConfig
from ..prompt import PromptOption

PI_SHAPES = {"uniform": (1, 1), "beta22": (2, 2), "beta25": (2, 5), "beta52": (5, 2)}


@dataclass
class DistillConfig(PromptOption, MethodConfig):
    steps: int = 400  # [MEASURED] ~15 s/step budget on 1 CPU thread; the paper runs 10k on an H100
    # real rows per step [MEASURED]; the paper's is not recovered
    batch_size: int = option(4, "Target rows per iteration (each repeated group-size times).")
    # G [INIT/HEAD num_samples_per_prompt]
    group_size: int = option(4, "G: student samples per target row; advantages are standardised per group.")
    # The student must move slowly next to the discriminator, or it runs into regions where the
    # density-ratio estimate is stale and the integral KL rises (measured on the enumerable toy:
    # student/disc lr 1e-5/3e-3 lowered it 3-4x, 3e-5/3e-3 raised it). Paper: 1e-6 / 1e-5.
    student_lr: float = option(1e-5, "Student peak learning rate.")  # [MEASURED]; paper 1e-6 at 169M/10k steps [NOTES]
    disc_lr: float = option(1e-4, "Discriminator peak learning rate.")  # [MEASURED]; paper 1e-5 [INIT/HEAD]
    warmup_steps: int = 20  # [MEASURED]; paper 1000 of 10k, then linear decay [LATE]
    ema: float = 0.99  # [MEASURED] for a few hundred steps; paper 0.999 [INIT/HEAD]
    disc_trainable_blocks: int = 1  # paper: last 4 of 12 [INIT/HEAD]; 1 of 4 keeps the shipped pair ≤ 30 MB
    # discriminator-only steps first [NOTES: a warm-up; INIT: 0]; [MEASURED] on the toy
    disc_warmup_steps: int = option(20, "Discriminator-only iterations before the student moves.")
    label_smoothing: float = 0.1  # [INIT/HEAD]
    reward_clip: float = 8.0  # [INIT/LATE]
    advantage_clip: float = 3.0  # [INIT/LATE]
    t0: float = 1e-3  # end time of the student's rollout [INIT t0_eps]
    tau_min: float = 0.02  # [LATE tau_min_eps]
    tau_max: float = 0.98
    omega_min: float = 0.1  # [LATE]
    omega_max: float = 10.0  # [LATE]
    kl_coef: float = 0.05  # kl_beta [INIT]; multiplies kl_hi/kl_lo as in [LATE]
    kl_hi_coef: float = 0.01  # [INIT/LATE]
    kl_lo_coef: float = 0.01  # [INIT/LATE]
    entropy_coef: float = 5e-4  # [INIT]
    student_clip: float = 0.5  # [LATE]
    disc_clip: float = 1.0  # [LATE]
    # ablation switches (all on = the paper's full method)
    score_decomposition: bool = option(True, "2-step student rollout 1→τ→t0 (on) or one jump (off).")
    coupled_time: bool = option(True, "Noise the discriminator's inputs at the student's τ (on) or an independent t.")
    omega: str = option("elbo", "Time weight ω: elbo | constant.")  # "elbo" (−α'/(1−α), [INIT simplified]) | "constant"
    # τ proposal: [INIT beta22]; HEAD switched to uniform
    pi: str = option("beta22", "τ proposal π: beta22 | uniform | beta25 | beta52.")
    # [INIT Jeffrey β=0.5]; [LATE] forward only
    regularization: str = option("jeffrey", "KL to the teacher: jeffrey | forward | reverse | none.")
    # "data" [released code] | "teacher" [paper]
    positive: str = option("data", "Discriminator target class: data (released code) | teacher (paper).")
    # positive="teacher": samples drawn once at the start
    teacher_pool: int = option(256, "--positive teacher: number of teacher samples drawn once.")
    teacher_pool_nfe: int = option(256, "--positive teacher: NFE of those teacher samples.")
    # the run's settings (distill --steps/--ckpt-every/--seed/--threads set them) and bookkeeping
    ckpt_every: int = 25
    seed: int = 0
    threads: int | None = None
    # [INIT] trains in bf16; an option (not only a run setting) so its effect can be ablated from the CLI
    bf16: bool = option(True, "bf16 autocast (the paper's precision; a CPU without native bf16 computes in fp32 anyway).")

    def validate(self) -> None:
        super().validate()  # --prompt-length
        check_float_fields(self)
        for name in ("label_smoothing", "t0"):
            check_range(name, getattr(self, name), 0, 1, high_open=True)
        check_range("ema", self.ema, 0, 1)
        if self.steps <= 0:
            raise DidiError(f"--steps must be a positive integer, got {self.steps}")
        for name in ("batch_size", "ckpt_every", "disc_trainable_blocks", "teacher_pool", "teacher_pool_nfe"):
            if getattr(self, name) <= 0:
                raise DidiError(f"{name} must be positive, got {getattr(self, name)}")
        if self.group_size < 2:
            raise DidiError(f"group size must be at least 2 (advantages are standardised within groups), got {self.group_size}")
        for name in ("student_lr", "disc_lr"):
            check_range(f"--{name.replace('_', '-')}", getattr(self, name), 0, low_open=True)
        if not 0 < self.tau_min < self.tau_max < 1:
            raise DidiError(f"need 0 < tau_min < tau_max < 1, got {self.tau_min}, {self.tau_max}")
        choices = {"omega": ("elbo", "constant"), "pi": tuple(PI_SHAPES),
                   "regularization": ("forward", "reverse", "jeffrey", "none"), "positive": ("data", "teacher")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise DidiError(f"--{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
