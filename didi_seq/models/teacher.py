"""The TeacherAdapter interface and the native DiT teacher.

The distiller and the samplers only ever talk to a ``TeacherAdapter``: whatever the
checkpoint format (native, MDLM, DPLM …), the adapter exposes the same spec, fp32
logits and SUBS log-probs, and for distillation a denoiser and a discriminator. Formats
plug in through the ``register_teacher_formats`` hook and return an adapter.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field

import torch

from ..devices import bf16_autocast, module_device
from ..errors import CheckpointError, DidiError
from ..io.checkpoint import Checkpoint, check_state_matches, load_state_strict
from ..io.provenance import SourceInfo
from .dit import DiT, DiTConfig, require_int
from .process import LogLinearSchedule, forbid_tokens, schedule_from_dict, subs_log_probs

# Longest sequence any teacher may declare: far above every published one (DPLM: 1024, MDLM: 1024),
# and small enough that a crafted max_length cannot make the samplers allocate without bound.
MAX_LENGTH = 1 << 20


@dataclass
class TeacherSpec:
    vocab_size: int
    mask_id: int
    max_length: int
    never_emit: list[int] = field(default_factory=list)  # ids SUBS gives zero mass (mask aside)
    time_conditioned: bool = False
    time: str = "continuous"
    # Variable-length domains: ids that are never masked (e.g. <cls>, <eos>) and the padding id
    # that fills rows after their end. Both empty for fixed-length packed domains (text).
    never_mask: list[int] = field(default_factory=list)
    pad_id: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        """Types and ranges of every field (specs come from untrusted checkpoints); ValueError naming the field."""
        require_int("vocab_size", self.vocab_size, 2)
        require_int("mask_id", self.mask_id, 0, self.vocab_size - 1)
        require_int("max_length", self.max_length, 1, MAX_LENGTH)
        for name in ("never_emit", "never_mask"):
            ids = getattr(self, name)
            if not isinstance(ids, list):
                raise ValueError(f"{name} must be a list of token ids, got {ids!r}")
            for i in ids:
                require_int(f"{name} entry", i, 0, self.vocab_size - 1)
        if set(self.never_emit) | {self.mask_id} >= set(range(self.vocab_size)):
            raise ValueError("never_emit forbids every token: no sample could be drawn")
        if not isinstance(self.time_conditioned, bool):
            raise ValueError(f"time_conditioned must be true or false, got {self.time_conditioned!r}")
        if self.time not in ("continuous", "discrete"):
            raise ValueError(f"time must be 'continuous' or 'discrete', got {self.time!r}")
        if self.pad_id is not None:
            require_int("pad_id", self.pad_id, 0, self.vocab_size - 1)

    def frozen_ids(self) -> list[int]:
        """Ids the process never corrupts: ``never_mask`` plus the padding id."""
        return sorted(set(self.never_mask) | ({self.pad_id} if self.pad_id is not None else set()))

    def maskable(self, x: torch.Tensor) -> torch.Tensor | None:
        """bool [B, L]: positions the forward process may mask; None when every position may be."""
        frozen = self.frozen_ids()
        if not frozen:
            return None
        return ~torch.isin(x, torch.tensor(frozen, dtype=x.dtype, device=x.device))


class TeacherAdapter(ABC):
    """What any masked teacher must offer the samplers and the distiller."""

    spec: TeacherSpec
    schedule: LogLinearSchedule
    provenance: SourceInfo  # set by the format loader (``SourceInfo.build(...)``)

    @abstractmethod
    def logits(self, x_t: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """fp32 logits [B, L, V]; x_t are ids [B, L] or soft tokens [B, L, V]."""

    @abstractmethod
    def student_copy(self) -> torch.nn.Module:
        """A trainable deep copy of the (already loaded) network."""

    def own_tokenizer(self):
        """A tokenizer the format builds from the checkpoint itself, or None (the domain loads one). For
        vocabularies no domain knows: LLaDA's and Dream's have more network rows than tokens."""
        return None

    def bundled_discriminator(self, bf16: bool = True) -> torch.nn.Module | None:
        """A discriminator shipped inside the checkpoint itself (e.g. DiDi-Instruct's HF
        release), or None; didi-seq's own students keep theirs beside the weights."""
        return None

    @property
    def device(self) -> torch.device:
        """Where the adapter's network runs; the samplers move their state there."""
        model = getattr(self, "model", None)
        return module_device(model) if model is not None else torch.device("cpu")

    def to(self, device: torch.device | str) -> TeacherAdapter:
        """Move the network to ``device`` (adapters holding more than ``.model`` extend this)."""
        if getattr(self, "model", None) is not None:
            self.model.to(device)
        return self

    def log_probs(self, x_t: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        """SUBS-parameterised log p(x0 | x_t), fp32 [B, L, V]."""
        never = torch.tensor(self.spec.never_emit, dtype=torch.long, device=x_t.device)
        return subs_log_probs(self.logits(x_t, t), x_t, self.spec.mask_id, never)

    def masked_log_probs(self, x_t: torch.Tensor, t: torch.Tensor | None, positions: torch.Tensor) -> torch.Tensor:
        """log p(x0 | x_t) [N, V] at the masked ``positions`` (bool [B, L]) only: all a sampler
        reads, since SUBS carries every other position over. Adapters that can evaluate
        their output head at chosen positions override this (it dominates the cost at V=50k)."""
        return self.log_probs(x_t, t)[positions]
    # -- what DiDi-Instruct needs beyond sampling (a format that cannot be distilled keeps these) --
    architecture: str = "unknown"  # written into student checkpoints, so the right format loads them back

    def checkpoint_layout(self, config: dict, weights: dict) -> tuple[dict, dict]:
        """The config.json and weights (by name) a checkpoint of this network is written with (a distilled
        student, ``save_pretrained``): didi-seq's as they are, unless the format has its own layout."""
        return config, weights

    def denoiser(self, model: torch.nn.Module, bf16: bool = True):
        """A ``didi_seq.distill.objective.Denoiser`` over ``model`` (the teacher's network or a student copy)."""
        raise CheckpointError(f"distillation is not supported for {self.architecture} teachers")

    def discriminator(self, trainable_blocks: int, bf16: bool = True) -> torch.nn.Module:
        """The teacher's trunk with its last ``trainable_blocks`` blocks trainable and a per-token logit head;
        it offers ``trainable_state()`` / ``load_trainable_state(state, source)``."""
        raise CheckpointError(f"distillation is not supported for {self.architecture} teachers")

    def trunk_features(self, block: int, bf16: bool = True):
        """ids [N, L] → token features [N, L, H] after zero-based trunk block ``block`` of the (frozen)
        teacher network, clean input, σ = 0: the feature map of representation-space MMD."""
        raise CheckpointError(f"MMD distillation is not supported for {self.architecture} teachers")


def read_native_config(config: dict, path) -> tuple[DiTConfig, TeacherSpec, LogLinearSchedule]:
    """Model config, spec and schedule of a native checkpoint, every value checked before use."""
    try:
        if not isinstance(config.get("model"), dict) or not isinstance(config.get("spec"), dict):
            raise ValueError("'model' and 'spec' must be objects")
        cfg = DiTConfig.from_dict(config["model"])
        cfg.validate()
        spec = TeacherSpec(**config["spec"])
        spec.validate()
        schedule = schedule_from_dict(config.get("schedule", {}))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}/config.json is incomplete or invalid ({e})") from None
    if cfg.vocab_size != spec.vocab_size:
        raise CheckpointError(f"{path}: model vocab {cfg.vocab_size} != spec vocab {spec.vocab_size}")
    if spec.max_length > cfg.length:
        raise CheckpointError(f"{path}: spec max_length {spec.max_length} exceeds the model's length {cfg.length}")
    return cfg, spec, schedule


