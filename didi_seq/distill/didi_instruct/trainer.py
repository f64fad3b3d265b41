"""The DiDi-Instruct training loop: one discriminator step, then one student step, per iteration.

Per iteration (haoyangzheng-ai/didi-instruct ``algo.py`` ``training_step``): B target rows are repeated G times; the
student rolls out 1 → τ → t0 (or 1 → t0 without score decomposition) recording the
log-prob of what it revealed; target and student samples are corrupted at the same τ
(coupled time, or an independent t); the discriminator takes a BCE step on masked
positions; its clipped log-odds, averaged over masked positions, are the rewards,
standardised within groups of G; the student minimises −ω(τ)·A·log P plus a KL to the
teacher at the states it visited, minus an entropy bonus; the EMA follows.

This is the ``didi-instruct`` method (``didi_seq/distill/builtin.py``); the run around it is
``didi_seq/distill/run.py``. Its checkpoints publish the EMA student as ``model.safetensors``
with the discriminator's trainable part beside it, and its resume state (student, EMA,
discriminator, both optimisers, the RNG stream) continues exactly.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ...domain.data import trim_padding
from ...errors import DidiError
from ...io.provenance import SourceInfo
from ...models.process import corrupt, prior
from ...training.distributed import Ranks, RowNoise
from ...training.sharding import shard
from ...training.signals import initial_weights, learning_signals
from ...training.state import StateTrainer, TrainState
from ..method import MethodContext, corpus_rows
from ..objective import (
    discriminator_loss,
    entropy,
    grouped_advantages,
    kl_regulariser,
    omega,
    rewards,
    rollout,
    sample_tau,
    student_times,
)
from ..prompt import answer_positions
from .config import PI_SHAPES, DistillConfig


def lr_scale(step: int, cfg: DistillConfig) -> float:
    """Linear warm-up, then linear decay to ~0 at the last step ([LATE] schedule)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    return max(1e-8, 1 - (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))


