"""Teacher pretraining: minimise the MDLM NELBO on any domain's corpus.

AdamW (fused) with linear warm-up and cosine decay, an EMA of the weights (the EMA
is what checkpoints publish, as the MDLM papers evaluate), bf16 autocast for the trunk
on CPU (1.4–2.4x faster here, docs/machine-notes.md §2), logits computed only at masked
positions (the vocabulary projection dominates the cost). Checkpoints are written
atomically every ``ckpt_every`` steps and hold everything needed to resume exactly:
raw weights, EMA, optimiser, step and both RNG streams.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from ..devices import bf16_autocast, module_device
from ..domain.data import draw_batch, length_order, trim_padding
from ..errors import DidiError
from ..io.checkpoint import checkpoint_config
from ..io.provenance import Provenance
from ..limits import check_rows, check_seed
from ..models.dit import DiT, DiTConfig
from ..models.process import LogLinearSchedule, corrupt, masked_token_nll, nelbo_terms, stratified_times
from ..models.teacher import TeacherSpec
from ..numbers import check_float_fields, check_range
from .distributed import Ranks, RowNoise
from .run import TrainingRun
from .sharding import shard
from .state import StateTrainer, TrainState

# Model and optimisation presets. "small" is the embedded text teacher (~6 M params,
# sized for ~1.5 h on one CPU core) and takes the domain's ``default_length`` (text: 256);
# "tiny" is for tests and CI, a fixed 32-token shape in every domain.
PRESETS: dict[str, dict] = {
    "tiny": {"model": {"length": 32, "hidden": 64, "layers": 2, "heads": 2, "cond_dim": 32},
             "batch_size": 8, "steps": 20, "warmup": 5, "eval_every": 10, "ckpt_every": 10, "eval_batches": 2},
    "small": {"model": {"hidden": 256, "layers": 4, "heads": 4, "cond_dim": 128},
              "batch_size": 32, "steps": 2000, "warmup": 100, "eval_every": 250, "ckpt_every": 100, "eval_batches": 8},
}


@dataclass
class PretrainConfig:
    model: dict = field(default_factory=dict)  # DiTConfig fields except vocab_size
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    ema: float = 0.999
    eval_every: int = 250
    eval_batches: int = 8
    ckpt_every: int = 100
    keep_checkpoints: int = 2
    seed: int = 0
    bf16: bool = True
    threads: int | None = None
    tokenizer: str | None = None  # None: the domain's embedded one; else a name/file the domain loads (text: "gpt2")

    @classmethod
    def from_preset(cls, name: str, domain_presets: dict | None = None, **overrides) -> PretrainConfig:
        """A preset of the core (tiny, small) or of the domain (``Domain.presets``), with overrides."""
        presets = {**PRESETS, **(domain_presets or {})}
        if name not in presets:
            raise DidiError(f"unknown preset {name!r}; known presets: {', '.join(presets)}")
        base = copy.deepcopy(presets[name])
        model_over = overrides.pop("model", {}) or {}
        base["model"].update({k: v for k, v in model_over.items() if v is not None})
        base.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in base.items() if k in known})

    @classmethod
    def from_dict(cls, d: dict) -> PretrainConfig:
        """A saved configuration (JSON and torch.save turn the betas tuple into a list)."""
        return cls(**{**d, "betas": tuple(d["betas"])})

    def validate(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "ckpt_every", "eval_batches"):
            if getattr(self, name) <= 0:
                raise DidiError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
        check_seed(self.seed)
        check_float_fields(self)
        check_range("--lr", self.lr, 0, low_open=True)
        check_range("min_lr_ratio", self.min_lr_ratio, 0, 1)
        check_range("ema", self.ema, 0, 1)
        check_range("grad_clip", self.grad_clip, 0, low_open=True)


def lr_at(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def nelbo_loss(model: DiT, x0: torch.Tensor, t: torch.Tensor, schedule: LogLinearSchedule,
               mask_id: int, gen: torch.Generator | None, bf16: bool, spec: TeacherSpec | None = None,
               u: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """Sum over rows of the NELBO and the number of tokens it covers.

    With a ``spec`` that freezes ids (padding, BOS/EOS of variable-length rows) those
    positions are never masked and not counted: the bound is per real token. ``u``: the
    masking uniforms (a rank's rows of a global draw), else drawn from ``gen``.
    """
    maskable = spec.maskable(x0) if spec is not None else None
    x_t = corrupt(x0, t, schedule, mask_id, maskable=maskable, generator=gen, u=u)
    masked = x_t == mask_id
    with bf16_autocast(x0.device.type, bf16):
        h, c = model.hidden_states(x_t, schedule.sigma(t))
        logits = model.head(h, c, positions=masked)
    nll = masked_token_nll(logits, x0[masked], mask_id)
    return nelbo_terms(nll, masked, t, schedule).sum(), x0.numel() if maskable is None else int(maskable.sum())


@torch.no_grad()
def evaluate_nelbo(model: DiT, blocks: torch.Tensor, cfg: PretrainConfig, schedule: LogLinearSchedule,
                   mask_id: int, spec: TeacherSpec | None = None) -> float:
    """Validation NELBO in nats/token on a fixed subset with fixed noise (comparable across steps)."""
    model.eval()
    gen = torch.Generator().manual_seed(1234)
    total, count = 0.0, 0
    rows, device = blocks[: cfg.eval_batches * cfg.batch_size], module_device(model)
    for i in range(0, len(rows), cfg.batch_size):
        x0 = trim_padding(rows[i:i + cfg.batch_size], spec.pad_id if spec is not None else None).to(device)
        t = stratified_times(len(x0), gen).to(device)
        s, n = nelbo_loss(model, x0, t, schedule, mask_id, gen, cfg.bf16, spec)
        total, count = total + s.item(), count + n
    model.train()
    return total / max(count, 1)


@dataclass
class PretrainResult:
    out_dir: Path
    step: int
    val_nelbo: float
    wall_clock_s: float


class Pretrainer(StateTrainer):
    """The teacher, its optimiser, EMA and the two RNG streams (data order, noise); ``step()`` is one
    optimiser step over this rank's rows of the global batch (``TrainingRun`` drives it)."""

    def __init__(self, model_cfg: DiTConfig, spec: TeacherSpec, train_blocks: torch.Tensor, val_blocks: torch.Tensor,
                 cfg: PretrainConfig, ranks: Ranks, device: torch.device, clock: Callable[[], float]):
        self.model_cfg, self.spec, self.cfg, self.ranks, self.device, self.clock = model_cfg, spec, cfg, ranks, device, clock
        self.train_blocks, self.val_blocks = train_blocks, val_blocks
        self.schedule = LogLinearSchedule()
        self.rows = ranks.rows(cfg.batch_size, "--batch-size")  # global batch; this rank's rows of it
        torch.manual_seed(cfg.seed)
        self.model = shard(DiT(model_cfg).to(device), ranks)  # --shard fsdp: cut over the ranks (sharding.py)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay,
                                     fused=True)
        self.data_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self.noise_gen = torch.Generator().manual_seed(cfg.seed + 2)
        self.state = TrainState(self.model, cfg.ema, {"optimizer": self.opt},
                                {"data_rng": self.data_gen, "noise_rng": self.noise_gen}, model_key="model")
        self.order = length_order(train_blocks, spec.pad_id)  # padded rows: batches of similar lengths
        self.model.train()

    def step(self) -> dict:
        cfg, spec, mine, device, model = self.cfg, self.spec, self.rows, self.device, self.model
        for g in self.opt.param_groups:
            g["lr"] = lr_at(self.step_count, cfg)
        # the global batch's random numbers on every rank, this rank's rows of them (distributed.py);
        # padding columns are trimmed on the global batch so every world size sees the same shapes
        idx = draw_batch(len(self.train_blocks), cfg.batch_size, self.data_gen, self.order)
        t = stratified_times(cfg.batch_size, self.noise_gen)[mine].to(device)
        x0 = trim_padding(self.train_blocks[idx], spec.pad_id).to(device)
        u = RowNoise(self.noise_gen, cfg.batch_size, mine, device).uniform(x0.shape[1], dtype=torch.float32)
        maskable = spec.maskable(x0)
        tokens = x0.numel() if maskable is None else int(maskable.sum())  # global count: per-token mean over all ranks
        total, _ = nelbo_loss(model, x0[mine], t, self.schedule, spec.mask_id, None, cfg.bf16, spec, u=u)
        loss = total / tokens  # this rank's share of the global per-token mean
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.ranks.sum_gradients(model.parameters())
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        self.opt.step()
        self.state.ema.update(model)
        self.step_count += 1
        metrics = {"step": self.step_count, "loss": round(self.ranks.sum(loss).item(), 4),
                   "grad_norm": round(grad_norm.item(), 3), "lr": self.opt.param_groups[0]["lr"],
                   "elapsed_s": round(self.clock(), 1)}
        evaluates = self.ranks.is_main or self.ranks.sharded  # rank 0's, or every rank's when the EMA model is sharded
        if evaluates and (self.step_count % cfg.eval_every == 0 or self.step_count == cfg.steps):
            metrics["val_nelbo"] = round(self.validation_nelbo(), 4)
        return metrics

    def validation_nelbo(self) -> float:
        """Validation NELBO of the EMA weights (what checkpoints publish)."""
        self.val = evaluate_nelbo(self.state.ema_model(), self.val_blocks, self.cfg, self.schedule, self.spec.mask_id,
                                  self.spec)
        return self.val


