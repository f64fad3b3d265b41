"""The trainable networks of DiDi-Instruct: the student as a denoiser, and the discriminator.

The discriminator is the teacher's trunk (embedding, time embedder, blocks) with the
vocabulary head replaced by a spectral-normalised MLP that emits one logit per token;
only the last ``trainable_blocks`` blocks and the head learn (haoyangzheng-ai/didi-instruct,
``algo.py``: ``discriminator_unfreeze_blocks: 4`` and a spectral-norm Linear-SiLU-Linear
head). Because the frozen part *is* the teacher, only the trainable part is saved, next
to the hash of the teacher it must be rebuilt on.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ..devices import bf16_autocast
from .dit import DiT
from .process import LogLinearSchedule, forbid_tokens


def dit_denoiser(model: DiT, mask_id: int, never_emit: list[int], schedule: LogLinearSchedule, bf16: bool = True):
    """A ``Denoiser`` over a DiT: log p(x0 | x) in fp32 at the requested positions.

    Rows that are entirely masked at the same time are identical inputs (every student
    rollout starts there), so they are computed once and broadcast: the first step costs
    one sequence, not a batch.
    """
    forbid = torch.tensor(never_emit, dtype=torch.long)

    def run(x: torch.Tensor, positions: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sigma = schedule.sigma(t.float())
        if x.shape[0] > 1 and bool(positions.all()) and bool((t == t[0]).all()):
            one = run(x[:1], positions[:1], t[:1])
            return one.repeat(x.shape[0], 1)
        with bf16_autocast(x.device.type, bf16):
            h, c = model.hidden_states(x, sigma)
            logits = model.head(h, c, positions)
        return torch.log_softmax(forbid_tokens(logits, mask_id, forbid.to(logits.device)), dim=-1)

    return run


def dit_block_features(model: DiT, block: int, bf16: bool = True):
    """ids [N, L] → token features [N, L, H] (fp32) after zero-based trunk block ``block`` of a
    frozen ``model``, on clean input with σ = 0 (representation-space MMD's feature map; the
    blocks above ``block`` and the vocabulary head are never run)."""

    @torch.no_grad()
    def run(x: torch.Tensor) -> torch.Tensor:
        with bf16_autocast(x.device.type, bf16):
            h = model.trunk(x, model.cond(None, x.shape[0], x.device), model.blocks[: block + 1])  # σ = 0
        return h.float()

    return run



DISC_FILE, DISC_CONFIG = "discriminator.safetensors", "discriminator.json"  # beside a student


class TrainablePart:
    """Save and load only what a discriminator trains (its ``_trainable_prefixes()``): the
    frozen rest is the teacher's trunk, rebuilt from the teacher, so it is never stored.
    A subclass sets ``trainable_blocks``, the count it was built with (saved beside the weights)."""

    trainable_blocks: int

    def save(self, directory: Path, teacher) -> None:
        """The trainable part into a student's checkpoint directory (RGAS loads it from there), with the
        teacher (its ``SourceInfo``) whose trunk it must be rebuilt on."""
        from safetensors.torch import save_file

        # a sharded discriminator (training/sharding.py) is gathered whole; every rank calls save then
        state = {k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in self.trainable_state().items()}
        save_file(state, str(Path(directory) / DISC_FILE))
        (Path(directory) / DISC_CONFIG).write_text(json.dumps({
            "trainable_blocks": self.trainable_blocks, "teacher_sha256": teacher.model_sha256,
            "teacher_id": teacher.id}, indent=2) + "\n")

    def load(self, directory: Path):
        """The trainable part saved in ``directory`` (``save``) loaded into this network, in eval mode."""
        from safetensors.torch import load_file

        path = Path(directory) / DISC_FILE
        self.load_trainable_state(load_file(str(path)), str(path))
        return self.eval()

    def trainable_state(self) -> dict[str, torch.Tensor]:
        keep = self._trainable_prefixes()
        return {k: v.detach().clone().contiguous() for k, v in self.state_dict().items() if k.startswith(keep)}

    def load_trainable_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        from ..errors import CheckpointError

        expected = set(self.trainable_state())
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        if missing or unexpected:
            raise CheckpointError(f"{source}: discriminator keys do not match (missing {missing[:3]}, unexpected {unexpected[:3]})")
        own = self.state_dict()
        bad = [k for k in state if tuple(state[k].shape) != tuple(own[k].shape)]
        if bad:
            raise CheckpointError(f"{source}: discriminator tensors of the wrong shape: {bad[:3]}")
        self.load_state_dict({**own, **state})


def logit_head(hidden: int) -> nn.Module:
    """The discriminator's per-token head: spectral-norm Linear-SiLU-Linear to one logit."""
    return nn.Sequential(spectral_norm(nn.Linear(hidden, hidden)), nn.SiLU(), spectral_norm(nn.Linear(hidden, 1)))


