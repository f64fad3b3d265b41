"""The DiDi-Instruct training loop: one discriminator step, then one student step, per iteration.

Per iteration (research/didi-instruct.md §2.2): B target rows are repeated G times; the
student rolls out 1 → τ → t0 (or 1 → t0 without score decomposition) recording the
log-prob of what it revealed; target and student samples are corrupted at the same τ
(coupled time, or an independent t); the discriminator takes a BCE step on masked
positions; its clipped log-odds, averaged over masked positions, are the rewards,
standardised within groups of G; the student minimises −ω(τ)·A·log P plus a KL to the
teacher at the states it visited, minus an entropy bonus; the EMA follows.

Checkpoints (every ``ckpt_every`` steps, atomic) are complete student directories — the EMA
student as ``model.safetensors``, the discriminator's trainable part beside it — plus a
``training_state.pt`` (student, EMA, discriminator, both optimisers, RNG streams) that
``--resume`` continues exactly.
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from ..checkpoint import LATEST_FILE, STATE_FILE, check_parent_dir, load_training_state, save_checkpoint
from ..data import trim_padding
from ..distributed import Ranks, RowNoise
from ..errors import DidiError
from ..pretrain import EMA
from ..process import corrupt, prior
from ..run_dir import append_metrics, checkpoint_dir, prepare_resume, publish_checkpoint
from .config import PI_SHAPES, DistillConfig
from .networks import DISC_CONFIG, DISC_FILE
from .objective import (
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


@dataclass
class DistillResult:
    out_dir: Path
    step: int
    wall_clock_s: float
    last: dict


def lr_scale(step: int, cfg: DistillConfig) -> float:
    """Linear warm-up, then linear decay to ~0 at the last step ([LATE] schedule)."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    return max(1e-8, 1 - (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))


