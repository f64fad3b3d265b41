"""Hyperparameters of the two real-data distillers, SDTT and representation-space MMD.

Each default names its source: [SDTT] the paper, arXiv 2410.21035 (its repository
jdeschena/sdtt differs where noted); [MMD] arXiv 2610.06648 and its code,
yandex-research/dlm-mmd branch mdlm-mmd (``algo.py``, ``mmd/objective.py``); [CPU] chosen
for the small embedded teachers on two CPU cores, with the reason; [MEASURED] measured on
the embedded text teacher (4 blocks, width 256, vocabulary 4096). The papers train 130M+
models for tens of thousands of steps at batch 128–512; the CPU runs are hundreds of steps
at batch 8, so step counts, EMA and learning rates are scaled and say so.

Flags: ``--batch-size``, ``--lr`` and ``--ema`` are shared by both methods; the rest carry
the method's name (``--sdtt-…``, ``--mmd-…``). Torch-free, so registering the methods is cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DidiError
from ..options import option
from .method import MethodConfig
from .prompt import PromptOption


@dataclass
class RealDataConfig(PromptOption, MethodConfig):
    """What both distillers share: a batch of noised real rows per step, checkpoints, seed, threads, precision,
    and the prompt length (``prompt.py``)."""

    batch_size: int = option(8, "Real rows per iteration.")  # [CPU]; [SDTT] 128, [MMD] 512
    ckpt_every: int = 25
    seed: int = 0
    threads: int | None = None
    bf16: bool = option(False, "bf16 autocast (the paper trains in bf16 on GPUs; slow on CPUs without bf16 units).")
    # ↑ [MEASURED] off by default: on a CPU without native bf16 (torch capability AVX2) autocast is emulated and
    # 20.8x slower than fp32 for forward+backward, 7.2x for a forward (benchmarks/results/bf16_cpu.md)

    def validate(self) -> None:
        """The checks both share, on the fields each declares with its own default (steps, lr, ema, …)."""
        super().validate()  # --prompt-length
        if self.steps <= 0:
            raise DidiError(f"--steps must be a positive integer, got {self.steps}")
        if self.batch_size <= 0 or self.ckpt_every <= 0:
            raise DidiError(f"--batch-size and ckpt_every must be positive, got {self.batch_size}, {self.ckpt_every}")
        if not self.lr > 0:
            raise DidiError(f"--lr must be positive, got {self.lr}")
        if not 0 <= self.ema < 1:
            raise DidiError(f"--ema must lie in [0, 1), got {self.ema}")
        if self.warmup_steps < 0 or self.grad_clip < 0:
            raise DidiError("warmup_steps and grad_clip must be ≥ 0")


@dataclass
class SDTTConfig(RealDataConfig):
    steps: int = 350  # [CPU] 7 rounds × 50; paper 7 rounds × 10k
    lr: float = option(6e-5, "Peak learning rate (Adam, no weight decay).")  # [SDTT] 6e-5 (repository default 3e-4)
    ema: float = option(0.99, "EMA decay of the published student (and of the next round's teacher).")
    # ↑ [CPU] rounds of 50 steps: 0.99 averages ~100 steps; paper 0.9999 over 10k-step rounds, not reset between rounds
    teacher_steps: int = option(2, "Teacher ancestral steps per target (the student learns one step as long).",
                                flag="--sdtt-teacher-steps")  # [SDTT] 2 (4 and 8 were worse)
    divergence: str = option("reverse", "reverse = KL(student ‖ target) (paper's best) | forward.",
                             flag="--sdtt-divergence")  # [SDTT] reverse KL best (MSE: lower Gen PPL, worse LAMBADA)
    start_nfe: int = option(1024, "Round 0's teacher steps (Δ = 1/start-nfe).", flag="--sdtt-start-nfe")  # [SDTT]
    rounds: int = option(7, "Rounds; each halves the student's steps (1024 → 8 in 7).", flag="--sdtt-rounds")  # [SDTT]
    steps_per_round: int = option(0, "Iterations per round (0: --steps split evenly over the rounds).",
                                  flag="--sdtt-steps-per-round")  # [SDTT] 10k; 5k and 2.5k hurt MAUVE
    warmup_steps: int = 10  # [CPU] of 50-step rounds; paper 500 linear of 10k, then constant
    grad_clip: float = 1.0  # [SDTT]
    t_min: float = 1e-3  # ε of t ~ U[ε, 1] and of Algorithm 1's max(t − iΔ, ε) (MDLM's ε)

    def validate(self) -> None:
        super().validate()
        if self.divergence not in ("reverse", "forward"):
            raise DidiError(f"--sdtt-divergence must be reverse or forward, got {self.divergence!r}")
        for name in ("teacher_steps", "start_nfe", "rounds"):
            if getattr(self, name) < 1:
                raise DidiError(f"--sdtt-{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.teacher_steps < 2:
            raise DidiError(f"--sdtt-teacher-steps must be at least 2 (one teacher step is the student's own), got {self.teacher_steps}")
        if self.start_nfe % self.teacher_steps ** self.rounds:
            raise DidiError(f"--sdtt-start-nfe {self.start_nfe} must divide by {self.teacher_steps} {self.rounds} times "
                            f"(a multiple of {self.teacher_steps ** self.rounds})")
        if self.steps_per_round < 0:
            raise DidiError(f"--sdtt-steps-per-round must be ≥ 0, got {self.steps_per_round}")

    def round_length(self) -> int:
        """Iterations per round: --sdtt-steps-per-round, else --steps split evenly (at least one)."""
        return self.steps_per_round or max(1, self.steps // self.rounds)

    def shortfall(self, steps_done: int, last: dict | None = None) -> str | None:
        """SDTT's student halves its steps once per round: a run that stops before the last round (``--steps``
        below rounds × round length, a ``--max-minutes`` stop) leaves e.g. a 512-step student, not an 8-step one.
        ``last``'s ``student_nfe`` (the round actually reached) wins over the count from ``steps_done``."""
        final = self.start_nfe // self.teacher_steps ** self.rounds
        reached = min(self.rounds, -(-steps_done // self.round_length()))  # rounds entered (ceil)
        nfe = round((last or {}).get("student_nfe") or self.start_nfe // self.teacher_steps ** max(reached, 1))
        if nfe <= final:
            return None
        if last and "round" in last:
            reached = round(last["round"]) + 1
        return (f"SDTT ran {reached} of its {self.rounds} rounds in {steps_done} iterations: the student is trained for "
                f"{nfe} sampling steps, not {final}; give --steps {self.round_length() * self.rounds} or more "
                f"(or fewer --sdtt-rounds) for the full schedule")


@dataclass
class MMDConfig(RealDataConfig):
    steps: int = 400  # [CPU]; [MMD] ~4k (notes: 3.25k–7k)
    # [MMD] AdamW 1e-4, no weight decay, at batch 512. [MEASURED] a batch-8 port at 1e-4 collapsed the embedded
    # text teacher's sample entropy in 400 steps (4.83 → 3.90 nats, runs of newlines); 2e-5 kept 4.75.
    lr: float = option(2e-5, "Learning rate (AdamW, no weight decay).")
    ema: float = option(0.99, "EMA decay of the published student.")  # [CPU] a few hundred steps; [MMD] 0.9999
    groups: int = option(4, "G: groups of fills per row (leave-one-out baseline over groups).", flag="--mmd-groups")  # [MMD]
    draws: int = option(2, "B: fills per group (the repulsion pairs them).", flag="--mmd-draws")  # [MMD]
    # Zero-based block whose output is the feature. [MMD] block 3 of 12 (a third of the depth). A third of the
    # embedded teachers' 4 blocks lies between blocks 0 and 1; block 1 (after 2 of 4) is contextual and is not
    # the last block [CPU, chosen]. A teacher with fewer blocks needs --mmd-feature-block 0.
    feature_block: int = option(1, "Zero-based trunk block whose output is the feature map.", flag="--mmd-feature-block")
    # RBF k = exp(−α‖a − b‖²). [MMD] 2e-5 for 768-wide features ("fragile"); here unset = the median heuristic
    # α = 1 / median ‖φ_i − φ_j‖² over 8 fixed training rows, recorded in the provenance (mmd_alpha).
    # [MEASURED] embedded text teacher, block 1: median ≈ 2.1k → α ≈ 4.8e-4.
    alpha: float | None = option(None, "RBF kernel α (default: 1 / median squared feature distance).", flag="--mmd-alpha")
    # KL(student ‖ initial model) at z_t's masked positions added to the loss; [MMD] has none. [MEASURED] on the
    # embedded text teacher at batch 8 (20-step smoke run): |advantage| ≈ 1e-3 and the policy gradient's norm ≈ 1e-3;
    # with 0.1 the KL term's gradient was 5–10x the policy gradient's after one step (KL 2e-4 nats), pinning the
    # student to the teacher. The KL gradient grows like coef·√KL, so 1e-3 lets the student drift to ≈ 0.01–0.02
    # nats/token before the guard matches the policy gradient: well short of the probe's collapse (sample entropy −0.9 nats).
    kl_coef: float = option(1e-3, "Weight of KL(student ‖ teacher) at the masked positions (0: off).", flag="--mmd-kl-coef")
    # [MMD] sequence: the group reward credits every token of the group. [MEASURED] with it the reward did not
    # move at batch 8 (665 steps, CPU) nor at batch 256 (268 steps, H200): |advantage| ≈ 0.002 against a reward
    # of 0.40, and the gradient pointed against Adam's momentum (cos ≈ −0.06). token: mmd.py's module docstring.
    credit: str = option("sequence", "Reward credit: sequence (the paper's group reward for every token) | token "
                         "(each token's own kernel terms, per-position baseline).", flag="--mmd-credit")
    warmup_steps: int = 0  # [MMD] not recorded in the notes: constant
    grad_clip: float = 0.0  # [MMD] no clipping (0 = off)
    t_min: float = 1e-3  # [MMD] t ~ antithetic U[1e-3, 1]

    def validate(self) -> None:
        super().validate()
        if self.groups < 2:
            raise DidiError(f"--mmd-groups must be at least 2 (the baseline leaves one group out), got {self.groups}")
        if self.draws < 2:
            raise DidiError(f"--mmd-draws must be at least 2 (the repulsion pairs different fills), got {self.draws}")
        if self.feature_block < 0:
            raise DidiError(f"--mmd-feature-block is a zero-based block index, got {self.feature_block}")
        if self.alpha is not None and not self.alpha > 0:
            raise DidiError(f"--mmd-alpha must be positive, got {self.alpha}")
        if self.kl_coef < 0:
            raise DidiError(f"--mmd-kl-coef must be ≥ 0, got {self.kl_coef}")
        if self.credit not in ("sequence", "token"):
            raise DidiError(f"--mmd-credit must be sequence or token, got {self.credit!r}")
