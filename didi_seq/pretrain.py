"""Teacher pretraining: minimise the MDLM NELBO on any domain's corpus.

AdamW (fused) with linear warm-up and cosine decay, an EMA of the weights (the EMA
is what checkpoints publish, as the MDLM papers evaluate), bf16 autocast for the trunk
on CPU (1.4–2.4x faster here, see research/env.md §2), logits computed only at masked
positions (the vocabulary projection dominates the cost). Checkpoints are written
atomically every ``ckpt_every`` steps and hold everything needed to resume exactly:
raw weights, EMA, optimiser, step and both RNG streams.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from . import __version__
from .backbone import DiT, DiTConfig
from .checkpoint import LATEST_FILE, STATE_FILE, check_parent_dir, load_training_state, save_checkpoint
from .data import draw_batch, length_order, trim_padding
from .devices import bf16_autocast, module_device
from .distributed import Ranks, RowNoise
from .errors import DidiError
from .numbers import check_float_fields, check_range
from .process import LogLinearSchedule, corrupt, masked_token_nll, nelbo_terms, stratified_times
from .run_dir import append_metrics, checkpoint_dir, prepare_resume, publish_checkpoint
from .teacher import TeacherSpec

# Model and optimisation presets. "small" is the embedded text teacher (~6 M params,
# sized for ~1.5 h on one CPU core); "tiny" is for tests and CI.
PRESETS: dict[str, dict] = {
    "tiny": {"model": {"length": 32, "hidden": 64, "layers": 2, "heads": 2, "cond_dim": 32},
             "batch_size": 8, "steps": 20, "warmup": 5, "eval_every": 10, "ckpt_every": 10, "eval_batches": 2},
    "small": {"model": {"length": 256, "hidden": 256, "layers": 4, "heads": 4, "cond_dim": 128},
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

    def validate(self) -> None:
        for name in ("steps", "batch_size", "eval_every", "ckpt_every", "eval_batches"):
            if getattr(self, name) <= 0:
                raise DidiError(f"--{name.replace('_', '-')} must be a positive integer, got {getattr(self, name)}")
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


class EMA:
    """Exponential moving average of parameters, with MDLM's warm-up of the decay."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        # every name of a tied parameter (e.g. ESM's shared embedding/output matrix) gets its average,
        # so a saved state never mixes averaged and raw copies of one tensor
        self.shadow = {k: v.detach().clone().float() for k, v in model.named_parameters(remove_duplicate=False)}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, p in model.named_parameters(remove_duplicate=False):
            self.shadow[k].mul_(d).add_(p.detach().float(), alpha=1 - d)

    def load(self, shadow: dict[str, torch.Tensor], updates: int) -> None:
        """Restore a saved average (resume states load on the CPU) onto the device the average lives on."""
        device = next(iter(self.shadow.values())).device
        self.shadow, self.updates = {k: v.to(device) for k, v in shadow.items()}, updates

    def state_for(self, model: torch.nn.Module) -> dict[str, torch.Tensor]:
        """The model's full state dict with parameters replaced by their averages."""
        return {k: self.shadow.get(k, v) for k, v in model.state_dict().items()}


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