class Distiller(StateTrainer):
    """DiDi-Instruct's trainer (a ``MethodTrainer``): the student, its EMA, the discriminator, both
    optimisers and the RNG stream; ``step()`` runs one iteration."""

    def __init__(self, adapter, positives: torch.Tensor, cfg: DistillConfig, ranks: Ranks = Ranks()):
        """Trains on the adapter's device (``adapter.to(device)`` first); ``positives`` stay on the host."""
        if getattr(adapter, "model", None) is None:
            raise DidiError("distillation needs a teacher adapter that exposes its network (.model)")
        self.adapter, self.cfg, self.spec, self.schedule = adapter, cfg, adapter.spec, adapter.schedule
        self.positives, self.ranks, self.device = positives, ranks, adapter.device
        self.rows = ranks.rows(cfg.batch_size * cfg.group_size, "--batch-size × --group-size")
        torch.manual_seed(cfg.seed)
        self.student = shard(adapter.student_copy(), ranks)  # --shard fsdp: cut over the ranks
        self.start_weights = initial_weights(self.student)  # where the student starts: drift is measured from it
        # the adapter builds the architecture-specific parts (DiT: dit_denoiser / Discriminator)
        self.disc = shard(adapter.discriminator(cfg.disc_trainable_blocks, bf16=cfg.bf16).to(self.device), ranks)
        self.opt_s = torch.optim.AdamW(self.student.parameters(), lr=cfg.student_lr, weight_decay=0.0)
        self.opt_d = torch.optim.AdamW([p for p in self.disc.parameters() if p.requires_grad], lr=cfg.disc_lr, weight_decay=0.0)
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.state = TrainState(self.student, cfg.ema, {"opt_s": self.opt_s, "opt_d": self.opt_d}, {"rng": self.gen})
        self.student_fn = adapter.denoiser(self.student, cfg.bf16)
        self.teacher_fn = adapter.denoiser(adapter.model, cfg.bf16)
        self.data_meta: dict = {}

    # -- one iteration ------------------------------------------------------------------
    def step(self) -> dict:
        """One iteration over this rank's rows of the global batch (distributed.py: same numbers on any world size)."""
        cfg, gen, mask, ranks, mine, dev = self.cfg, self.gen, self.spec.mask_id, self.ranks, self.rows, self.device
        rows = cfg.batch_size * cfg.group_size
        noise = RowNoise(gen, rows, mine, dev)
        scale = lr_scale(self.step_count, cfg)
        for g in self.opt_s.param_groups:
            g["lr"] = cfg.student_lr * scale
        for g in self.opt_d.param_groups:
            g["lr"] = cfg.disc_lr * scale
        idx = torch.randint(len(self.positives), (cfg.batch_size,), generator=gen)
        # variable-length rows: columns that are padding in every row of the global batch are dropped
        # (on the global batch, so every world size sees the same shapes); this rank keeps its rows
        x_pos = trim_padding(self.positives[idx], self.spec.pad_id).repeat_interleave(cfg.group_size, 0)[mine].to(dev)
        tau = sample_tau(rows, *PI_SHAPES[cfg.pi], cfg.tau_min, cfg.tau_max, gen)[mine].to(dev)
        length, n = x_pos.shape[1], x_pos.shape[0]

        student_turn = self.step_count >= cfg.disc_warmup_steps
        self.student.train()
        # variable-length rows: the student fills the target row's frame (its length, BOS/EOS, padding); with
        # --prompt-length it starts from the row's prompt, which is never masked (prompt.answer_positions)
        maskable = answer_positions(self.spec, x_pos, cfg.prompt_length)
        start = prior((n, length), mask, dev) if maskable is None else torch.where(maskable, mask, x_pos)
        with torch.set_grad_enabled(student_turn):  # discriminator-only steps need the samples, not the graph
            ro = rollout(self.student_fn, start,
                         student_times(n, tau if cfg.score_decomposition else None, cfg.t0, dev), self.schedule, mask, noise)
        t_d = tau if cfg.coupled_time else sample_tau(rows, 1, 1, cfg.tau_min, cfg.tau_max, gen)[mine].to(dev)
        z_fake = corrupt(ro.x.detach(), t_d, self.schedule, mask, maskable=maskable, u=noise.uniform(length, dtype=torch.float32))
        z_pos = corrupt(x_pos, t_d, self.schedule, mask, maskable=maskable, u=noise.uniform(length, dtype=torch.float32))

        # discriminator: target (positive) vs student (negative), masked positions only
        self.disc.train()
        d_loss, d_acc = discriminator_loss(self.disc(z_pos, t_d), z_pos == mask, self.disc(z_fake, t_d), z_fake == mask,
                                           cfg.label_smoothing, mean=ranks.mean)
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        disc_params = [p for p in self.disc.parameters() if p.requires_grad]
        ranks.sum_gradients(disc_params)
        d_norm = torch.nn.utils.clip_grad_norm_(disc_params, cfg.disc_clip)
        metrics = {"disc_loss": ranks.sum(d_loss).item(), "disc_acc": ranks.sum(d_acc).item()}
        if not (math.isfinite(metrics["disc_loss"]) and math.isfinite(d_norm.item())):
            raise FloatingPointError(f"discriminator loss/gradient is not finite ({metrics['disc_loss']})")
        self.opt_d.step()

        if student_turn:
            with torch.no_grad():
                self.disc.eval()
                r = ranks.gather(rewards(self.disc(z_fake, t_d), z_fake == mask, cfg.reward_clip))  # groups may span ranks
            adv = grouped_advantages(r, cfg.group_size, cfg.advantage_clip)[mine]
            w = omega(t_d, self.schedule, cfg.omega, cfg.omega_min, cfg.omega_max).float()
            pg = -ranks.mean(w * adv * ro.log_prob)
            reg, kls = torch.zeros((), device=dev), []
            if cfg.regularization != "none":
                coefs = [cfg.kl_hi_coef] + [cfg.kl_lo_coef] * (len(ro.states) - 1)
                for coef, z, m, t, lp in zip(coefs, ro.states, ro.step_masks, ro.step_times, ro.step_log_probs, strict=True):
                    with torch.no_grad():
                        t_lp = self.teacher_fn(z, m, t)
                    kls.append(kl_regulariser(t_lp, lp, cfg.regularization, mean=ranks.mean))
                    reg = reg + coef * kls[-1]
                reg = cfg.kl_coef * reg
            ent = torch.stack([entropy(lp, mean=ranks.mean) for lp in ro.step_log_probs]).mean()
            loss = pg + reg - cfg.entropy_coef * ent
            # every term is this rank's share of a global mean: their sums over ranks are the logged values
            parts = ranks.sum(torch.stack([loss, pg, sum(kls, torch.zeros((), device=dev)), ent]))
            if not math.isfinite(parts[0].item()):
                raise FloatingPointError(f"student loss is not finite ({parts[0].item()})")
            self.opt_s.zero_grad(set_to_none=True)
            loss.backward()
            ranks.sum_gradients(self.student.parameters())
            s_norm = torch.nn.utils.clip_grad_norm_(self.student.parameters(), cfg.student_clip)
            if not math.isfinite(s_norm.item()):
                raise FloatingPointError("student gradient is not finite")
            metrics.update(learning_signals(self.student, self.opt_s, self.start_weights, ranks))
            self.opt_s.step()
            self.state.ema.update(self.student)
            metrics.update({"loss": parts[0].item(), "pg": parts[1].item(), "kl": parts[2].item(), "entropy": parts[3].item(),
                            "reward": r.mean().item(), "reward_std": r.std().item(), "student_grad_norm": s_norm.item()})
        self.step_count += 1
        return {"step": self.step_count, **{k: round(v, 5) for k, v in metrics.items()}, "lr_scale": round(scale, 5)}

    # -- state: the TrainState's, and the discriminator's trainable part --------------------
    def state_dict(self) -> dict:
        return {**self.state.state_dict(), "disc": self.disc.trainable_state()}

    def load_state_dict(self, state: dict, source: str) -> None:
        self.state.load_state_dict(state)
        self.disc.load_trainable_state(state["disc"], source)

    def save_artifacts(self, tmp: Path) -> None:
        """The discriminator's trainable part beside the student, with the teacher it must be rebuilt on."""
        self.disc.save(tmp, SourceInfo.of(self.adapter.provenance))


