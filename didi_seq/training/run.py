"""One training run: what pretraining and every distillation method share.

A *trainer* owns its networks, optimisers, RNG streams and one step (pretrain's
``Pretrainer``, a distillation method's trainer); the run owns everything else: the run
directory (``run_dir.py``: its layout and crash-safety contract), ``--resume`` (refusing a
finished run or one whose settings differ, restoring the saved configuration, tidying the
directory), the wall clock, checkpoint cadence, the metrics log and the step loop.

On ``--resume`` a run keeps the configuration it was started with. Only the settings in
``RESUME_OVERRIDES`` may change (a longer run, another thread count); any other option
given with a value that differs from the saved one is an error naming it, never dropped.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..errors import DidiError
from ..io.checkpoint import (
    LATEST_FILE,
    PROVENANCE_FILE,
    STATE_FILE,
    check_parent_dir,
    latest_checkpoint,
    load_training_state,
    resolve_checkpoint_dir,
    save_checkpoint,
)
from ..io.provenance import Provenance
from .distributed import Ranks
from .run_dir import append_metrics, check_run_dir, checkpoint_dir, prepare_resume, publish_checkpoint
from .sharding import SHARDED_DIR

# settings a resumed run may change: neither alters what it computes
RESUME_OVERRIDES = ("steps", "threads")


class Trainer(Protocol):
    """What a training run drives."""

    step_count: int  # steps taken so far (restored by the resume state)

    def step(self) -> dict:
        """One optimisation step; returns its metrics line (JSON-able). Raising FloatingPointError
        stops the run with a clear message, keeping the last good checkpoint."""


def check_resume_settings(out_dir: Path, saved: dict, given: dict[str, tuple[str, Any]]) -> None:
    """Refuse a resume whose options differ from the saved run's.

    ``saved``: the saved configuration, by setting name; ``given``: the settings the user
    asked for explicitly, by name, each as (how it was written on the command line, value).
    """
    for name, (flag, value) in given.items():
        if name in RESUME_OVERRIDES or name not in saved:
            continue
        was = saved[name]
        if isinstance(was, (list, tuple)) and isinstance(value, (list, tuple)):
            was, value = list(was), list(value)
        if was != value:
            raise DidiError(f"{flag} differs from the run in {out_dir} ({name} was {was!r}, now {value!r}); a resumed run "
                            f"keeps its settings (only {', '.join('--' + o for o in RESUME_OVERRIDES)} may change): "
                            f"drop the option or start a new run with another --out")


class TrainingRun:
    """A run directory being trained into: open it, settle the configuration, then ``loop``."""

    def __init__(self, out_dir: Path, resume: bool, ranks: Ranks = Ranks(), what: str = "training run",
                 kind: str | None = None):
        """``kind``: the checkpoint kind this command writes ("teacher": pretrain, "student": distill); a
        resume of a run that another command wrote is refused."""
        self.out_dir, self.ranks = Path(out_dir), ranks
        check_run_dir(self.out_dir)
        check_parent_dir(self.out_dir)
        if (self.out_dir / LATEST_FILE).exists() and not resume:
            raise DidiError(f"{self.out_dir} already holds a {what}; pass --resume to continue it or choose another --out")
        self.state: dict | None = load_training_state(self.out_dir, kind) if resume else None
        self.wall_before, self._t_start = 0.0, time.perf_counter()

    def settle_config(self, cfg, from_dict: Callable[[dict], Any], given: dict[str, tuple[str, Any]] | None = None,
                      view: Callable[[Any], dict] | None = None):
        """The configuration to train with: ``cfg`` for a new run; on resume the saved one, with only
        ``RESUME_OVERRIDES`` taken from ``cfg`` (``view``: a config as a flat dict, for the comparison)."""
        if self.state is None:
            return cfg
        if self.state["step"] >= cfg.steps:
            raise DidiError(f"{self.out_dir} already finished {self.state['step']} steps; pass a larger --steps to continue")
        saved = from_dict(self.state["config"])
        check_resume_settings(self.out_dir, (view or vars)(saved), given or {})
        for name in RESUME_OVERRIDES:
            setattr(saved, name, getattr(cfg, name))
        return saved

    def check_same_data(self, data: dict) -> None:
        """On resume: the corpus (by its validation split's hash) and the domain must be the run's own."""
        if self.state is None:
            return
        try:
            saved = json.loads((resolve_checkpoint_dir(self.out_dir) / PROVENANCE_FILE).read_text())
        except (OSError, ValueError, DidiError):
            return  # nothing recorded to compare with
        given = {"domain": ("--domain", data.get("domain")),
                 "validation_sha256": (f"--corpus {data.get('corpus')}", data.get("validation_sha256"))}
        check_resume_settings(self.out_dir, saved, {k: v for k, v in given.items() if v[1] is not None})

    def start(self, step: int) -> None:
        """After the trainer restored the resume state at ``step``: tidy (or create) the directory, start the clock."""
        if self.state is not None:
            self.wall_before = self.state.get("wall_clock_s", 0.0)
        if self.ranks.is_main and self.out_dir.is_dir():
            prepare_resume(self.out_dir, step)  # a new run in a killed run's directory starts an empty log
        if self.ranks.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self._t_start = time.perf_counter()

    def elapsed(self) -> float:
        """Training wall-clock seconds, over all the sessions of this run."""
        return self.wall_before + time.perf_counter() - self._t_start

    def resume_state(self, device) -> dict:
        """The saved training state, its sharded tensors (``--shard fsdp`` runs) read in: as shards of
        this run's ranks when it shards, else whole, on ``device`` (sharding.py)."""
        from .sharding import read_shards

        assert self.state is not None
        return read_shards(self.state, latest_checkpoint(self.out_dir), device, self.ranks)

    def save(self, step: int, weights: dict, config: dict, provenance: Provenance, tokenizer_json: str | None,
             training_state: dict, keep: int = 2, artifacts: Callable[[Path], None] | None = None) -> None:
        """Write checkpoint ``step`` atomically (published weights, config, provenance, tokenizer, the
        trainer's ``artifacts(tmp)``, the resume state), point LATEST at it, retire all but ``keep``.

        Sharded (``--shard fsdp``): every rank calls this; each writes its shards of the resume state
        (sharding.py), the published weights are gathered to rank 0, and the other ranks run
        ``artifacts`` into a scratch directory, so that the collectives a trainer's artifacts make
        (gathering a sharded discriminator) meet rank 0's."""
        import torch

        target = checkpoint_dir(self.out_dir, step)
        shards = None
        if self.ranks.sharded:
            from .sharding import full_tensors, write_shards

            training_state, shards = write_shards(target, training_state, self.ranks)
            weights = full_tensors(weights, self.ranks)
            if not self.ranks.is_main:
                if artifacts is not None:
                    with tempfile.TemporaryDirectory() as scratch:
                        artifacts(Path(scratch))
                torch.distributed.barrier()  # rank 0 has published the checkpoint
                return

        def extra(tmp: Path) -> None:
            if artifacts is not None:
                artifacts(tmp)
            torch.save(training_state, tmp / STATE_FILE)
            if shards is not None:
                os.rename(shards, tmp / SHARDED_DIR)

        target.parent.mkdir(exist_ok=True)
        save_checkpoint(target, weights, config, provenance.to_dict(), tokenizer_json, extra=extra)
        publish_checkpoint(self.out_dir, target, keep)
        if self.ranks.sharded:
            torch.distributed.barrier()

    def out_of_time(self, max_seconds: float | None) -> bool:
        """Whether the run's training wall-clock (over all its sessions) has used up ``max_seconds``.
        Rank 0's clock decides for every rank, so all ranks stop after the same step."""
        if max_seconds is None:
            return False
        flag = [self.elapsed() >= max_seconds]
        if self.ranks.active:
            import torch.distributed

            torch.distributed.broadcast_object_list(flag, src=0)
        return bool(flag[0])

    def loop(self, trainer: Trainer, steps: int, ckpt_every: int, checkpoint: Callable[[dict], None],
             on_step: Callable[[int, int, dict], None] | None = None, max_seconds: float | None = None) -> dict:
        """Step until ``steps`` (or until the wall-clock budget ``max_seconds`` is spent: benchmarks compare
        methods at equal compute); rank 0 logs every step and checkpoints every ``ckpt_every`` and at the
        end. Returns the last metrics line."""
        last: dict = {}
        while trainer.step_count < steps and not self.out_of_time(max_seconds):
            try:
                last = trainer.step()
            except FloatingPointError as e:
                kept = (self.out_dir / LATEST_FILE).read_text().strip() if (self.out_dir / LATEST_FILE).exists() else None
                where = f"the last good checkpoint {self.out_dir / 'checkpoints' / kept} is kept" if kept else \
                    "no checkpoint was written yet"
                raise DidiError(f"stopped at step {trainer.step_count + 1}: {e}; {where}; lower the learning rates and --resume") \
                    from None
            if self.ranks.is_main:
                append_metrics(self.out_dir, last)
            if self.writes_checkpoints and (trainer.step_count % ckpt_every == 0 or trainer.step_count == steps):
                checkpoint(last)
            if on_step:
                on_step(trainer.step_count, steps, last)
        if self.writes_checkpoints and last and trainer.step_count % ckpt_every and trainer.step_count != steps:
            checkpoint(last)  # stopped by the budget between checkpoints
        return last

    @property
    def writes_checkpoints(self) -> bool:
        """Rank 0 writes every checkpoint; sharded, every rank writes its shards (``save``)."""
        return self.ranks.is_main or self.ranks.sharded
