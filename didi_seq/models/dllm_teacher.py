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
Distillation of these teachers is not offered yet (``denoiser`` keeps the base class's refusal).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..io.provenance import SourceInfo
from .bidir import BidirTransformer, empty_network
from .hub_tokenizer import TOKENIZER_FILE, HubTokenizer
from .process import LogLinearSchedule, forbid_tokens
from .teacher import TeacherAdapter, TeacherSpec
from .weights import SINGLE, check_headers, hub_location, load_assigned, read_headers, weights_id


class DllmTeacher(TeacherAdapter):
    def __init__(self, model: BidirTransformer, spec: TeacherSpec, shift: bool, tokenizer: HubTokenizer,
                 provenance: SourceInfo, architecture: str, bf16: bool = True):
        self.model = model.eval()
        self.spec, self.shift, self.tokenizer, self.provenance = spec, shift, tokenizer, provenance
        self.architecture = architecture
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
        model = self._ready()
        h = model.hidden_states(x_t.to(self.device))
        b, i = positions.to(h.device).nonzero(as_tuple=True)
        logits = model.project(h[b, self.source_rows(h.shape[1], h.device)[i]]).float()
        never = torch.tensor(self.spec.never_emit, dtype=torch.long, device=logits.device)
        return torch.log_softmax(forbid_tokens(logits, self.spec.mask_id, never), dim=-1)

    def own_tokenizer(self) -> HubTokenizer:
        return self.tokenizer

    def student_copy(self) -> torch.nn.Module:
        student = copy.deepcopy(self.model).train()
        for p in student.parameters():
            p.requires_grad_(True)
        return student


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
    sha = weights_id(found)
    repo, commit = hub_location(directory)
    single = (directory / SINGLE) if {t.file.name for t in found.values()} == {SINGLE} else None
    provenance = SourceInfo.build(
        format=family.name, path=str(directory), revision=commit, weights="as published",
        file_sha256=sha if single else None, model_sha256=sha, id=f"{repo}@{sha[:12]}", domain="text",
        tokenizer_file=str(directory / TOKENIZER_FILE), architecture=net.to_dict(), shifted_logits=family.shift)
    return DllmTeacher(model, spec, family.shift, tokenizer, provenance, family.name, bf16=bf16)
