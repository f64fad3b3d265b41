"""What distillation needs of a LLaDA or Dream network (``bidir.BidirTransformer``): the student as a
denoiser, the MMD feature cut and the DiDi-Instruct discriminator.

They are the DiT's (``networks.py``) less the time input: both models take masks only (LLaDA,
arXiv 2502.09992 §2.1; Dream likewise), so σ(t) reaches neither the denoiser nor the discriminator,
which reads the noise level from the mask pattern as the network itself does. Dream's shift (output
row i − 1 predicts token i) comes in as ``source_rows``, the adapter's one statement of it; the
precision (bf16 autocast on a GPU, fp32 on a CPU) as ``autocast``, the adapter's one rule for it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from .bidir import BidirTransformer
from .networks import TrainablePart, logit_head
from .process import forbid_tokens

Autocast = Callable[[torch.device], object]  # device -> a context manager
SourceRows = Callable[[int, torch.device], torch.Tensor]  # (length, device) -> output row of each position


def bidir_denoiser(model: BidirTransformer, mask_id: int, never_emit: list[int], source_rows: SourceRows,
                   autocast: Autocast):
    """A ``Denoiser`` (``distill/objective.py``) over ``model``: log p(x0 | x) in fp32 at ``positions``,
    the vocabulary projection evaluated there only (V ≈ 126k–152k). t is ignored (no time input).

    Identical rows (every rollout starts from the all-mask row) are computed once and broadcast."""
    forbid = torch.tensor(never_emit, dtype=torch.long)

    def run(x: torch.Tensor, positions: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        if x.shape[0] > 1 and bool((positions == positions[:1]).all()) and bool((x == x[:1]).all()):
            return run(x[:1], positions[:1], t).repeat(x.shape[0], 1)
        with autocast(x.device):
            h = model.hidden_states(x)
            b, i = positions.nonzero(as_tuple=True)
            logits = model.project(h[b, source_rows(x.shape[1], x.device)[i]]).float()
        return torch.log_softmax(forbid_tokens(logits, mask_id, forbid.to(logits.device)), dim=-1)

    return run


def bidir_block_features(model: BidirTransformer, block: int, autocast: Autocast):
    """ids [N, L] → the residual stream [N, L, H] (fp32) after zero-based block ``block`` of a frozen
    ``model`` on clean input; the blocks above it and the vocabulary projection are never run."""

    @torch.no_grad()
    def run(x: torch.Tensor) -> torch.Tensor:
        with autocast(x.device):
            h = model.trunk(x, model.blocks[: block + 1])
        return h.float()

    return run


class BidirDiscriminator(TrainablePart, nn.Module):
    """(tokens [B, L] or probabilities [B, L, V], t [B], unused) → one logit per token [B, L] (fp32): the
    teacher's embedding and blocks, the last ``trainable_blocks`` of them trainable, then ``logit_head``.
    Parameters are fp32 (the trained ones need it); bf16 comes from ``autocast`` as for the student."""

    def __init__(self, teacher_model: BidirTransformer, trainable_blocks: int, autocast: Autocast):
        super().__init__()
        n = len(teacher_model.blocks)
        if not 1 <= trainable_blocks <= n:
            raise ValueError(f"discriminator trainable blocks must be in 1..{n}, got {trainable_blocks}")
        self.trunk = copy.deepcopy(teacher_model).float()
        self.trunk.norm = self.trunk.head = None  # the vocabulary projection is replaced, not reused
        self.frozen_blocks, self.trainable_blocks = n - trainable_blocks, trainable_blocks
        self.head = logit_head(teacher_model.config.hidden)
        self.autocast = autocast
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        for block in self.trunk.blocks[self.frozen_blocks:]:
            for p in block.parameters():
                p.requires_grad_(True)

    def forward(self, x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
        trunk = self.trunk
        with self.autocast(x.device):
            # the frozen prefix needs no graph unless a gradient w.r.t. the input is asked for (RGAS)
            with torch.set_grad_enabled(torch.is_grad_enabled() and x.is_floating_point() and x.requires_grad):
                h = trunk.trunk(x, trunk.blocks[: self.frozen_blocks])
            h = trunk.trunk(x, trunk.blocks[self.frozen_blocks:], h=h)
        return self.head(h.float()).squeeze(-1)

    def _trainable_prefixes(self) -> tuple[str, ...]:
        return (*(f"trunk.blocks.{i}." for i in range(self.frozen_blocks, len(self.trunk.blocks))), "head.")