def check_size(cfg: DiTConfig, state: dict, path) -> None:
    """The weights must hold exactly the parameters the config implies, checked by arithmetic before
    the network is built: a config claiming a billion layers fails here, not after allocating them."""
    want, have = cfg.num_parameters(), sum(math.prod(v.shape) for v in state.values())
    if want != have:
        if cfg.layers <= len(state):  # listing the expected names costs no more than the state: name the keys
            check_state_matches(cfg.parameter_shapes(), state, str(path))
        raise CheckpointError(f"{path}: config.json describes a network of {want:,} parameters but the weights "
                              f"hold {have:,}; the config does not belong to these weights")


class NativeTeacher(TeacherAdapter):
    """A didi-seq DiT checkpoint. bf16 autocast for the trunk on CPU, fp32 logits out."""

    def __init__(self, model: DiT, spec: TeacherSpec, schedule: LogLinearSchedule,
                 provenance: SourceInfo | dict | None = None, bf16: bool = True):
        self.model = model.eval()
        self.spec = spec
        self.schedule = schedule
        self.provenance = SourceInfo.of(provenance)
        self.bf16 = bf16
        # set by formats whose files carry a discriminator: (bf16) -> Discriminator
        self.discriminator_factory = None

    def bundled_discriminator(self, bf16: bool = True):
        return None if self.discriminator_factory is None else self.discriminator_factory(bf16)

    def _autocast(self):
        return bf16_autocast(self.device.type, self.bf16)

    def _sigma(self, t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else self.schedule.sigma(t)

    @torch.no_grad()
    def logits(self, x_t, t=None):
        with self._autocast():
            return self.model(x_t, self._sigma(t)).float()

    @torch.no_grad()
    def masked_log_probs(self, x_t, t, positions):
        """Trunk and head under bf16 autocast (as MDLM runs them), the head only at
        ``positions``; logits upcast to fp32 before the log-softmax."""
        with self._autocast():
            h, c = self.model.hidden_states(x_t, self._sigma(t))
            logits = self.model.head(h, c, positions)
        never = torch.tensor(self.spec.never_emit, dtype=torch.long, device=logits.device)
        return torch.log_softmax(forbid_tokens(logits, self.spec.mask_id, never), dim=-1)

    def student_copy(self) -> torch.nn.Module:
        student = copy.deepcopy(self.model)
        student.train()
        for p in student.parameters():
            p.requires_grad_(True)
        return student

    architecture = "dit"

    def denoiser(self, model: torch.nn.Module, bf16: bool = True):
        from .networks import dit_denoiser

        return dit_denoiser(model, self.spec.mask_id, list(self.spec.never_emit), self.schedule, bf16)

    def discriminator(self, trainable_blocks: int, bf16: bool = True) -> torch.nn.Module:
        from .networks import Discriminator

        return Discriminator(self.model, trainable_blocks, self.schedule, bf16=bf16)

    def trunk_features(self, block: int, bf16: bool = True):
        from .networks import dit_block_features

        n = len(self.model.blocks)
        if not 0 <= block < n:
            raise DidiError(f"MMD feature block {block} (zero-based) needs a teacher trunk of at least {block + 1} blocks; "
                            f"{self.provenance.id or 'this teacher'} has {n} (pass --mmd-feature-block 0..{n - 1})")
        return dit_block_features(self.model, block, bf16)

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, bf16: bool = True) -> NativeTeacher:
        cfg, spec, schedule = read_native_config(ckpt.config, ckpt.path)
        check_size(cfg, ckpt.state, ckpt.path)
        model = DiT(cfg)
        load_state_strict(model, ckpt.state, str(ckpt.path))
        tok = {"tokenizer_file": str(ckpt.tokenizer_file)} if ckpt.tokenizer_file is not None else {}
        return cls(model, spec, schedule, SourceInfo.of_checkpoint(ckpt, **tok), bf16=bf16)

