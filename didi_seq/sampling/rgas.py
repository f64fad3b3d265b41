"""Reward-guided ancestral sampling (RGAS, arXiv 2509.25035) with a DiDi discriminator.

Same grid and fp64 draws as the ancestral sampler, with two changes driven by the
discriminator D (whose logit says "looks like the target"):

* early steps (the first ⌊K(1−ρ)⌋): **gradient tilting** — the student's log-probs ℓ get
  ℓ + h·clip(∇_ℓ Σ_masked D(soft x), ±1), where masked positions enter D as softmax(ℓ) and
  revealed ones as one-hot tokens; h ramps from ``guidance_start`` to ``guidance_end``;
* late steps: **re-ranking** — M candidate transitions are drawn and one is *sampled* with
  probability softmax(Σ_l D(candidate)) (HEAD's rule: all positions, temperature 1).

RGAS is the ancestral loop (``ancestral.denoise``) with its own transition: it starts from
any ``x_init`` and shares the exact per-sequence cache. What is cached is the student's
*untilted* prediction p(x0 | x_t) of a row, which depends on that row's tokens only (a
time-agnostic student); the tilt depends on t, h and the discriminator, so it is recomputed
from the cached prediction at every tilting step, and a row re-enters the student only after
the chosen transition changed it. Samples are therefore the same with or without the cache.
The temperature divides the (tilted) log-probs right before each draw.

HEAD is the guided sampler of haoyangzheng-ai/didi-instruct's evaluation release (``algo.py``
at 7825a02); the defaults' other source tags are those of ``didi_seq.distill.didi_instruct.config``.

With h = 0 and M = 1 it consumes the random stream exactly like ``ancestral_sample`` and
returns the same samples. NFE counts student calls; discriminator calls (a tilting call is
a forward and a backward) are counted separately in ``SampleResult.aux_calls``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from ..errors import DidiError
from ..io.provenance import SourceInfo
from ..numbers import check_range
from ..options import option
from .ancestral import SamplerConfig, denoise, draw_reveal, fill, reveal_probability, start_states
from .contract import SampleResult, check_distribution

MAX_CANDIDATES = 1024


@dataclass(kw_only=True)
class RGASConfig(SamplerConfig):
    # [INIT] and code defaults; HEAD ships 30 → 40 for the 169M model
    guidance_start: float = option(0.2, "Tilting scale h at the first step.")
    guidance_end: float = option(1.0, "Tilting scale h at the last tilting step.")
    rerank_ratio: float = option(0.5, "Fraction of (late) steps that re-rank candidates.")  # ρ: the last half [HEAD, INIT]
    candidates: int = option(4, "Candidates M per re-ranking step.")  # M [HEAD]
    grad_clip: float = 1.0  # per-element clip of the tilting gradient [HEAD, LATE]
    teacher: str | None = option(None, "The teacher the discriminator was trained on (default: found by hash).")

    def validate(self) -> None:
        super().validate()
        if self.candidates <= 0:
            raise DidiError(f"--candidates must be a positive integer, got {self.candidates}")
        if self.candidates > MAX_CANDIDATES:  # every re-ranking step holds and scores batch × M sequences at once
            raise DidiError(f"--candidates {self.candidates} is more than RGAS scores at once (at most {MAX_CANDIDATES}; "
                            "the paper uses 4)")
        check_range("--rerank-ratio", self.rerank_ratio, 0.0, 1.0)
        check_range("--guidance-start", self.guidance_start)
        check_range("--guidance-end", self.guidance_end)
        check_range("grad_clip", self.grad_clip, 0, low_open=True)

    def record(self) -> dict:
        """The settings a sample record must carry to be reproducible."""
        return {**super().record(), **{k: getattr(self, k) for k in ("guidance_start", "guidance_end", "rerank_ratio", "candidates")}}

    def scale(self, k: int, tilt_steps: int) -> float:
        return self.guidance_start + (self.guidance_end - self.guidance_start) * k / max(1, tilt_steps - 1)


def tilt(lp: torch.Tensor, x: torch.Tensor, masked: torch.Tensor, disc, t: torch.Tensor, h: float, clip: float) -> torch.Tensor:
    """ℓ + h·clip(∇ℓ Σ_masked D), renormalised, for ``lp`` [n_masked, V] at the ``masked`` positions of
    ``x`` [B, L]; −∞ entries (mask, forbidden ids) stay −∞. D sees softmax(ℓ) at masked positions and
    one-hot tokens elsewhere."""
    ell = lp.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        soft = torch.nn.functional.one_hot(x, lp.shape[-1]).to(lp.dtype)
        soft = soft.index_put((masked,), torch.softmax(ell, -1))
        reward = (disc(soft, t) * masked).sum()
        (grad,) = torch.autograd.grad(reward, ell)
    grad = torch.nan_to_num(grad).clamp(-clip, clip)
    return torch.log_softmax(lp + h * grad, dim=-1)


class RGASTransition:
    """The ancestral step with RGAS's two changes; counts the discriminator calls."""

    def __init__(self, adapter, disc, cfg: RGASConfig):
        self.adapter, self.disc, self.cfg = adapter, disc, cfg
        self.tilt_steps = int(cfg.nfe * (1 - cfg.rerank_ratio))
        self.disc_calls = 0

    def __call__(self, k, x, masked, table, t, s, generator):
        cfg, num, dev = self.cfg, x.shape[0], x.device
        h = cfg.scale(k, self.tilt_steps)
        if k < self.tilt_steps and h != 0.0:
            tilted = tilt(table[masked], x, masked, self.disc, torch.full((num,), float(t), device=dev), h, cfg.grad_clip)
            self.disc_calls += 1
            log_probs_at = lambda reveal: tilted[reveal[masked]]  # noqa: E731
        else:
            log_probs_at = lambda reveal: table[reveal]  # noqa: E731
        p = reveal_probability(self.adapter.schedule, t, s)
        greedy = k == cfg.nfe - 1 and cfg.final == "greedy"
        m = cfg.candidates if k >= self.tilt_steps else 1
        cands = []
        for _ in range(m):
            reveal = draw_reveal(x, masked, p, generator)
            cands.append(fill(x, reveal, log_probs_at(reveal), generator, cfg.temperature, greedy))
        if m == 1:
            return cands[0]
        stacked = torch.stack(cands, 1)  # [B, M, L]
        scores = self.disc(stacked.flatten(0, 1), torch.full((num * m,), float(s), device=dev)).sum(-1).view(num, m)
        self.disc_calls += m
        check_distribution(scores.double(), "the discriminator's candidate scores")
        weights = torch.softmax(scores.double(), -1).cpu()  # drawn with the host generator
        choice = torch.multinomial(weights, 1, generator=generator).squeeze(-1).to(dev)
        return stacked[torch.arange(num, device=dev), choice]