class Discriminator(TrainablePart, nn.Module):
    """(tokens [B, L] or probabilities [B, L, V], t [B]) → one logit per token [B, L] (fp32)."""

    def __init__(self, teacher_model: DiT, trainable_blocks: int, schedule: LogLinearSchedule, bf16: bool = True):
        super().__init__()
        n = len(teacher_model.blocks)
        if not 1 <= trainable_blocks <= n:
            raise ValueError(f"discriminator trainable blocks must be in 1..{n}, got {trainable_blocks}")
        self.trunk = copy.deepcopy(teacher_model)
        del self.trunk.output_layer  # the vocabulary head is replaced, not reused
        self.frozen_blocks, self.trainable_blocks = n - trainable_blocks, trainable_blocks
        self.head = logit_head(teacher_model.config.hidden)
        self.schedule, self.bf16 = schedule, bf16
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        for block in self.trunk.blocks[self.frozen_blocks:]:
            for p in block.parameters():
                p.requires_grad_(True)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        trunk = self.trunk
        sigma = self.schedule.sigma(t.float())
        with bf16_autocast(x.device.type, self.bf16):
            # the frozen prefix needs no graph unless a gradient w.r.t. the input is asked for (RGAS)
            with torch.set_grad_enabled(torch.is_grad_enabled() and x.is_floating_point() and x.requires_grad):
                # always the real σ(t), even over a time-agnostic trunk (as the reference code):
                # the log density ratio depends on t, and the mask count alone is a noisy clock
                c = torch.nn.functional.silu(trunk.sigma_map(sigma))
                h = trunk.trunk(x, c, trunk.blocks[: self.frozen_blocks])
            h = trunk.trunk(x, c, trunk.blocks[self.frozen_blocks:], h=h)
        return self.head(h.float()).squeeze(-1)

    def _trainable_prefixes(self) -> tuple[str, ...]:
        return (*(f"trunk.blocks.{i}." for i in range(self.frozen_blocks, len(self.trunk.blocks))), "head.")


def load_discriminator(student_dir, domain, teacher: str | None = None, bf16: bool = True):
    """The discriminator saved next to a student, rebuilt on the teacher whose trunk it shares.

    The teacher is found by weight hash: ``teacher`` if given, else the domain's embedded
    teacher, else the path recorded at distillation time.
    """
    from ..errors import CheckpointError, DidiError
    from ..io.checkpoint import load_checkpoint
    from ..io.untrusted import read_json
    from .loading import load_teacher

    student_dir = Path(student_dir)
    if not (student_dir / DISC_FILE).is_file() or not (student_dir / DISC_CONFIG).is_file():
        raise DidiError(f"{student_dir} holds no discriminator ({DISC_FILE}); RGAS needs a DiDi-Instruct student "
                        "checkpoint (use --sampler ancestral for other checkpoints)")
    meta = read_json(student_dir / DISC_CONFIG, "discriminator config", error=CheckpointError)
    if not isinstance(meta, dict) or isinstance(meta.get("trainable_blocks"), bool) or not isinstance(meta.get("trainable_blocks"), int):
        raise CheckpointError(f"{student_dir / DISC_CONFIG} is not a discriminator config (no integer 'trainable_blocks')")
    want = meta.get("teacher_sha256")
    tried = []
    recorded = load_checkpoint(student_dir).provenance.get("teacher", {}).get("path")
    for src in ([teacher] if teacher else ["teacher", recorded]):
        if not src:
            continue
        try:
            adapter, _ = load_teacher(src, domain)
        except DidiError:
            if teacher:  # the user named this teacher: say why it cannot be used
                raise
            tried.append(str(src))
            continue
        if adapter.provenance.model_sha256 == want:
            return adapter.discriminator(int(meta["trainable_blocks"]), bf16=bf16).load(student_dir)
        tried.append(f"{src} (sha256 {str(adapter.provenance.model_sha256)[:12]})")
    raise CheckpointError(f"{student_dir}: its discriminator was trained on teacher {meta.get('teacher_id')} (sha256 "
                          f"{str(want)[:12]}), which was not found (tried: {', '.join(tried) or 'nothing'}); pass --teacher")
