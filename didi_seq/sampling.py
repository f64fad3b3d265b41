"""Ancestral sampling for masked diffusion, with exact fp64 draws and a per-sequence cache.

One step from t to s < t: every masked position is revealed with probability
(α_s − α_t) / (1 − α_t) and, if revealed, takes a token drawn from p(x0 | x_t).
This is exactly MDLM's ancestral update (the categorical over {tokens ∝ p(x0)(α_s−α_t),
mask ∝ 1−α_s}) but only draws tokens where something is revealed, which keeps the
sampler cheap next to the network (research/env.md, appendix).

Why float64: Gumbel-max or inverse-CDF draws in fp32 lower the effective temperature
and flatter perplexity (Zheng et al. 2024); all uniforms and CDFs here are fp64.

Only masked positions get log-probs (``masked_log_probs``): SUBS carries every other
position over, so the output head, which dominates at V = 50k, runs where it is read.

The cache: for a time-agnostic teacher p(x0 | x_t) depends on x_t only, so a row in
which no token changed since its last evaluation reuses its cached log-probs; only the
rows that changed are sent through the network. Samples are identical with or without
the cache (same random draws), only the number of network calls differs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .devices import host_rand
from .errors import DidiError
from .process import prior

# The time grid is 1 > 1 − 1/nfe > … > 0 and reaches the networks (and the training times they
# saw) in float32, whose spacing just below 1 is 2^-24: more steps than that are not distinct
# times. The bound also keeps the grid itself (nfe + 1 float64s) small.
MAX_NFE = 1 << 24


def check_nfe(nfe: int) -> None:
    if nfe <= 0:
        raise DidiError(f"--nfe must be a positive integer, got {nfe}")
    if nfe > MAX_NFE:
        raise DidiError(f"--nfe {nfe} is more steps than the noise schedule can resolve: time reaches the network in "
                        f"float32, whose steps below t = 1 are 2^-24 apart, so --nfe is at most {MAX_NFE}")


@dataclass
class SamplerConfig:
    nfe: int
    final: str = "ancestral"  # "greedy": arg-max for tokens revealed at the last step
    cache: bool = True
    length: int | None = None  # default: the teacher's max length

    def validate(self) -> None:
        check_nfe(self.nfe)
        if self.final not in ("ancestral", "greedy"):
            raise DidiError(f"--final must be 'ancestral' or 'greedy', got {self.final!r}")


@dataclass
class SampleResult:
    tokens: torch.Tensor  # [N, L]
    network_calls: int  # batched forward invocations
    rows_evaluated: int  # sequences pushed through the network, summed over calls
    nfe: int
    wall_clock_s: float
    aux_calls: int = 0  # calls of auxiliary networks (RGAS's discriminator), reported beside NFE


def draw_categorical(log_probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per row of ``log_probs`` [N, V] by inverse CDF in float64 (uniforms from the host generator)."""
    return categorical_from_uniform(log_probs, host_rand(log_probs.shape[0], generator, log_probs.device))


