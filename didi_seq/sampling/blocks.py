"""Semi-autoregressive block sampling: the answer is generated block by block, left to right.

LLaDA (arXiv 2502.09992, §2.4, "semi-autoregressive remasking"; ML-GSAI/LLaDA ``generate.py``)
samples long answers this way: the masked positions after the prompt are cut into blocks of
``block_length``, the blocks are generated left to right with an equal share of the steps, and
within a block the sampler's own step reveals only that block's positions while the network
sees the whole sequence, the later blocks still masked.

Here a block is one run of the sampler's own transition on its own time grid (1 → 0 in nfe/K
steps) over the block's positions: ``ancestral.denoise`` loops over the blocks, so every sampler
on that loop (ancestral, dilated, RGAS) gets block sampling, its exact cache and its options
without a loop of its own. A time-conditioned network is given the block's grid time.

Blocks are counted over each row's masked start positions, left to right, so they begin where
the prompt (or a framed row's BOS) ends. One call has K = ⌈longest answer / block_length⌉ blocks
and ``nfe`` must divide by K (LLaDA asserts the same); unlike LLaDA the answer need not be a
multiple of the block length: its last block is shorter, and a shorter answer's missing blocks
are steps that cost nothing.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..errors import DidiError


def answer_blocks(masked: torch.Tensor, block_length: int | None) -> torch.Tensor:
    """int64 [B, L]: the block of every position masked in the start states, −1 elsewhere. A row's
    k-th masked position (counted left to right from 0) lies in block k // ``block_length``; without a
    block length every masked position lies in block 0."""
    rank = masked.long().cumsum(-1) - 1
    block = rank // block_length if block_length else torch.zeros_like(rank)
    return torch.where(masked, block, -1)


def block_count(masked: torch.Tensor, block_length: int | None) -> int:
    """K: blocks of the longest answer (rows' masked start positions); 1 without a block length."""
    longest = int(masked.sum(-1).max()) if masked.numel() else 0
    return max(1, -(-longest // block_length)) if block_length else 1


def check_block_steps(nfe: int, masked: torch.Tensor, block_length: int) -> int:
    """K, after checking that every block gets the same whole number of steps (as in LLaDA)."""
    blocks = block_count(masked, block_length)
    if nfe % blocks:
        raise DidiError(f"--nfe {nfe} does not split evenly over the {blocks} blocks of --block-length {block_length} "
                        f"(answers of up to {int(masked.sum(-1).max())} positions); pass an --nfe divisible by {blocks}")
    return blocks


def block_plan(cfg, masked: torch.Tensor):
    """(K, the config one block runs with): ``nfe / K`` steps, no block options of its own. The call's
    K is ``cfg.blocks`` when ``generate`` fixed it for all batches, else this batch's ``block_count``."""
    block_length = getattr(cfg, "block_length", None)
    if not block_length:
        return 1, cfg
    blocks = cfg.blocks if getattr(cfg, "blocks", None) else check_block_steps(cfg.nfe, masked, block_length)
    if cfg.nfe % blocks or blocks < block_count(masked, block_length):
        raise DidiError(f"blocks={blocks} does not fit --nfe {cfg.nfe} and these start states (they need "
                        f"{block_count(masked, block_length)} blocks of --block-length {block_length})")
    return blocks, replace(cfg, nfe=cfg.nfe // blocks, block_length=None)  # ``blocks`` is not copied: None


def with_block_count(cfg, x_init: torch.Tensor, mask_id: int):
    """``cfg`` with the block count of the whole call fixed (checked before any sampling), so that every
    batch splits its answers into the same blocks; ``cfg`` itself for a sampler without block options."""
    block_length = getattr(cfg, "block_length", None)
    if not block_length:
        return cfg
    fixed = replace(cfg)
    fixed.blocks = check_block_steps(cfg.nfe, x_init == mask_id, block_length)
    return fixed
