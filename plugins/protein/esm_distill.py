"""What DiDi-Instruct needs from an ESM/DPLM teacher: denoiser, discriminator, student checkpoints.

* ``esm_denoiser``: log p(x0 | x) at the requested positions from an ``EsmForMaskedLM``
  (teacher or student copy), with ``<pad>`` hidden from attention and the never-emitted ids
  (specials, non-standard letters) given zero mass — the SUBS half the DiT denoiser applies too.
* ``EsmDiscriminator``: a copy of the teacher's ESM trunk whose last ``trainable_blocks``
  layers learn, plus a time embedding of σ(t) added to the trunk output (ESM has no time
  input; the density ratio depends on t) and a spectral-normalised per-token head. Only the
  trainable part is saved; the frozen part is the teacher, found again by its hash.
* ``esm_block_features``: token features after one ESM layer (representation-space MMD).
* Student checkpoints are didi-seq directories (``architecture: "esm"``, the ESM config under
  ``model``, safetensors weights); ``didi_seq_protein.dplm.load_esm_student`` turns them back
  into an ``EsmTeacher``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from didi_seq import DidiError
from didi_seq.devices import bf16_autocast
from didi_seq.models.dit import TimestepEmbedder
from didi_seq.models.networks import TrainablePart
from didi_seq.models.process import forbid_tokens


def esm_denoiser(model, mask_id: int, never_emit: list[int], pad_id: int, bf16: bool = True):
    forbid = torch.tensor(never_emit, dtype=torch.long)

    def run(x: torch.Tensor, positions: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with bf16_autocast(x.device.type, bf16):
            logits = model(input_ids=x, attention_mask=(x != pad_id).long()).logits
        return torch.log_softmax(forbid_tokens(logits[positions], mask_id, forbid.to(logits.device)), dim=-1)

    return run


class _FeaturesReady(Exception):
    """Raised by the feature hook: nothing above the chosen layer needs to run."""


def esm_block_features(model, block: int, pad_id: int, bf16: bool = True, name: str = "this teacher"):
    """ids [N, L] → token features [N, L, H] (fp32) after zero-based ESM layer ``block`` of a frozen
    ``EsmForMaskedLM`` on clean input (representation-space MMD's feature map). A forward hook
    on the layer stops the pass there: the layers above and the vocabulary head never run."""
    layers = model.esm.encoder.layer
    if not 0 <= block < len(layers):
        raise DidiError(f"MMD feature block {block} (zero-based) needs a teacher trunk of at least {block + 1} blocks; "
                        f"{name} has {len(layers)} (pass --mmd-feature-block 0..{len(layers) - 1})")

    @torch.no_grad()
    def run(x: torch.Tensor) -> torch.Tensor:
        got = []

        def hook(_module, _inputs, output):
            got.append(output[0] if isinstance(output, (tuple, list)) else output)
            raise _FeaturesReady

        handle = layers[block].register_forward_hook(hook)
        try:
            with bf16_autocast(x.device.type, bf16):
                model.esm(input_ids=x, attention_mask=(x != pad_id).long())
        except _FeaturesReady:
            pass
        finally:
            handle.remove()
        return got[0].float()

    return run


class EsmDiscriminator(TrainablePart, nn.Module):
    """(token ids [B, L], t [B]) → one logit per token [B, L] (fp32)."""

    def __init__(self, teacher_model, trainable_blocks: int, schedule, pad_id: int, bf16: bool = True):
        super().__init__()
        layers = len(teacher_model.esm.encoder.layer)
        if not 1 <= trainable_blocks <= layers:
            raise ValueError(f"discriminator trainable blocks must be in 1..{layers}, got {trainable_blocks}")
        self.trunk = copy.deepcopy(teacher_model.esm)
        self.trunk.contact_head = None  # unused, and not part of what is saved
        self.frozen_blocks, self.trainable_blocks = layers - trainable_blocks, trainable_blocks
        hidden = teacher_model.config.hidden_size
        self.time = TimestepEmbedder(hidden)
        self.head = nn.Sequential(spectral_norm(nn.Linear(hidden, hidden)), nn.SiLU(), spectral_norm(nn.Linear(hidden, 1)))
        self.schedule, self.pad_id, self.bf16 = schedule, pad_id, bf16
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        trainable = [*self.trunk.encoder.layer[self.frozen_blocks:]]
        if self.trunk.encoder.emb_layer_norm_after is not None:
            trainable.append(self.trunk.encoder.emb_layer_norm_after)
        for module in trainable:
            for p in module.parameters():
                p.requires_grad_(True)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.is_floating_point():
            raise DidiError("the ESM discriminator takes token ids only (RGAS soft tokens are not supported)")
        with bf16_autocast(x.device.type, self.bf16):
            h = self.trunk(input_ids=x, attention_mask=(x != self.pad_id).long()).last_hidden_state
        h = h.float() + nn.functional.silu(self.time(self.schedule.sigma(t.float())))[:, None]
        return self.head(h).squeeze(-1)

    def _trainable_prefixes(self) -> tuple[str, ...]:
        return (*(f"trunk.encoder.layer.{i}." for i in range(self.frozen_blocks, len(self.trunk.encoder.layer))),
                "trunk.encoder.emb_layer_norm_after.", "time.", "head.")