def categorical_from_uniform(log_probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw per row of ``log_probs`` [N, V] from given float64 uniforms ``u`` [N]."""
    p = log_probs.double().exp()
    cdf = p.cumsum(-1)
    idx = torch.searchsorted(cdf, u.view(-1, 1) * cdf[:, -1:], right=True).squeeze(-1)
    return idx.clamp_max(p.shape[-1] - 1)


def time_grid(nfe: int) -> torch.Tensor:
    """t_0 = 1 > … > t_nfe = 0; the last step reaches α = 1 and reveals every mask."""
    return torch.linspace(1.0, 0.0, nfe + 1, dtype=torch.float64)


@torch.no_grad()
def ancestral_sample(teacher, num: int, cfg: SamplerConfig, generator: torch.Generator,
                     x_init: torch.Tensor | None = None, on_step: Callable[[], None] | None = None) -> SampleResult:
    cfg.validate()
    spec, schedule, dev = teacher.spec, teacher.schedule, teacher.device
    x = prior((num, cfg.length or spec.max_length), spec.mask_id, dev) if x_init is None else x_init.to(dev, copy=True)
    length = x.shape[1]  # a variable-length batch arrives cut to its own width
    use_cache = cfg.cache and not spec.time_conditioned
    cached: torch.Tensor | None = None
    stale = torch.ones(num, dtype=torch.bool, device=dev)
    calls = rows = 0
    grid = time_grid(cfg.nfe)
    start = time.perf_counter()
    for k in range(cfg.nfe):
        t, s = grid[k], grid[k + 1]
        masked = x == spec.mask_id
        if masked.any():  # otherwise the sample is complete and the step costs nothing
            need = (stale if use_cache else masked.any(-1)) & masked.any(-1)
            if need.any():  # p(x0) only where it can be read: masked positions of changed rows
                lp = teacher.masked_log_probs(x[need], torch.full((int(need.sum()),), float(t), device=dev), masked[need])
                if cached is None:
                    cached = torch.empty((num, length, lp.shape[-1]), dtype=lp.dtype, device=dev)
                cached[masked & need[:, None]] = lp
            calls += int(need.any())
            rows += int(need.sum())
            a_t, a_s = schedule.alpha(t), schedule.alpha(s)
            u = host_rand(x.shape, generator, dev)
            reveal = masked & (u < float((a_s - a_t) / (1 - a_t)))
            stale = reveal.any(-1)
            if reveal.any():
                lp = cached[reveal]
                greedy = k == cfg.nfe - 1 and cfg.final == "greedy"
                x[reveal] = lp.argmax(-1) if greedy else draw_categorical(lp, generator)
        if on_step:
            on_step()
    return SampleResult(x.cpu(), calls, rows, cfg.nfe, time.perf_counter() - start)


def in_batches(draw: Callable[[int, torch.Generator], SampleResult], num: int, nfe: int, seed: int,
               batch_size: int) -> SampleResult:
    """``num`` samples as ``draw(n, generator)`` batches from one seeded generator; costs are summed."""
    gen = torch.Generator().manual_seed(seed)
    parts = [draw(min(batch_size, num - start), gen) for start in range(0, num, batch_size)]
    return SampleResult(torch.cat([r.tokens for r in parts]), sum(r.network_calls for r in parts),
                        sum(r.rows_evaluated for r in parts), nfe, sum(r.wall_clock_s for r in parts),
                        sum(r.aux_calls for r in parts))


def from_states(draw: Callable[[torch.Tensor, torch.Generator], SampleResult], x_init: torch.Tensor, nfe: int, seed: int,
                batch_size: int, pad_id: int | None) -> SampleResult:
    """``draw(states, generator)`` over batches of the start states ``x_init`` [N, L].

    Each batch is cut to its own width first (columns that are padding in all its rows carry
    nothing under a key-padding mask), so a batch of short proteins does not pay for the longest
    one; the samples are padded back to L so every batch concatenates.
    """
    from .data import trim_padding

    chunks, width = iter(x_init.split(batch_size)), x_init.shape[1]

    def one(n: int, gen: torch.Generator) -> SampleResult:
        res = draw(trim_padding(next(chunks), pad_id), gen)
        if res.tokens.shape[1] < width:
            res.tokens = torch.nn.functional.pad(res.tokens, (0, width - res.tokens.shape[1]), value=pad_id)
        return res

    return in_batches(one, len(x_init), nfe, seed, batch_size)


def sample_batches(teacher, num: int, cfg: SamplerConfig, seed: int, batch_size: int = 32,
                   on_step: Callable[[], None] | None = None, x_init: torch.Tensor | None = None) -> SampleResult:
    """Ancestral samples in batches (see ``in_batches``); ``x_init`` [num, L] gives each row its
    start state (variable-length domains: ``initial_states``; see ``from_states``), else every
    row starts all-mask."""
    if x_init is not None:
        return from_states(lambda x, gen: ancestral_sample(teacher, len(x), cfg, gen, x_init=x, on_step=on_step),
                           x_init, cfg.nfe, seed, batch_size, teacher.spec.pad_id)
    return in_batches(lambda n, gen: ancestral_sample(teacher, n, cfg, gen, on_step=on_step), num, cfg.nfe, seed, batch_size)


def initial_states(domain, tokenizer, spec, num: int, seed: int, lengths: str | None = None) -> tuple[torch.Tensor | None, dict]:
    """Start states for a variable-length domain, with the length model's description.

    Lengths come from the domain's length model (``lengths`` is its spec: None for the fitted
    default, one length, or a list) and are drawn from their own generator, so the sampler's
    random stream is the same whatever the lengths. Fixed-length domains return (None, {}).
    """
    if domain.length_model is None:
        if lengths is not None:
            raise DidiError(f"domain {domain.name!r} has fixed-length rows; --lengths does not apply")
        return None, {}
    model = domain.length_model(lengths, spec.max_length - 2)
    drawn = model.draw(num, torch.Generator().manual_seed(seed + 7919))
    from .process import framed_prior

    x = framed_prior(drawn, spec.mask_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id)
    return x, model.describe()
