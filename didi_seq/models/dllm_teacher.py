"""The TeacherAdapter of a masked diffusion LLM (LLaDA, Dream) and its loader.

Three decisions live here and nowhere else:

* **precision** (``precision``): bf16 weights on a GPU (8B parameters: 16 GB instead of 32), fp32
  on a CPU, where bf16 matmuls are slow or emulated and add rounding to the teacher's logits.
  Weights stay in their stored dtype until the adapter learns where it runs (``to``, or the first
  forward), so an 8B bf16 checkpoint is never held in fp32 on its way to a GPU.
* **the shift** (``source_rows``): Dream's position i is predicted by output row i − 1, position 0
  by its own row; LLaDA's rows line up with positions.
* **special tokens**: ``spec.never_emit`` is the tokenizer's list (``hub_tokenizer.never_emit_ids``).

Both models are time-agnostic (no time input; masks only): σ and t are ignored, as for MDLM.
For distillation the adapter hands out the networks of ``dllm_networks`` (denoiser, MMD features,
discriminator) and writes students in its own format (``checkpoint_layout``): the teacher's
config.json and tensor names, so a student loads back through the same ``llada``/``dream`` format.
"""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import torch

from ..errors import CheckpointError, DidiError
from ..io.checkpoint import FORMAT, Checkpoint, read_provenance
from ..io.provenance import SourceInfo
from .bidir import BidirTransformer, empty_network
from .hub_tokenizer import TOKENIZER_FILE, HubTokenizer
from .process import LogLinearSchedule
from .teacher import TeacherAdapter, TeacherSpec
from .weights import SINGLE, check_headers, hub_location, load_assigned, read_headers, weights_id