class Distiller:
    """Holds the models, optimisers and RNG streams; ``step()`` runs one iteration."""

    def __init__(self, adapter, positives: torch.Tensor, cfg: DistillConfig, ranks: Ranks = Ranks()):
        """Trains on the adapter's device (``adapter.to(device)`` first); ``positives`` stay on the host."""
        if getattr(adapter, "model", None) is None:
            raise DidiError("distillation needs a teacher adapter that exposes its network (.model)")
        self.adapter, self.cfg, self.spec, self.schedule = adapter, cfg, adapter.spec, adapter.schedule
        self.positives, self.ranks, self.device = positives, ranks, adapter.device
        self.rows = ranks.rows(cfg.batch_size * cfg.group_size, "--batch-size × --group-size")
        torch.manual_seed(cfg.seed)
        self.student = adapter.student_copy()
        self.ema = EMA(self.student, cfg.ema)
        # the adapter builds the architecture-specific parts (DiT: dit_denoiser / Discriminator)
        self.disc = adapter.discriminator(cfg.disc_trainable_blocks, bf16=cfg.bf16).to(self.device)
        self.opt_s = torch.optim.AdamW(self.student.parameters(), lr=cfg.student_lr, weight_decay=0.0)
        self.opt_d = torch.optim.AdamW([p for p in self.disc.parameters() if p.requires_grad], lr=cfg.disc_lr, weight_decay=0.0)
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.student_fn = adapter.denoiser(self.student, cfg.bf16)
        self.teacher_fn = adapter.denoiser(adapter.model, cfg.bf16)
        self.step_count = 0

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
        # variable-length rows: the student fills the target row's frame (its length, BOS/EOS, padding)
        maskable = self.spec.maskable(x_pos)
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
            self.opt_s.step()
            self.ema.update(self.student)
            metrics.update({"loss": parts[0].item(), "pg": parts[1].item(), "kl": parts[2].item(), "entropy": parts[3].item(),
                            "reward": r.mean().item(), "reward_std": r.std().item(), "student_grad_norm": s_norm.item()})
        self.step_count += 1
        return {"step": self.step_count, **{k: round(v, 5) for k, v in metrics.items()}, "lr_scale": round(scale, 5)}

    # -- state ----------------------------------------------------------------------------
    def training_state(self) -> dict:
        return {"student": self.student.state_dict(), "ema": self.ema.shadow, "ema_updates": self.ema.updates,
                "disc": self.disc.trainable_state(), "opt_s": self.opt_s.state_dict(), "opt_d": self.opt_d.state_dict(),
                "rng": self.gen.get_state(), "step": self.step_count, "config": self.cfg.to_dict()}

    def load_training_state(self, state: dict, source: str) -> None:
        self.student.load_state_dict(state["student"])
        self.ema.load(state["ema"], state["ema_updates"])
        self.disc.load_trainable_state(state["disc"], source)
        self.opt_s.load_state_dict(state["opt_s"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.gen.set_state(state["rng"])
        self.step_count = state["step"]

    def ema_student(self) -> torch.nn.Module:
        m = copy.deepcopy(self.student)
        m.load_state_dict(self.ema.state_for(self.student))
        return m.eval()


def target_rows(domain, adapter, tokenizer, cfg: DistillConfig, corpus: str | None, length: int) -> tuple[torch.Tensor, dict]:
    """The discriminator's positive class: packed corpus blocks or a pool of teacher samples."""
    if cfg.positive == "data":
        data = domain.load_corpus(corpus)
        meta = {"corpus": data["name"], "validation_sha256": data["validation_sha256"],
                **({"corpus_split": data["split"]} if data.get("split") else {})}
        return domain.rows(data["train"], tokenizer, length), meta
    from ..sampling import SamplerConfig, initial_states, sample_batches

    x_init, _ = initial_states(domain, tokenizer, adapter.spec, cfg.teacher_pool, cfg.seed + 7)
    if x_init is not None:  # the pool's rows must be as wide as the teacher's, like data rows
        x_init = torch.nn.functional.pad(x_init, (0, length - x_init.shape[1]), value=adapter.spec.pad_id)
    pool = sample_batches(adapter, cfg.teacher_pool, SamplerConfig(nfe=cfg.teacher_pool_nfe, length=length),
                          seed=cfg.seed + 7, x_init=x_init)
    return pool.tokens, {"teacher_pool": cfg.teacher_pool, "teacher_pool_nfe": cfg.teacher_pool_nfe}


def distill(domain, out_dir: Path, cfg: DistillConfig, teacher: str | None = None, corpus: str | None = None,
            resume: bool = False, on_step: Callable[[int, int, dict], None] | None = None,
            on_prepare: Callable[[str], None] | None = None, ranks: Ranks = Ranks(),
            teacher_options: dict | None = None, device: torch.device = torch.device("cpu")) -> DistillResult:
    """Run (or ``resume``) a distillation into ``out_dir`` on ``device``; under torchrun every rank calls
    this, rank 0 writes. ``teacher_options`` go to the teacher's format loader (e.g. ``use_ema`` for
    Lightning files). The device is not part of the run: it may resume on another."""
    from ..loading import load_teacher

    cfg.validate()
    out_dir = Path(out_dir)
    check_parent_dir(out_dir)
    if (out_dir / LATEST_FILE).exists() and not resume:
        raise DidiError(f"{out_dir} already holds a distillation run; pass --resume to continue it or choose another --out")
    state = load_training_state(out_dir, "student") if resume else None
    if state is not None:
        if state["step"] >= cfg.steps:
            raise DidiError(f"{out_dir} already finished {state['step']} steps; pass a larger --steps to continue")
        saved = DistillConfig.from_dict(state["config"])
        saved.steps, saved.threads = cfg.steps, cfg.threads
        cfg = saved
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    adapter, tokenizer = load_teacher(teacher, domain, default="teacher", **(teacher_options or {}))
    adapter.to(device)
    length = adapter.spec.max_length
    if on_prepare:
        on_prepare("preparing the discriminator's target samples")
    positives, data_meta = target_rows(domain, adapter, tokenizer, cfg, corpus, length)
    if len(positives[0]) != length:  # positives may be a lazy datasets column: index, don't .shape
        raise DidiError(f"target rows have length {len(positives[0])}, the teacher {length}")
    d = Distiller(adapter, positives, cfg, ranks)
    wall_before = 0.0
    if state is not None:
        from ..checkpoint import load_checkpoint

        was = state.get("teacher") or load_checkpoint(out_dir).provenance.get("teacher", {})
        if was.get("sha256") != adapter.provenance.get("model_sha256"):
            raise DidiError(f"{out_dir} was distilled from teacher {was.get('id')} (vocab {was.get('vocab_size')}, mask id "
                            f"{was.get('mask_id')}), not {adapter.provenance.get('id')} (vocab {adapter.spec.vocab_size}, "
                            f"mask id {adapter.spec.mask_id}); resume with the same --teacher")
        d.load_training_state(state, str(out_dir))
        wall_before = state.get("wall_clock_s", 0.0)
        if ranks.is_main:
            prepare_resume(out_dir, d.step_count)
    if ranks.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    teacher_prov = adapter.provenance

    def checkpoint(last: dict) -> None:
        wall = round(wall_before + time.perf_counter() - t_start, 1)
        provenance = {
            "name": f"{domain.name}-student", "kind": "student", "weights": "ema", "step": d.step_count,
            "method": "DiDi-Instruct", "command": " ".join(["didi-seq", *sys.argv[1:]]), "wall_clock_s": wall,
            "teacher": {"id": teacher_prov.get("id"), "sha256": teacher_prov.get("model_sha256"), "path": teacher_prov.get("path"),
                        **{k: teacher_prov[k] for k in ("format", "revision", "weights", "file_sha256") if k in teacher_prov}},
            "distill_config": cfg.to_dict(), "last_metrics": last, "didi_seq_version": __version__,
            "torch_version": torch.__version__, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **data_meta,
        }
        config = {"domain": domain.name, "kind": "student", "architecture": adapter.architecture,
                  "model": d.student.config.to_dict(),
                  "spec": adapter.spec.to_dict(), "schedule": adapter.schedule.to_dict()}
        train_state = {**d.training_state(), "wall_clock_s": wall,
                       "teacher": {"id": teacher_prov.get("id"), "sha256": teacher_prov.get("model_sha256"),
                                   "vocab_size": adapter.spec.vocab_size, "mask_id": adapter.spec.mask_id}}

        def extra(tmp: Path) -> None:
            from safetensors.torch import save_file

            save_file(d.disc.trainable_state(), str(tmp / DISC_FILE))
            (tmp / DISC_CONFIG).write_text(json.dumps({
                "trainable_blocks": cfg.disc_trainable_blocks, "teacher_sha256": teacher_prov.get("model_sha256"),
                "teacher_id": teacher_prov.get("id")}, indent=2) + "\n")
            torch.save(train_state, tmp / STATE_FILE)

        target = checkpoint_dir(out_dir, d.step_count)
        target.parent.mkdir(exist_ok=True)
        save_checkpoint(target, d.ema.state_for(d.student), config, provenance, tokenizer.to_json(), extra=extra)
        publish_checkpoint(out_dir, target, keep=2)

    last: dict = {}
    while d.step_count < cfg.steps:
        t0 = time.perf_counter()
        try:
            last = d.step()
        except FloatingPointError as e:
            kept = (out_dir / LATEST_FILE).read_text().strip() if (out_dir / LATEST_FILE).exists() else None
            where = f"the last good checkpoint {out_dir / 'checkpoints' / kept} is kept" if kept else "no checkpoint was written yet"
            raise DidiError(f"stopped at step {d.step_count + 1}: {e}; {where}; lower the learning rates and --resume") from None
        last["s_per_step"] = round(time.perf_counter() - t0, 3)
        if ranks.is_main:
            append_metrics(out_dir, last)
            if d.step_count % cfg.ckpt_every == 0 or d.step_count == cfg.steps:
                checkpoint(last)
        if on_step:
            on_step(d.step_count, cfg.steps, last)
    return DistillResult(out_dir, d.step_count, wall_before + time.perf_counter() - t_start, last)