def pretrain(domain, out_dir: Path, cfg: PretrainConfig, corpus: str | None = None, resume: bool = False,
             on_step: Callable[[int, int, dict], None] | None = None, ranks: Ranks = Ranks(),
             device: torch.device = torch.device("cpu"), given: dict | None = None) -> PretrainResult:
    """Train (or ``resume``) a teacher into ``out_dir`` on ``device``; under torchrun every rank
    calls this, rank 0 writes. The device is not part of the run: it may resume on another.
    ``given``: the settings the user chose explicitly, {name: (as written, value)}; on resume
    each must equal the saved run's (``training.run.check_resume_settings``)."""
    cfg.validate()
    run = TrainingRun(out_dir, resume, ranks, "training run", kind="teacher")
    cfg = run.settle_config(cfg, PretrainConfig.from_dict, given,
                            view=lambda c: {**asdict(c), "length": c.model.get("length", domain.default_length)})
    ranks.rows(cfg.batch_size, "--batch-size")  # a batch that does not split over the ranks fails before any loading
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    tokenizer = domain.load_tokenizer(cfg.tokenizer)
    length = cfg.model.get("length", domain.default_length)
    # before the corpus loads: a step's logits (fp32), their softmax and gradient are 3 × L × V floats per row
    check_rows("--batch-size", cfg.batch_size, 3 * 4 * length * tokenizer.vocab_size, "one step's logits")
    data = domain.load_corpus(corpus)
    train_blocks = domain.rows(data["train"], tokenizer, length)
    val_blocks = train_blocks[-cfg.batch_size:]  # only used when the corpus holds nothing out
    if len(data["validation"]):
        val_blocks = domain.rows(data["validation"], tokenizer, length)

    pad_id = getattr(tokenizer, "pad_id", None)
    model_cfg = DiTConfig(vocab_size=tokenizer.vocab_size, **{**cfg.model, "length": length, "pad_id": pad_id})
    spec = TeacherSpec(vocab_size=tokenizer.vocab_size, mask_id=tokenizer.mask_id, max_length=model_cfg.length,
                       never_emit=list(tokenizer.never_emit), time_conditioned=model_cfg.time_conditioning,
                       never_mask=list(getattr(tokenizer, "never_mask", [])), pad_id=pad_id)
    data_meta = {"domain": domain.name, "corpus": data["name"], "validation_sha256": data["validation_sha256"],
                 **({"corpus_split": data["split"]} if data.get("split") else {}), "tokenizer": cfg.tokenizer or "embedded",
                 "train_blocks": len(train_blocks), "validation_blocks": len(val_blocks)}
    run.check_same_data(data_meta)
    trainer = Pretrainer(model_cfg, spec, train_blocks, val_blocks, cfg, ranks, device, run.elapsed)
    if run.state is not None:
        trainer.load_state_dict(run.resume_state(device))
    run.start(trainer.step_count)

    def checkpoint(last: dict) -> None:
        val, wall = last.get("val_nelbo"), round(run.elapsed(), 1)
        provenance = Provenance(name=f"{domain.name}-teacher", kind="teacher", step=trainer.step_count, wall_clock_s=wall,
                                config=asdict(cfg), data=data_meta, val_nelbo=val,
                                val_ppl_bound=math.exp(val) if val is not None else None)
        config = checkpoint_config(domain.name, "teacher", model_cfg.to_dict(), spec, trainer.schedule)
        state = {"config": asdict(cfg), **trainer.state_dict(), "wall_clock_s": wall}
        run.save(trainer.step_count, trainer.student_state(), config, provenance, tokenizer.to_json(), state,
                 keep=cfg.keep_checkpoints)

    run.loop(trainer, cfg.steps, cfg.ckpt_every, checkpoint, on_step)
    val = getattr(trainer, "val", None)
    return PretrainResult(run.out_dir, trainer.step_count, val if val is not None else float("nan"), run.elapsed())