def target_rows(domain, adapter, tokenizer, cfg: DistillConfig, corpus: str | None, length: int) -> tuple[torch.Tensor, dict]:
    """The discriminator's positive class: packed corpus blocks or a pool of teacher samples."""
    if cfg.positive == "data":
        return corpus_rows(domain, tokenizer, corpus, length)
    from ...sampling.ancestral import SamplerConfig, initial_states, sample_batches

    x_init, _ = initial_states(domain, tokenizer, adapter.spec, cfg.teacher_pool, cfg.seed + 7)
    if x_init is not None:  # the pool's rows must be as wide as the teacher's, like data rows
        x_init = torch.nn.functional.pad(x_init, (0, length - x_init.shape[1]), value=adapter.spec.pad_id)
    pool = sample_batches(adapter, cfg.teacher_pool, SamplerConfig(nfe=cfg.teacher_pool_nfe, length=length),
                          seed=cfg.seed + 7, x_init=x_init)
    return pool.tokens, {"teacher_pool": cfg.teacher_pool, "teacher_pool_nfe": cfg.teacher_pool_nfe}


def build_distiller(ctx: MethodContext, cfg: DistillConfig) -> Distiller:
    """DiDi-Instruct's ``DistillMethod.build``: the discriminator's target rows, then the trainer."""
    length = ctx.row_length
    ctx.on_prepare("preparing the discriminator's target samples")
    positives, data_meta = target_rows(ctx.domain, ctx.teacher, ctx.tokenizer, cfg, ctx.corpus, length)
    if len(positives[0]) != length:  # positives may be a lazy datasets column: index, don't .shape
        raise DidiError(f"target rows have length {len(positives[0])}, the teacher {length}")
    d = Distiller(ctx.teacher, positives, cfg, ctx.ranks)
    d.data_meta = data_meta
    return d
