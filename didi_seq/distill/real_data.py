"""Trainers of the real-data distillers (SDTT, representation-space MMD): ``MethodTrainer``s for the run.

Both train on noised *real* rows with one student forward per row and no rollout, so they
share everything but the loss: ``RealDataTrainer`` draws the batch (padding columns of the
global batch trimmed, this rank's rows kept), takes the optimiser step with warm-up and
clipping, follows with the EMA, and saves/restores the exact resume state. ``SDTTTrainer``
and ``MMDTrainer`` add only their loss (``sdtt.sdtt_step``, ``mmd.mmd_step``) and what it
needs: SDTT its round teacher, MMD its frozen feature trunk and kernel width.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from pathlib import Path

import torch

from ..domain.data import trim_padding
from ..training.distributed import RowNoise
from ..training.sharding import clone_module, shard
from ..training.signals import initial_weights, learning_signals
from ..training.state import StateTrainer, TrainState
from .method import MethodContext
from .mmd import mmd_step, resolve_alpha
from .prompt import answer_positions
from .real_data_config import MMDConfig, SDTTConfig
from .sdtt import round_delta, round_of, sdtt_step


class RealDataTrainer(StateTrainer, ABC):
    """Student, EMA, AdamW and the RNG stream; ``step()`` = batch → ``loss()`` → update."""

    def __init__(self, ctx: MethodContext, cfg):
        adapter = ctx.teacher
        self.adapter, self.cfg, self.spec, self.schedule, self.ranks = adapter, cfg, adapter.spec, adapter.schedule, ctx.ranks
        self.device = adapter.device
        ctx.on_prepare("loading the training rows")
        self.data, self.data_meta = ctx.corpus_rows()
        self.rows = ctx.ranks.rows(cfg.batch_size, "--batch-size")
        torch.manual_seed(cfg.seed)
        self.student = shard(adapter.student_copy(), ctx.ranks)  # --shard fsdp: cut over the ranks
        # SDTT: Adam without weight decay; MMD: AdamW with weight decay 0 — the same update
        self.opt = torch.optim.AdamW(self.student.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.state = TrainState(self.student, cfg.ema, {"opt": self.opt}, {"rng": self.gen})
        self.student_fn = adapter.denoiser(self.student, cfg.bf16)
        self.start_weights = initial_weights(self.student)  # where the student starts: drift is measured from it

    def maskable(self, x: torch.Tensor) -> torch.Tensor | None:
        """The positions of rows ``x`` the forward process may mask (after the prompt: ``prompt.answer_positions``)."""
        return answer_positions(self.spec, x, self.cfg.prompt_length)

    def batch(self) -> torch.Tensor:
        """This rank's rows of a global batch of real rows (all-padding columns of the global batch dropped)."""
        idx = torch.randint(len(self.data), (self.cfg.batch_size,), generator=self.gen)
        return trim_padding(torch.as_tensor(self.data[idx]), self.spec.pad_id)[self.rows].to(self.device)

    @abstractmethod
    def loss(self, x0: torch.Tensor, noise: RowNoise) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The method's loss on real rows ``x0`` (and its logged metrics): what SDTT and MMD differ in."""

    def step(self) -> dict:
        cfg = self.cfg
        scale = min(1.0, (self.step_count + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        for g in self.opt.param_groups:
            g["lr"] = cfg.lr * scale
        x0 = self.batch()
        self.student.train()
        loss, metrics = self.loss(x0, RowNoise(self.gen, cfg.batch_size, self.rows, self.device))
        values = {k: self.ranks.sum(v.detach().float()).item() for k, v in metrics.items()}  # shares → global means
        if not math.isfinite(values["loss"]):
            raise FloatingPointError(f"loss is not finite ({values['loss']})")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.ranks.sum_gradients(self.student.parameters())
        params = [p for p in self.student.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else float("inf"))
        if not math.isfinite(norm.item()):
            raise FloatingPointError("student gradient is not finite")
        values.update(learning_signals(self.student, self.opt, self.start_weights, self.ranks))
        self.opt.step()
        self.state.ema.update(self.student)
        self.step_count += 1
        values["grad_norm"] = norm.item()
        return {"step": self.step_count, **{k: round(v, 5) for k, v in values.items()}, "lr_scale": round(scale, 5)}

    def save_artifacts(self, tmp: Path) -> None:  # noqa: B027 - deliberately nothing, not abstract
        """Nothing beside the student: neither method leaves a network behind."""


class SDTTTrainer(RealDataTrainer):
    """SDTT rounds: round 0 distils the loaded teacher; at each later round's first step the EMA
    student becomes the teacher (frozen) and Δ doubles."""

    def __init__(self, ctx: MethodContext, cfg: SDTTConfig):
        super().__init__(ctx, cfg)
        self.steps_per_round = cfg.round_length()
        self.round = 0
        self.round_teacher: torch.nn.Module | None = None  # None: the loaded teacher (round 0)
        self.data_meta = {**self.data_meta, "sdtt_steps_per_round": self.steps_per_round}

    def teacher_fn(self):
        model = self.adapter.model if self.round_teacher is None else self.round_teacher
        return self.adapter.denoiser(model, self.cfg.bf16)

    def loss(self, x0, noise):
        cfg = self.cfg
        r = round_of(self.step_count, self.steps_per_round, cfg.rounds)
        if r != self.round:  # a new round: the current EMA student is its teacher
            self.round, self.round_teacher = r, self.state.ema_model()
            for p in self.round_teacher.parameters():
                p.requires_grad_(False)
        delta = round_delta(self.round, cfg.start_nfe, cfg.teacher_steps)
        loss, metrics = sdtt_step(self.teacher_fn(), self.student_fn, x0, self.maskable(x0), self.schedule,
                                  self.spec.mask_id, cfg, delta, self.gen, noise, self.ranks.mean)
        one = torch.ones((), device=x0.device) / self.ranks.world_size  # shares of a constant: sums to it
        return loss, {**metrics, "round": one * self.round, "student_nfe": one * round(1 / (cfg.teacher_steps * delta))}

    def state_dict(self) -> dict:
        state = {**super().state_dict(), "sdtt_round": self.round, "sdtt_steps_per_round": self.steps_per_round}
        if self.round_teacher is not None:
            state["sdtt_round_teacher"] = self.round_teacher.state_dict()
        return state

    def load_state_dict(self, state: dict, source: str) -> None:
        super().load_state_dict(state, source)
        self.steps_per_round = state["sdtt_steps_per_round"]  # a longer --steps on resume keeps the rounds' length
        self.data_meta["sdtt_steps_per_round"] = self.steps_per_round
        self.round = state["sdtt_round"]
        if "sdtt_round_teacher" in state:
            self.round_teacher = clone_module(self.student).eval()
            self.round_teacher.load_state_dict(state["sdtt_round_teacher"])
            for p in self.round_teacher.parameters():
                p.requires_grad_(False)


class MMDTrainer(RealDataTrainer):
    """Representation-space MMD: the loaded teacher (never trained) is the frozen feature trunk and
    the KL guard's anchor; α is fixed once from 8 rows of a stream of its own (so a resume finds it again)."""

    def __init__(self, ctx: MethodContext, cfg: MMDConfig):
        self.features = ctx.teacher.trunk_features(cfg.feature_block, cfg.bf16)  # checks the block before any loading
        super().__init__(ctx, cfg)
        probe = torch.randint(len(self.data), (8,), generator=torch.Generator().manual_seed(cfg.seed + 2))
        x = trim_padding(torch.as_tensor(self.data[probe]), self.spec.pad_id).to(self.device)
        self.alpha = resolve_alpha(cfg.alpha, self.features, x, self.maskable(x))
        self.teacher_denoiser = ctx.teacher.denoiser(ctx.teacher.model, cfg.bf16) if cfg.kl_coef > 0 else None
        self.data_meta = {**self.data_meta, "mmd_alpha": self.alpha, "mmd_feature_block": cfg.feature_block, "mmd_credit": cfg.credit,
                          "mmd_alpha_from": "--mmd-alpha" if cfg.alpha is not None else "median heuristic, 8 training rows"}

    def loss(self, x0, noise):
        return mmd_step(self.student_fn, self.features, x0, self.maskable(x0), self.schedule, self.spec.mask_id,
                        self.cfg, self.alpha, self.gen, noise, self.ranks.mean, teacher=self.teacher_denoiser)