class DllmTeacher(TeacherAdapter):
    def __init__(self, model: BidirTransformer, spec: TeacherSpec, family, tokenizer: HubTokenizer,
                 provenance: SourceInfo, source_config: dict, bf16: bool = True):
        """``family``: ``dllm_formats.Family``; ``source_config``: the checkpoint's config.json as read,
        which a student's config.json repeats (``checkpoint_layout``)."""
        self.model = model.eval()
        self.spec, self.family, self.tokenizer, self.provenance = spec, family, tokenizer, provenance
        self.shift, self.architecture, self.source_config = family.shift, family.name, source_config
        # LLaDA masks each token with probability t (arXiv 2502.09992 §2.1), Dream likewise; neither takes t
        self.schedule = LogLinearSchedule(eps=1e-3)
        self.bf16_requested = bf16

    # -- precision --------------------------------------------------------------------------
    def precision(self, device: torch.device) -> torch.dtype:
        return torch.bfloat16 if device.type == "cuda" and self.bf16_requested else torch.float32

    @property
    def bf16(self) -> bool:
        """Whether the trunk computes in bf16 where it is now (read into sample records)."""
        return self.precision(self.device) == torch.bfloat16

    @bf16.setter
    def bf16(self, value: bool) -> None:
        self.bf16_requested = bool(value)

    def to(self, device: torch.device | str) -> DllmTeacher:
        device = torch.device(device)
        self.model.to(device=device, dtype=self.precision(device))
        return self

    def autocast(self, device: torch.device, bf16: bool = True):
        """The compute context of a network on ``device``: bf16 autocast where ``precision`` is bf16 (the
        fp32 student and discriminator then compute as the bf16 teacher does), nothing on a CPU."""
        if bf16 and self.precision(device) == torch.bfloat16:
            return torch.autocast(device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _ready(self) -> BidirTransformer:
        want = self.precision(self.device)
        if self.model.embed.weight.dtype != want:
            self.model.to(dtype=want)
        return self.model

    # -- the shift ----------------------------------------------------------------------------
    def source_rows(self, length: int, device: torch.device) -> torch.Tensor:
        """For each position, the output row that predicts it."""
        rows = torch.arange(length, device=device)
        return (rows - 1).clamp(min=0) if self.shift else rows

    # -- what samplers read ---------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, x_t: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        model = self._ready()
        h = model.hidden_states(x_t.to(self.device))
        return model.project(h[:, self.source_rows(h.shape[1], h.device)]).float()

    @torch.no_grad()
    def masked_log_probs(self, x_t: torch.Tensor, t: torch.Tensor | None, positions: torch.Tensor) -> torch.Tensor:
        """The vocabulary projection only at ``positions`` (at V ≈ 150k it is most of the cost)."""
        return self.denoiser(self.model)(x_t.to(self.device), positions.to(self.device), t)

    def own_tokenizer(self) -> HubTokenizer:
        return self.tokenizer

    # -- what distillation needs --------------------------------------------------------------
    def student_copy(self) -> torch.nn.Module:
        """fp32 parameters whatever the teacher's (AdamW's updates are lost in bf16); bf16 comes from autocast."""
        student = copy.deepcopy(self._ready()).float().train()
        for p in student.parameters():
            p.requires_grad_(True)
        return student

    def denoiser(self, model: torch.nn.Module, bf16: bool = True):
        from .dllm_networks import bidir_denoiser

        if model is self.model:
            self._ready()
        return bidir_denoiser(model, self.spec.mask_id, list(self.spec.never_emit), self.source_rows,
                              lambda device: self.autocast(device, bf16))

    def trunk_features(self, block: int, bf16: bool = True):
        from .dllm_networks import bidir_block_features

        n = len(self.model.blocks)
        if not 0 <= block < n:
            raise DidiError(f"MMD feature block {block} (zero-based) needs a teacher trunk of at least {block + 1} blocks; "
                            f"{self.provenance.id or 'this teacher'} has {n} (pass --mmd-feature-block 0..{n - 1})")
        return bidir_block_features(self._ready(), block, lambda device: self.autocast(device, bf16))

    def discriminator(self, trainable_blocks: int, bf16: bool = True) -> torch.nn.Module:
        from .dllm_networks import BidirDiscriminator

        return BidirDiscriminator(self._ready(), trainable_blocks, lambda device: self.autocast(device, bf16))

    def checkpoint_layout(self, config: dict, weights: dict) -> tuple[dict, dict]:
        """A student as this format publishes it: the teacher's config.json (its torch_dtype and special ids
        made the student's own) with didi-seq's keys added, and the tensors under the checkpoint's names."""
        from .weights import TORCH_DTYPES

        dtypes = {str(v.dtype).removeprefix("torch.") for v in weights.values()}
        own = {"torch_dtype": dtypes.pop() if len(dtypes) == 1 and next(iter(dtypes)) in TORCH_DTYPES else None,
               "bos_token_id": self.tokenizer.bos_id, "eos_token_id": self.tokenizer.eos_id}
        source = {k: v for k, v in self.source_config.items() if k not in ("format", "format_version")}
        return {**source, **own, **config}, {self.family.checkpoint_name(k): v for k, v in weights.items()}


def load_dllm(directory: Path, family, parsed, bf16: bool = True) -> DllmTeacher:
    """Validate headers and tokenizer, then allocate and assign: the order keeps a bad checkpoint from
    costing memory (``parsed`` is ``dllm_formats.read_config``'s checked reading of config.json)."""
    net = parsed.net
    found = read_headers(directory)
    internal_names = {family.checkpoint_name(k): k for k in net.parameter_shapes()}
    expected = {family.checkpoint_name(k): s for k, s in net.parameter_shapes().items()}
    check_headers(expected, found, str(directory), parsed.torch_dtype)
    tokenizer = HubTokenizer.from_directory(directory, net.vocab_rows, parsed.mask_id, parsed.bos_id, parsed.eos_id)
    spec = TeacherSpec(vocab_size=net.vocab_rows, mask_id=parsed.mask_id, max_length=parsed.max_length,
                       never_emit=list(tokenizer.never_emit))
    try:
        spec.validate()
    except ValueError as e:
        raise CheckpointError(f"{directory}: its teacher spec is invalid ({e})") from None
    model = empty_network(net)
    load_assigned(model, found, internal_names)
    own = {"tokenizer_file": str(directory / TOKENIZER_FILE), "architecture": net.to_dict(), "shifted_logits": family.shift}
    if parsed.source.get("format") == FORMAT:  # a didi-seq student of this family (``checkpoint_layout``)
        ckpt = Checkpoint(directory, parsed.source, {}, read_provenance(directory))
        provenance = SourceInfo.of_checkpoint(ckpt, format=family.name, **own)
    else:
        sha = weights_id(found)
        repo, commit = hub_location(directory)
        single = {t.file.name for t in found.values()} == {SINGLE}
        provenance = SourceInfo.build(
            format=family.name, path=str(directory), revision=commit, weights="as published",
            file_sha256=sha if single else None, model_sha256=sha, id=f"{repo}@{sha[:12]}", domain="text", **own)
    return DllmTeacher(model, spec, family, tokenizer, provenance, parsed.source, bf16=bf16)
