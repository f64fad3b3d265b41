"""Reward-guided ancestral sampling (RGAS, research/didi-instruct.md §3) with a DiDi discriminator.

Same grid and fp64 draws as the ancestral sampler, with two changes driven by the
discriminator D (whose logit says "looks like the target"):

* early steps (the first ⌊K(1−ρ)⌋): **gradient tilting** — the student's log-probs ℓ get
  ℓ + h·clip(∇_ℓ Σ_masked D(soft x), ±1), where masked positions enter D as softmax(ℓ) and
  revealed ones as one-hot tokens; h ramps from ``guidance_start`` to ``guidance_end``;
* late steps: **re-ranking** — M candidate transitions are drawn and one is *sampled* with
  probability softmax(Σ_l D(candidate)) (HEAD's rule: all positions, temperature 1).

With h = 0 and M = 1 it consumes the random stream exactly like ``ancestral_sample`` and
returns the same samples. NFE counts student calls; discriminator calls (a tilting call is
a forward and a backward) are counted separately in ``SampleResult.aux_calls``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .devices import host_rand
from .errors import DidiError
from .numbers import check_range
from .process import prior
from .sampling import SampleResult, check_nfe, draw_categorical, in_batches, time_grid


@dataclass
class RGASConfig:
    nfe: int
    guidance_start: float = 0.2  # [INIT] and code defaults; HEAD ships 30 → 40 for the 169M model
    guidance_end: float = 1.0
    rerank_ratio: float = 0.5  # ρ: the last half of the steps re-rank [HEAD, INIT]
    candidates: int = 4  # M [HEAD]
    grad_clip: float = 1.0  # per-element clip of the tilting gradient [HEAD, LATE]
    length: int | None = None

    def validate(self) -> None:
        check_nfe(self.nfe)
        if self.candidates <= 0:
            raise DidiError(f"--candidates must be a positive integer, got {self.candidates}")
        check_range("--rerank-ratio", self.rerank_ratio, 0.0, 1.0)
        check_range("--guidance-start", self.guidance_start)
        check_range("--guidance-end", self.guidance_end)
        check_range("grad_clip", self.grad_clip, 0, low_open=True)

    def record(self) -> dict:
        """The settings a sample record must carry to be reproducible."""
        return {k: getattr(self, k) for k in ("guidance_start", "guidance_end", "rerank_ratio", "candidates")}

    def scale(self, k: int, tilt_steps: int) -> float:
        return self.guidance_start + (self.guidance_end - self.guidance_start) * k / max(1, tilt_steps - 1)


def tilt(lp: torch.Tensor, x: torch.Tensor, masked: torch.Tensor, disc, t: torch.Tensor, h: float, clip: float) -> torch.Tensor:
    """ℓ + h·clip(∇ℓ Σ_masked D), renormalised; −∞ entries (mask, forbidden ids) stay −∞."""
    ell = lp.detach().clone().requires_grad_(True)
    hard = torch.nn.functional.one_hot(x, lp.shape[-1]).to(lp.dtype)
    with torch.enable_grad():
        soft = torch.where(masked[..., None], torch.softmax(ell, -1), hard)
        reward = (disc(soft, t) * masked).sum()
        (grad,) = torch.autograd.grad(reward, ell)
    grad = torch.nan_to_num(grad).clamp(-clip, clip) * masked[..., None]
    return torch.log_softmax(lp + h * grad, dim=-1)


@torch.no_grad()
def rgas_sample(student, disc, num: int, cfg: RGASConfig, generator: torch.Generator,
                on_step: Callable[[], None] | None = None) -> SampleResult:
    cfg.validate()
    spec, schedule = student.spec, student.schedule
    length = cfg.length or spec.max_length
    dev = student.device
    x = prior((num, length), spec.mask_id, dev)
    grid = time_grid(cfg.nfe)
    tilt_steps = int(cfg.nfe * (1 - cfg.rerank_ratio))
    calls = disc_calls = 0
    disc.eval()
    start = time.perf_counter()
    for k in range(cfg.nfe):
        t, s = grid[k], grid[k + 1]
        masked = x == spec.mask_id
        if masked.any():
            tt = torch.full((num,), float(t), device=dev)
            lp = student.log_probs(x, tt)
            calls += 1
            h = cfg.scale(k, tilt_steps)
            if k < tilt_steps and h != 0.0:
                lp = tilt(lp, x, masked, disc, tt, h, cfg.grad_clip)
                disc_calls += 1
            a_t, a_s = schedule.alpha(t), schedule.alpha(s)
            p = float((a_s - a_t) / (1 - a_t))
            m = cfg.candidates if k >= tilt_steps else 1
            cands = []
            for _ in range(m):
                u = host_rand(x.shape, generator, dev)
                reveal = masked & (u < p)
                cand = x.clone()
                if reveal.any():
                    cand[reveal] = draw_categorical(lp[reveal], generator)
                cands.append(cand)
            if m == 1:
                x = cands[0]
            else:
                stacked = torch.stack(cands, 1)  # [B, M, L]
                scores = disc(stacked.flatten(0, 1), torch.full((num * m,), float(s), device=dev)).sum(-1).view(num, m)
                disc_calls += m
                weights = torch.softmax(scores.double(), -1).cpu()  # drawn with the host generator
                choice = torch.multinomial(weights, 1, generator=generator).squeeze(-1).to(dev)
                x = stacked[torch.arange(num, device=dev), choice]
        if on_step:
            on_step()
    return SampleResult(x.cpu(), calls, calls * num, cfg.nfe, time.perf_counter() - start, disc_calls)


def rgas_batches(student, disc, num: int, cfg: RGASConfig, seed: int, batch_size: int = 32,
                 on_step: Callable[[], None] | None = None) -> SampleResult:
    """RGAS samples in batches from one seeded generator (see ``sampling.in_batches``)."""
    return in_batches(lambda n, gen: rgas_sample(student, disc, n, cfg, gen, on_step=on_step), num, cfg.nfe, seed, batch_size)