def pretrain(domain, out_dir: Path, cfg: PretrainConfig, corpus: str | None = None, resume: bool = False,
             on_step: Callable[[int, int, dict], None] | None = None, ranks: Ranks = Ranks(),
             device: torch.device = torch.device("cpu")) -> PretrainResult:
    """Train (or ``resume``) a teacher into ``out_dir`` on ``device``; under torchrun every rank
    calls this, rank 0 writes. The device is not part of the run: it may resume on another."""
    cfg.validate()
    out_dir = Path(out_dir)
    check_parent_dir(out_dir)
    if out_dir.exists() and (out_dir / LATEST_FILE).exists() and not resume:
        raise DidiError(f"{out_dir} already holds a training run; pass --resume to continue it or choose another --out")
    state = load_training_state(out_dir, "teacher") if resume else None
    if state is not None and state["step"] >= cfg.steps:
        raise DidiError(f"{out_dir} already finished {state['step']} steps; pass a larger --steps to continue")
    if state is not None:
        saved = PretrainConfig(**{**state["config"], "betas": tuple(state["config"]["betas"])})
        saved.steps, saved.threads = cfg.steps, cfg.threads  # may extend a run / change threads
        cfg = saved
    mine = ranks.rows(cfg.batch_size, "--batch-size")  # global batch; this rank's rows of it
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    tokenizer = domain.load_tokenizer(cfg.tokenizer)
    data = domain.load_corpus(corpus)
    length = cfg.model.get("length", domain.default_length)
    train_blocks = domain.rows(data["train"], tokenizer, length)
    val_blocks = train_blocks[-cfg.batch_size:]  # only used when the corpus holds nothing out
    if len(data["validation"]):
        val_blocks = domain.rows(data["validation"], tokenizer, length)

    pad_id = getattr(tokenizer, "pad_id", None)
    model_cfg = DiTConfig(vocab_size=tokenizer.vocab_size, **{**cfg.model, "length": length, "pad_id": pad_id})
    schedule = LogLinearSchedule()
    spec = TeacherSpec(vocab_size=tokenizer.vocab_size, mask_id=tokenizer.mask_id, max_length=model_cfg.length,
                       never_emit=list(tokenizer.never_emit), time_conditioned=model_cfg.time_conditioning,
                       never_mask=list(getattr(tokenizer, "never_mask", [])), pad_id=pad_id)
    torch.manual_seed(cfg.seed)
    model = DiT(model_cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=True)
    ema = EMA(model, cfg.ema)
    data_gen = torch.Generator().manual_seed(cfg.seed + 1)
    noise_gen = torch.Generator().manual_seed(cfg.seed + 2)
    step, wall_before = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        ema.load(state["ema"], state["ema_updates"])
        data_gen.set_state(state["data_rng"])
        noise_gen.set_state(state["noise_rng"])
        step, wall_before = state["step"], state["wall_clock_s"]
        if ranks.is_main:
            prepare_resume(out_dir, step)
    if ranks.is_main:
        out_dir.mkdir(exist_ok=True)
    meta = {"domain": domain.name, "corpus": data["name"], "validation_sha256": data["validation_sha256"],
            **({"corpus_split": data["split"]} if data.get("split") else {}), "tokenizer": cfg.tokenizer or "embedded",
            "train_blocks": len(train_blocks), "validation_blocks": len(val_blocks)}

    def checkpoint(val: float | None) -> None:
        provenance = {
            "name": f"{domain.name}-teacher", "kind": "teacher", "weights": "ema", "step": step,
            "command": " ".join(["didi-seq", *sys.argv[1:]]), "wall_clock_s": round(wall_before + time.perf_counter() - t_start, 1),
            "val_nelbo": val, "val_ppl_bound": math.exp(val) if val is not None else None,
            "didi_seq_version": __version__, "torch_version": torch.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "pretrain_config": asdict(cfg), **meta,
        }
        config = {"domain": domain.name, "kind": "teacher", "model": model_cfg.to_dict(),
                  "spec": spec.to_dict(), "schedule": schedule.to_dict()}
        training_state = {
            "config": asdict(cfg), "model": model.state_dict(), "optimizer": opt.state_dict(), "ema": ema.shadow,
            "ema_updates": ema.updates, "data_rng": data_gen.get_state(), "noise_rng": noise_gen.get_state(),
            "step": step, "wall_clock_s": provenance["wall_clock_s"],
        }
        target = checkpoint_dir(out_dir, step)
        target.parent.mkdir(exist_ok=True)
        save_checkpoint(target, ema.state_for(model), config, provenance,
                        tokenizer.to_json(), extra=lambda tmp: torch.save(training_state, tmp / STATE_FILE))
        publish_checkpoint(out_dir, target, cfg.keep_checkpoints)

    order = length_order(train_blocks, spec.pad_id)  # padded rows: batches of similar lengths
    t_start = time.perf_counter()
    val = None
    model.train()
    while step < cfg.steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        # the global batch's random numbers on every rank, this rank's rows of them (distributed.py);
        # padding columns are trimmed on the global batch so every world size sees the same shapes
        idx = draw_batch(len(train_blocks), cfg.batch_size, data_gen, order)
        t = stratified_times(cfg.batch_size, noise_gen)[mine].to(device)
        x0 = trim_padding(train_blocks[idx], spec.pad_id).to(device)
        u = RowNoise(noise_gen, cfg.batch_size, mine, device).uniform(x0.shape[1], dtype=torch.float32)
        maskable = spec.maskable(x0)
        tokens = x0.numel() if maskable is None else int(maskable.sum())  # global count: per-token mean over all ranks
        total, _ = nelbo_loss(model, x0[mine], t, schedule, spec.mask_id, None, cfg.bf16, spec, u=u)
        loss = total / tokens  # this rank's share of the global per-token mean
        opt.zero_grad(set_to_none=True)
        loss.backward()
        ranks.sum_gradients(model.parameters())
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        ema.update(model)
        step += 1
        metrics = {"step": step, "loss": round(ranks.sum(loss).item(), 4), "grad_norm": round(grad_norm.item(), 3),
                   "lr": opt.param_groups[0]["lr"], "elapsed_s": round(wall_before + time.perf_counter() - t_start, 1)}
        if not ranks.is_main:
            continue  # evaluation, logs and checkpoints are rank 0's
        if step % cfg.eval_every == 0 or step == cfg.steps:
            ema_model = DiT(model_cfg).to(device)
            ema_model.load_state_dict(ema.state_for(model))
            val = evaluate_nelbo(ema_model, val_blocks, cfg, schedule, spec.mask_id, spec)
            metrics["val_nelbo"] = round(val, 4)
        append_metrics(out_dir, metrics)
        if step % cfg.ckpt_every == 0 or step == cfg.steps:
            checkpoint(metrics.get("val_nelbo"))
        if on_step:
            on_step(step, cfg.steps, metrics)
    return PretrainResult(out_dir, step, val if val is not None else float("nan"), wall_before + time.perf_counter() - t_start)
