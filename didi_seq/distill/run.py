"""A distillation run: any registered method, on the one training run (``didi_seq/training/run.py``).

The run loads the teacher, checks on ``--resume`` that the method, the teacher and the
settings are the run's own, hands the method a ``MethodContext``, and writes each
checkpoint: the method's published student as ``model.safetensors`` (a complete student
directory every sampler loads), the method's artifacts beside it, the provenance record
and a ``training_state.pt`` from which ``--resume`` continues exactly.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import DidiError
from ..io.checkpoint import checkpoint_config, load_checkpoint
from ..io.provenance import Provenance, SourceInfo, TeacherRef
from ..limits import check_rows
from ..training.distributed import Ranks
from ..training.run import TrainingRun
from ..training.sharding import shard
from .method import DistillMethod, MethodContext
from .prompt import check_prompt_length

DEFAULT_METHOD = "didi-instruct"


@dataclass
class DistillResult:
    out_dir: Path
    step: int
    wall_clock_s: float
    last: dict


class _Timed:
    """A method's trainer whose metrics lines end with the step's wall time."""

    def __init__(self, trainer):
        self.trainer = trainer

    @property
    def step_count(self) -> int:
        return self.trainer.step_count

    def step(self) -> dict:
        t0 = time.perf_counter()
        metrics = self.trainer.step()
        metrics["s_per_step"] = round(time.perf_counter() - t0, 3)
        return metrics


def _check_same_method(run: TrainingRun, method: DistillMethod) -> None:
    was = run.state.get("method", DEFAULT_METHOD)  # runs from before the method registry are DiDi-Instruct's
    if was != method.name:
        raise DidiError(f"{run.out_dir} is a --method {was} run, not {method.name}; resume it with --method {was}")


def _check_same_teacher(run: TrainingRun, adapter) -> None:
    was = run.state.get("teacher")  # {id, sha256, vocab_size, mask_id}; older states: the provenance's TeacherRef
    if was is None:
        ref = load_checkpoint(run.out_dir).record.teacher
        was = {"id": ref.id, "sha256": ref.sha256} if ref is not None else {}
    source = SourceInfo.of(adapter.provenance)
    if was.get("sha256") != source.model_sha256:
        raise DidiError(f"{run.out_dir} was distilled from teacher {was.get('id')} (vocab {was.get('vocab_size')}, mask id "
                        f"{was.get('mask_id')}), not {source.id} (vocab {adapter.spec.vocab_size}, "
                        f"mask id {adapter.spec.mask_id}); resume with the same --teacher")


def check_max_minutes(max_minutes: float | None) -> None:
    """A wall-clock budget is a positive, finite number of minutes (or None: no budget)."""
    if max_minutes is not None and not (math.isfinite(max_minutes) and max_minutes > 0):
        raise DidiError(f"--max-minutes must be a positive number of minutes, got {max_minutes}")


def student_steps(cfg) -> int:
    """Iterations in which the student takes an optimiser step: all of them, less a method's
    discriminator-only warm-up (DiDi-Instruct's ``disc_warmup_steps``; methods without one have none)."""
    return max(0, cfg.steps - getattr(cfg, "disc_warmup_steps", 0))


def shortfall(cfg, steps_done: int, last: dict | None = None) -> str | None:
    """The method's word on a student trained ``steps_done`` iterations (``MethodConfig.shortfall``); a plugin
    config that is a plain dataclass, not a ``MethodConfig``, has none to say."""
    check = getattr(cfg, "shortfall", None)
    return check(steps_done, last) if check else None


def check_student_steps(cfg, allow: bool = False) -> str | None:
    """Refuse a run in which the student never steps; with ``allow``, return the warning instead.

    Why: with ``steps ≤ disc_warmup_steps`` every iteration trains only the discriminator, and the
    "student" written at the end is the teacher bit for bit (issue 17): a silent no-op that costs
    minutes and writes a file that claims to be a student. Needs no model: runs before anything loads."""
    if student_steps(cfg) > 0:
        return None
    problem = (f"--steps {cfg.steps} ≤ --disc-warmup-steps {cfg.disc_warmup_steps}: the student would never take a "
               f"step and the written student would equal the teacher")
    if allow:
        return problem
    raise DidiError(f"{problem}; pass --steps above {cfg.disc_warmup_steps} or a smaller --disc-warmup-steps "
                    "(or --allow-no-student-steps to train only the discriminator)")


def check_batch_memory(cfg, spec, length: int) -> None:
    """Before anything is allocated: one step's student logits (fp32 logits, softmax and gradient: 3 × L × V
    floats per sequence) for every sequence a step trains on (rows × DiDi-Instruct's group) fit in RAM."""
    rows, group = getattr(cfg, "batch_size", None), getattr(cfg, "group_size", 1)
    if isinstance(rows, int) and rows > 0 and isinstance(group, int):
        option = "--batch-size" if group <= 1 else f"--batch-size {rows} × --group-size"
        check_rows(option, rows * max(1, group), 3 * 4 * length * spec.vocab_size, "one step's student logits")


def row_length(length: int | None, run: TrainingRun, spec) -> int:
    """``--length``: tokens per training row, at most the teacher's maximum length (its default). LLaDA's
    window is 4096 tokens; shorter rows make a step cheaper. A resumed run keeps its own, which
    ``--length`` may only repeat."""
    saved = (run.state or {}).get("row_length")
    if length is not None and saved is not None and length != saved:
        raise DidiError(f"{run.out_dir} trains on rows of {saved} tokens; resume it without --length or with --length {saved}")
    length = length or saved or spec.max_length
    if isinstance(length, bool) or not isinstance(length, int) or not 3 <= length <= spec.max_length:
        raise DidiError(f"--length {length}: training rows hold 3 to {spec.max_length} tokens (the teacher's maximum length)")
    return length


def distill(domain, out_dir: Path, method: DistillMethod, cfg, teacher: str | None = None, corpus: str | None = None,
            resume: bool = False, on_step: Callable[[int, int, dict], None] | None = None,
            on_prepare: Callable[[str], None] | None = None, ranks: Ranks = Ranks(),
            teacher_options: dict | None = None, device: torch.device = torch.device("cpu"),
            given: dict | None = None, max_minutes: float | None = None, length: int | None = None) -> DistillResult:
    """Run (or ``resume``) ``method`` with config ``cfg`` into ``out_dir`` on ``device``; under torchrun
    every rank calls this, rank 0 writes. ``teacher_options`` go to the teacher's format loader (e.g.
    ``use_ema`` for Lightning files); ``given``: the settings chosen explicitly, {name: (as written, value)},
    each checked against the saved run on resume. The device is not part of the run: it may resume on another.
    ``max_minutes``: stop (with a checkpoint) once the run's training wall-clock, over all its sessions, reaches it.
    ``length``: tokens per training row (``row_length``; default the teacher's maximum length)."""
    check_max_minutes(max_minutes)
    from ..models.loading import load_teacher

    cfg.validate()
    run = TrainingRun(out_dir, resume, ranks, "distillation run", kind="student")
    if run.state is not None:
        _check_same_method(run, method)
    cfg = run.settle_config(cfg, method.config.from_dict, given)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    adapter, tokenizer = load_teacher(teacher, domain, default="teacher", **(teacher_options or {}))
    if run.state is not None:
        _check_same_teacher(run, adapter)
    length = row_length(length, run, adapter.spec)
    check_batch_memory(cfg, adapter.spec, length)
    check_prompt_length(getattr(cfg, "prompt_length", 0), length)  # before any data loads
    adapter.to(device)
    ctx = MethodContext(domain=domain, teacher=adapter, tokenizer=tokenizer, corpus=corpus, ranks=ranks,
                        on_prepare=on_prepare or (lambda message: None), length=length)
    trainer = method.build(ctx, cfg)
    if getattr(adapter, "model", None) is not None:
        shard(adapter.model, ranks)  # --shard fsdp: the frozen teacher too, once the method has copied it
    run.check_same_data(trainer.data_meta)
    if run.state is not None:
        trainer.load_state_dict(run.resume_state(device), str(run.out_dir))
    run.start(trainer.step_count)
    teacher_ref = TeacherRef.of(adapter)

    def checkpoint(last: dict) -> None:
        wall = round(run.elapsed(), 1)
        provenance = Provenance(name=f"{domain.name}-student", kind="student", step=trainer.step_count, wall_clock_s=wall,
                                method=method.name, teacher=teacher_ref, config=cfg.to_dict(), last_metrics=last,
                                data={**trainer.data_meta, "row_length": length})
        config, weights = adapter.checkpoint_layout(
            checkpoint_config(domain.name, "student", trainer.student.config.to_dict(), adapter.spec, adapter.schedule,
                              architecture=adapter.architecture), trainer.student_state())
        state = {**trainer.state_dict(), "step": trainer.step_count, "config": cfg.to_dict(), "wall_clock_s": wall,
                 "teacher": {"id": teacher_ref.id, "sha256": teacher_ref.sha256,
                             "vocab_size": adapter.spec.vocab_size, "mask_id": adapter.spec.mask_id},
                 "method": method.name, "row_length": length}
        run.save(trainer.step_count, weights, config, provenance, tokenizer.to_json(), state,
                 artifacts=trainer.save_artifacts)

    last = run.loop(_Timed(trainer), cfg.steps, cfg.ckpt_every, checkpoint, on_step,
                    max_seconds=None if max_minutes is None else 60.0 * max_minutes)
    return DistillResult(run.out_dir, trainer.step_count, run.elapsed(), last)
