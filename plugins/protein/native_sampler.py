"""DPLM's own unconditional sampler, re-implemented for parity with its published pLDDT.

Per iteration t = 1..T (one network call each; bytedance/dplm ``generate_dplm.py`` and
``DiffusionProteinLanguageModel.generate`` in ``src/byprot/models/dplm/dplm.py``):

1. logits on the current tokens; ``<mask>``, ``X`` and every special token get −∞;
2. a token for *every* residue position by Gumbel-max (temperature 1), scored by the
   log-softmax of the Gumbel-perturbed logits (a noisy confidence);
3. repetition guard: in a row whose most frequent token exceeds ``repeat_threshold`` (25 %)
   of its residues, the positions holding such over-frequent tokens are re-masked and
   re-predicted with one extra network call (top-p 0.95, Gumbel) — an extra NFE;
4. deterministic linear re-masking: the ⌊(1 − t/T)·N⌋ lowest-scored positions of a row
   (N = its residue count) become ``<mask>``; other still-masked positions take the new
   token, already-decoded ones keep theirs. At t = T nothing is masked.

A temperature T ≠ 1 divides the logits before every Gumbel draw (and before the guard's top-p
filter), as DPLM's ``temperature`` does; T = 1 leaves them untouched.

Only the positions masked in the start states are the sampler's (the sampler contract,
``didi_seq/sampling/contract.py``): ``<cls>``, ``<eos>``, ``<pad>`` and a prompt never move and
are never re-masked, so mixed-length batches padded after ``<eos>`` are handled row by row and N
counts a row's answer residues. Draws use fp64 uniforms from a torch generator.

Two deliberate differences from DPLM's code: the guard's share is counted over a row's N
residues (DPLM counts the whole row, N + 2 positions, because it never mixes lengths in a
batch), and ties in the re-masking ranking are broken by position (DPLM masks every score
below the k-th smallest, so ties can mask a few more).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from didi_seq import DidiError, SampleResult, SamplerOptions, check_distribution, option
from didi_seq.devices import host_rand

NEG_INF = float("-inf")


def gumbel_argmax(logits: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, noisy confidence) from Gumbel-perturbed logits, fp64."""
    u = host_rand(logits.shape, generator, logits.device).clamp_(1e-20, 1.0)
    noisy = logits.double() - torch.log(-torch.log(u))
    tokens = noisy.argmax(-1)
    return tokens, torch.log_softmax(noisy, -1).gather(-1, tokens[..., None]).squeeze(-1)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability reaches ``p``; the rest get −∞."""
    probs = torch.softmax(logits.double(), -1)
    sorted_p, order = probs.sort(-1, descending=True)
    drop_sorted = sorted_p.cumsum(-1) - sorted_p >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


def over_repeated(tokens: torch.Tensor, residues: torch.Tensor, vocab: int, threshold: float) -> torch.Tensor:
    """bool [B, L]: residue positions holding a token whose share of its row exceeds ``threshold``."""
    counts = torch.zeros(tokens.shape[0], vocab, dtype=torch.long, device=tokens.device)
    counts.scatter_add_(1, tokens * residues, residues.long())  # non-residues add 0
    share = counts.double() / residues.sum(-1, keepdim=True).clamp_min(1)
    return residues & (share.gather(1, tokens) > threshold)


@torch.no_grad()
def dplm_sample(adapter, x_init: torch.Tensor, nfe: int, generator: torch.Generator, suppress: list[int],
                on_step: Callable[[], None] | None = None, repeat_threshold: float | None = 0.25,
                top_p: float = 0.95, temperature: float = 1.0) -> SampleResult:
    """T = ``nfe`` iterations of DPLM's sampler from framed start states ``x_init`` [B, L].

    ``suppress``: ids never drawn (DPLM: ``<mask>``, ``X``, ``<pad>``, ``<cls>``, ``<eos>``; the
    protein plugin adds the remaining specials). ``repeat_threshold=None`` turns the guard off.
    """
    spec, dev = adapter.spec, adapter.device
    x = x_init.to(dev, copy=True)
    residues = x == spec.mask_id  # the positions to generate; the rest (frame, prompt) are fixed
    n_res = residues.sum(-1)
    banned = torch.tensor(sorted({spec.mask_id, *suppress}), dtype=torch.long, device=dev)
    calls = rows = 0
    start = time.perf_counter()

    def predict(ids: torch.Tensor) -> torch.Tensor:
        logits = adapter.logits(ids).double()
        logits[..., banned] = NEG_INF
        return logits if temperature == 1.0 else logits / temperature

    for t in range(1, nfe + 1):
        logits = predict(x)
        check_distribution(logits[residues])  # NaN or all-banned logits would still give an arg-max
        calls, rows = calls + 1, rows + x.shape[0]
        tokens, scores = gumbel_argmax(logits, generator)
        tokens = torch.where(residues, tokens, x)
        if repeat_threshold is not None:
            again = over_repeated(tokens, residues, logits.shape[-1], repeat_threshold)
            hit = again.any(-1)
            if hit.any():
                probe = torch.where(again, spec.mask_id, tokens)[hit]
                re_logits = top_p_filter(predict(probe), top_p)
                calls, rows = calls + 1, rows + int(hit.sum())
                re_tokens, re_scores = gumbel_argmax(re_logits, generator)
                sub = again[hit]
                tokens[hit] = torch.where(sub, re_tokens, tokens[hit])
                scores[hit] = torch.where(sub, re_scores, scores[hit])
        cutoff = torch.floor((1 - t / nfe) * n_res.double()).long()
        # stable sorts: ties are broken by position on every device
        ranked = torch.where(residues, scores, torch.inf).argsort(dim=-1, stable=True).argsort(dim=-1, stable=True)
        remask = residues & (ranked < cutoff[:, None])
        was_masked = x == spec.mask_id
        x = torch.where(was_masked & residues, tokens, x)
        x = torch.where(remask, spec.mask_id, x)
        if on_step:
            on_step()
    return SampleResult(x.cpu(), calls, rows, nfe, time.perf_counter() - start)


@dataclass(kw_only=True)
class NativeConfig(SamplerOptions):
    # DPLM's repetition guard; None turns it off (as does 1: no token can hold more than the whole row)
    repeat_threshold: float | None = option(0.25, "Repetition guard: re-predict a row's residues holding a token "
                                                  "above this share of the row (1: off).")
    top_p: float = option(0.95, "Top-p filter of the guard's re-prediction.")

    def validate(self) -> None:
        super().validate()
        if self.repeat_threshold is not None and not 0.0 < self.repeat_threshold <= 1.0:
            raise DidiError(f"--repeat-threshold must be in (0, 1], got {self.repeat_threshold}")
        if not 0.0 < self.top_p <= 1.0:
            raise DidiError(f"--top-p must be in (0, 1], got {self.top_p}")

    def record(self) -> dict:
        return {"repeat_threshold": self.repeat_threshold, "top_p": self.top_p}


@dataclass(frozen=True)
class NativeSampler:
    """DPLM's sampler for framed protein start states, registered by the protein plugin."""

    name: str = "native"
    description: str = "DPLM's iterative re-masking (Gumbel-max, confidence-ranked linear re-masking, repetition guard)"
    config: type = NativeConfig
    domains: tuple[str, ...] | None = ("protein",)

    def sample(self, adapter, x_init, cfg: NativeConfig, generator, on_step=None) -> SampleResult:
        from .alphabet import ProteinTokenizer

        cfg.validate()
        # DPLM bans <mask>, X and <pad>/<cls>/<eos>; we also ban the other specials and B U Z O . -, so every
        # sample is a valid 20-letter protein (a deliberate deviation: those letters are rare in UniRef50)
        return dplm_sample(adapter, x_init, cfg.nfe, generator, suppress=list(ProteinTokenizer().never_emit),
                           on_step=on_step, repeat_threshold=cfg.repeat_threshold, top_p=cfg.top_p,
                           temperature=cfg.temperature)
