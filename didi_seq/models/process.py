"""The masked (absorbing-state) diffusion process.

Everything here is model-agnostic maths: the noise schedule α(t), the forward
corruption, the all-mask prior, the SUBS parameterisation and the MDLM NELBO.
Conventions follow MDLM (Sahoo et al. 2024): t ∈ [0, 1], t = 1 is (almost) all mask,
α(t) is the probability that a token is still clean at time t.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..devices import host_rand

NEG_INF = float("-inf")


@dataclass(frozen=True)
class LogLinearSchedule:
    """α(t) = 1 − (1 − ε)·t, MDLM's default; its NELBO weight −α'/(1−α) is exactly 1/t."""

    eps: float = 1e-3

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 - (1.0 - self.eps) * t

    def mask_prob(self, t: torch.Tensor) -> torch.Tensor:
        return 1.0 - self.alpha(t)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Total noise σ(t) = −log α(t): what time-conditioned DiTs take as input."""
        return -torch.log(self.alpha(t))

    def nelbo_weight(self, t: torch.Tensor) -> torch.Tensor:
        return (1.0 - self.eps) / self.mask_prob(t)

    def to_dict(self) -> dict:
        return {"name": "loglinear", "eps": self.eps}


def schedule_from_dict(d: dict) -> LogLinearSchedule:
    """A schedule from a checkpoint's config; ε must lie in (0, 1) or α(t) leaves [0, 1]."""
    if not isinstance(d, dict):
        raise ValueError(f"schedule must be an object like {{\"name\": \"loglinear\", \"eps\": 0.001}}, got {d!r}")
    if d.get("name", "loglinear") != "loglinear":
        raise ValueError(f"unknown noise schedule {d.get('name')!r}")
    eps = d.get("eps", 1e-3)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise ValueError(f"schedule eps must be a number in (0, 1), got {eps!r}")
    return LogLinearSchedule(eps=float(eps))


def prior(shape: tuple[int, ...], mask_id: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The all-mask sequence every sampler starts from."""
    return torch.full(shape, mask_id, dtype=torch.long, device=device)


def framed_prior(lengths: list[int], mask_id: int, bos_id: int, eos_id: int, pad_id: int,
                 width: int | None = None) -> torch.Tensor:
    """Variable-length start states ``[BOS] mask×n [EOS] pad…``, one row per length.

    The length is decided before sampling (a length model, or the user), as DPLM does: BOS,
    EOS and padding are never masked, so no sampler ever moves them.
    """
    width = width or max(lengths) + 2
    if max(lengths) + 2 > width or min(lengths) < 1:
        raise ValueError(f"lengths must lie in 1..{width - 2}, got {min(lengths)}..{max(lengths)}")
    x = torch.full((len(lengths), width), pad_id, dtype=torch.long)
    for i, n in enumerate(lengths):
        x[i, 0], x[i, 1:n + 1], x[i, n + 1] = bos_id, mask_id, eos_id
    return x


def corrupt(
    x0: torch.Tensor,
    t: torch.Tensor,
    schedule: LogLinearSchedule,
    mask_id: int,
    maskable: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    u: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mask each token independently with probability 1 − α(t) (t has one entry per row).

    ``maskable`` (bool, same shape as x0) excludes special/padding positions, which
    stay clean at every t. ``u`` (uniforms shaped like x0) replaces the draw from
    ``generator``, for ranks that each keep rows of a global draw (``distributed.RowNoise``).
    """
    p = schedule.mask_prob(t).to(torch.float32).view(-1, *([1] * (x0.dim() - 1)))
    if u is None:
        u = host_rand(x0.shape, generator, x0.device, dtype=torch.float32)
    hit = u < p.to(x0.device)
    if maskable is not None:
        hit &= maskable
    return torch.where(hit, torch.full_like(x0, mask_id), x0)


def forbid_tokens(logits: torch.Tensor, mask_id: int, never_emit: torch.Tensor | None = None) -> torch.Tensor:
    """fp32 copy of ``logits`` with −∞ on the mask and on ``never_emit`` ids: the denoiser
    may never predict them (the "zero masking probability" half of SUBS)."""
    logits = logits.float().clone()
    logits[..., mask_id] = NEG_INF
    if never_emit is not None and never_emit.numel():
        logits[..., never_emit] = NEG_INF
    return logits


def subs_log_probs(
    logits: torch.Tensor,
    x_t: torch.Tensor,
    mask_id: int,
    never_emit: torch.Tensor | None = None,
) -> torch.Tensor:
    """SUBS: log p(x0 | x_t) in fp32 with zero mass on the mask (and on ``never_emit``
    ids), and a one-hot carry-over at positions that are already unmasked."""
    logp = torch.log_softmax(forbid_tokens(logits, mask_id, never_emit), dim=-1)
    clean = x_t != mask_id
    if clean.any():
        carried = torch.full_like(logp[clean], NEG_INF)
        carried.scatter_(-1, x_t[clean].unsqueeze(-1), 0.0)
        logp[clean] = carried
    return logp


def masked_token_nll(logits_at_masked: torch.Tensor, targets: torch.Tensor, mask_id: int,
                     never_emit: torch.Tensor | None = None) -> torch.Tensor:
    """−log p(x0) at masked positions only (rows of logits already gathered there).

    Equivalent to SUBS followed by a gather, without materialising the carry-over rows:
    at unmasked positions SUBS makes the loss exactly zero, so they are simply skipped.
    """
    logits = forbid_tokens(logits_at_masked, mask_id, never_emit)
    return torch.nn.functional.cross_entropy(logits, targets, reduction="none")


def nelbo_terms(
    nll_at_masked: torch.Tensor,
    masked: torch.Tensor,
    t: torch.Tensor,
    schedule: LogLinearSchedule,
) -> torch.Tensor:
    """Per-row NELBO sums: Σ over masked positions of w(t)·(−log p(x0|x_t)).

    ``nll_at_masked`` holds one value per True entry of ``masked`` (row-major order).
    Divide the total by the number of real tokens for the per-token bound (nats/token).
    """
    per_pos = torch.zeros(masked.shape, dtype=torch.float32, device=masked.device)
    per_pos[masked] = nll_at_masked.float()
    return per_pos.sum(-1) * schedule.nelbo_weight(t.float())


def stratified_times(batch: int, generator: torch.Generator | None = None,
                     t_min: float = 1e-3) -> torch.Tensor:
    """Antithetic (stratified) t on [t_min, 1]: lower-variance NELBO estimate (MDLM)."""
    u = torch.rand((), generator=generator)
    t = (u + torch.arange(batch) / batch) % 1.0
    return t_min + (1.0 - t_min) * t
