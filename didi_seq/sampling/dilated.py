"""Dilated unmasking: reveal positions far apart from each other at every step.

A masked diffusion model predicts every masked position independently given the revealed
ones, so a step that reveals two *neighbouring* positions draws them as if they were
independent: the factorisation error that makes few-step sampling worse. The Dilated
Unmasking Scheduler (DUS; Luxembourg, Permuter & Nachmani, arXiv 2506.19037, §3) reveals
groups of non-adjacent positions instead, so the tokens revealed together are far apart and
nearly independent given the context.

The order used here is the bit-reversal permutation of the positions with a random cyclic
shift per row: with L positions and K steps of L/K reveals, step 1 reveals every (L/K)-th
position, step 2 the midpoints between those, and so on, so the positions revealed together
are always ~L/K apart. How *many* positions a step reveals is the ancestral sampler's
expectation made exact: a row with n masked positions on the step t → s reveals
round(n·p) of them, p = (α_s − α_t)/(1 − α_t), on the same time grid (``--schedule``),
and the last step reveals all that remain. Tokens are drawn from p(x0 | x_t) as in the
ancestral sampler (fp64 draws, temperature T, ``--final greedy``). Which positions are
revealed depends only on the row's masks, never on the network, so the exact cache holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..devices import host_rand
from .ancestral import SamplerConfig, Transition, denoise, fill, reveal_probability
from .contract import SampleResult


def bit_reversal_order(n: int) -> torch.Tensor:
    """0 … n−1 in bit-reversed order (of the next power of two, the values ≥ n left out):
    every prefix of length ≈ n/2^j is spread ~2^j apart."""
    bits = max(1, (n - 1).bit_length())
    idx = torch.arange(1 << bits)
    rev = torch.zeros_like(idx)
    for b in range(bits):
        rev |= ((idx >> b) & 1) << (bits - 1 - b)
    return rev[rev < n]


def dilated_rank(masked: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """int64 [B, L]: the step order of each masked position (0 first; unmasked positions get L).

    Row b's m masked positions, counted left to right as 0 … m−1, are revealed in bit-reversal
    order rotated by ``shift[b]`` (mod m), so rows of different length (framed proteins) are
    dilated over their own masked span."""
    B, L = masked.shape
    rank = torch.full((B, L), L, dtype=torch.long)
    for b in range(B):
        where = masked[b].nonzero().flatten().cpu()
        m = len(where)
        if m:
            order = (bit_reversal_order(m) + int(shift[b]) % m) % m  # k-th revealed = order[k]-th masked slot
            slot_rank = torch.empty(m, dtype=torch.long)
            slot_rank[order] = torch.arange(m)
            rank[b, where] = slot_rank
    return rank.to(masked.device)


def reveal_counts(masked: torch.Tensor, p: float) -> torch.Tensor:
    """int64 [B]: how many masked positions each row reveals on a step whose per-position reveal
    probability is ``p`` (the ancestral expectation, rounded; p = 1 reveals all)."""
    n = masked.sum(-1)
    return n - torch.round(n.double() * (1.0 - p)).long()


def dilated_transition(adapter, cfg: SamplerConfig) -> Transition:
    """The step t → s: reveal each row's next ``reveal_counts`` positions of its dilated order."""
    order: dict[str, torch.Tensor] = {}

    def step(k, x, masked, table, t, s, gen):
        if "rank" not in order:  # the rows' order, fixed by their start masks and one shift per row
            shift = (host_rand(x.shape[0], gen, torch.device("cpu")) * x.shape[1]).long()
            order["rank"] = dilated_rank(masked, shift)
        rank = torch.where(masked, order["rank"], torch.iinfo(torch.long).max)
        count = reveal_counts(masked, reveal_probability(adapter.schedule, t, s))
        # the `count` masked positions of smallest rank: rank ≤ the count-th smallest rank of the row
        kth = rank.sort(-1).values.gather(1, (count - 1).clamp_min(0)[:, None])
        reveal = masked & (rank <= kth) & (count > 0)[:, None]
        greedy = k == cfg.nfe - 1 and cfg.final == "greedy"
        return fill(x, reveal, table[reveal], gen, cfg.temperature, greedy)

    return step


@dataclass(frozen=True)
class DilatedSampler:
    """Dilated unmasking order (DUS, arXiv 2506.19037) on the ancestral loop, with the exact cache."""

    name: str = "dilated"
    description: str = "dilated unmasking order (DUS, arXiv 2506.19037): positions revealed together lie far apart"
    config: type = SamplerConfig
    domains: tuple[str, ...] | None = None

    def sample(self, adapter, x_init, cfg, generator, on_step=None) -> SampleResult:
        return denoise(adapter, x_init, cfg, generator, lambda c: dilated_transition(adapter, c), on_step)