@torch.no_grad()
def rgas_sample(student, disc, num: int, cfg: RGASConfig, generator: torch.Generator,
                on_step: Callable[[], None] | None = None, x_init: torch.Tensor | None = None) -> SampleResult:
    """``num`` RGAS samples from ``x_init`` (default: all-mask rows of ``cfg.length``)."""
    disc.eval()
    steps: list[RGASTransition] = []  # one per block (one without --block-length): their discriminator calls add up

    def transition_for(c: RGASConfig) -> RGASTransition:
        steps.append(RGASTransition(student, disc, c))
        return steps[-1]

    x = start_states(student, num, cfg.length) if x_init is None else x_init
    result = denoise(student, x, cfg, generator, transition_for, on_step)
    result.aux_calls = sum(step.disc_calls for step in steps)
    return result


@dataclass(frozen=True)
class RGASSampler:
    """RGAS; ``prepare`` loads the student's discriminator (bundled in the checkpoint, else saved beside it)."""

    name: str = "rgas"
    description: str = "reward-guided ancestral sampling with a DiDi-Instruct student's discriminator"
    config: type = RGASConfig
    domains: tuple[str, ...] | None = None
    disc: torch.nn.Module | None = None

    def prepare(self, adapter, domain, cfg: RGASConfig) -> RGASSampler:
        from ..models.networks import load_discriminator

        if domain.length_model is not None:  # the re-ranking score sums D over padding too: not validated there
            raise DidiError(f"--sampler rgas does not support the variable-length domain {domain.name!r} yet; use ancestral")
        disc = adapter.bundled_discriminator() or load_discriminator(SourceInfo.of(adapter.provenance).path, domain, teacher=cfg.teacher)
        return replace(self, disc=disc.to(adapter.device))

    def sample(self, adapter, x_init, cfg, generator, on_step=None) -> SampleResult:
        if self.disc is None:
            raise DidiError("rgas needs its discriminator: call prepare(adapter, domain, cfg) first")
        return rgas_sample(adapter, self.disc, len(x_init), cfg, generator, on_step, x_init=x_init)

