"""The sampler contract: what a plugin registers through ``register_samplers``.

A sampler turns start states into samples with a teacher or student adapter. The core's
``ancestral`` and ``rgas`` and the protein plugin's ``native`` register through the same
hook as a third-party sampler; ``didi_seq.sampling.generate.generate`` is the one place that picks
one, builds its start states, batches, and writes the records.

A sampler offers:

* ``name``, ``description``, ``domains`` (None: every domain);
* ``config``: a dataclass (a ``SamplerOptions`` subclass) carrying ``nfe``, ``temperature``
  and every other option of the sampler; ``record()`` names the settings a sample record
  must carry beyond ``nfe``/``temperature``. A field declared with
  ``didi_seq.option(default, help, flag=None)`` is also a flag of ``didi-seq sample``
  (``candidates`` → ``--candidates``, a bool → ``--x/--no-x``), listed under the sampler in
  ``sample --help`` and refused with any other ``--sampler`` (``didi_seq/options.py``);
* optionally ``prepare(adapter, domain, cfg) -> Sampler``: load auxiliary networks (RGAS's
  discriminator) once and return a sampler ready to run; without it the sampler runs as is;
* ``sample(adapter, x_init, cfg, generator, on_step) -> SampleResult``: ``x_init`` [B, L]
  are the start states (all-mask rows, framed rows of a variable-length domain, rows that
  begin with a prompt), draws come from the CPU ``generator``, ``on_step()`` is called once per step.

Fixed positions: the positions of ``x_init`` that hold the mask are the sampler's to fill; every
other one (a prompt, BOS/EOS, padding) is fixed, and the sampler returns it unchanged and never
masks it on the way (``fixed_positions``). ``generate`` checks the first half for every sampler,
a plugin's included (``check_fixed_kept``); the shared loop (``ancestral.denoise``) only ever
hands its transitions positions masked at the start.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Protocol, runtime_checkable

import torch

from ..errors import DidiError

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


@dataclass(kw_only=True)
class SamplerOptions:
    """What every sampler takes: the step count and the temperature of the x0 prediction."""

    nfe: int
    # T divides the x0 prediction's logits before every draw (log_softmax(ℓ / T)); 1 leaves the
    # log-probs untouched. The matched-entropy protocol sweeps it (arXiv 2610.06648, yandex-research/dlm-mmd,
    # mmd/owt_pareto.py).
    temperature: float = 1.0
    length: int | None = None  # fixed-length domains: sequence length (default: the model's max length)

    def validate(self) -> None:
        check_nfe(self.nfe)
        if not (isinstance(self.temperature, int | float) and math.isfinite(self.temperature) and self.temperature > 0):
            raise DidiError(f"--temperature must be a finite number > 0, got {self.temperature}")
        if self.length is not None and self.length <= 0:
            raise DidiError(f"--length must be a positive integer, got {self.length}")

    def record(self) -> dict:
        """Settings a sample record carries besides ``nfe`` and ``temperature`` (none here)."""
        return {}

    @classmethod
    def from_options(cls, sampler: str, options: dict[str, Any]) -> SamplerOptions:
        """This config from keyword options; one this config does not declare is an error naming it
        (an option of another sampler is never silently dropped)."""
        names = [f.name for f in fields(cls) if f.init]  # init=False fields are derived, never given
        unknown = [k for k in options if k not in names]
        if unknown:
            raise DidiError(f"sampler {sampler!r} takes no option {', '.join(map(repr, unknown))} "
                            f"(its options: {', '.join(names)})")
        return cls(**options)


@dataclass
class SampleResult:
    """What a sampler's ``sample`` returns: the tokens and what they cost."""

    tokens: torch.Tensor  # [N, L]
    network_calls: int  # batched forward invocations
    rows_evaluated: int  # sequences pushed through the network, summed over calls
    nfe: int
    wall_clock_s: float
    aux_calls: int = 0  # calls of auxiliary networks (RGAS's discriminator), reported beside NFE


@runtime_checkable
class Sampler(Protocol):
    name: str
    description: str
    config: type  # a SamplerOptions subclass
    domains: tuple[str, ...] | None  # None: every domain

    def sample(self, adapter, x_init: torch.Tensor, cfg, generator: torch.Generator,
               on_step: Callable[[], None] | None = None): ...


def prepared(sampler: Sampler, adapter, domain, cfg) -> Sampler:
    """The sampler with its auxiliary networks loaded (``prepare`` is optional)."""
    prepare = getattr(sampler, "prepare", None)
    return sampler if prepare is None else prepare(adapter, domain, cfg)


def tempered(log_probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """log_softmax(ℓ / T) in float64; at T = 1 the log-probs are returned untouched (bit-identical draws).
    −∞ entries (the mask, forbidden ids) stay −∞."""
    if temperature == 1.0:
        return log_probs
    out = torch.log_softmax(log_probs.double() / temperature, dim=-1)
    check_distribution(out, f"the x0 prediction at --temperature {temperature:g}")
    return out


class BadDistribution(DidiError):
    """A draw's distribution is NaN or empty: the network or its options produced no usable probabilities."""


def check_distribution(log_probs: torch.Tensor, what: str = "the x0 prediction") -> None:
    """Every row of ``log_probs`` [..., V] is a usable distribution: no NaN and some token with
    positive probability. Why: an inverse-CDF draw or an arg-max over NaN (NaN weights, a
    temperature so small that ℓ / T overflows) or over all −∞ (a never_emit that lists every
    token) still returns an index, so the sample would be written as if it were genuine."""
    if log_probs.numel() == 0:
        return
    lp = log_probs.detach()
    if torch.isnan(lp).any():
        raise BadDistribution(f"sampling failed: {what} holds NaN probabilities (NaN weights in the checkpoint, or a "
                              "--temperature so small that logits / T overflow); no sample was written")
    if lp.shape[-1] == 0 or bool((lp == float("-inf")).all(-1).any()):
        raise BadDistribution(f"sampling failed: {what} gives every token probability zero (every token forbidden, "
                              "e.g. by never_emit, or a --temperature that underflows); no sample was written")


def check_samples_complete(tokens: torch.Tensor, mask_id: int) -> None:
    """No sample still holds the mask token after its last step. Why: a sampler that went wrong (or a
    plugin's that stops early) would otherwise write literal ``<mask>`` residues as a sample."""
    left = (tokens == mask_id).any(-1)
    if bool(left.any()):
        raise BadDistribution(f"sampling failed: {int(left.sum())} of {len(tokens)} samples still hold the mask token "
                              "after the last step; no sample was written")


def fixed_positions(x_init: torch.Tensor, mask_id: int) -> torch.Tensor:
    """bool [B, L]: the positions of the start states a sampler must not change (all but the masked ones)."""
    return x_init != mask_id


def check_fixed_kept(x_init: torch.Tensor, tokens: torch.Tensor, mask_id: int, sampler: str) -> None:
    """The samples keep every fixed position of their start states. Why: a sampler that overwrote a prompt
    token (or BOS/EOS) would write a sample that claims to continue a prompt it did not see."""
    fixed = fixed_positions(x_init, mask_id)
    changed = fixed & (tokens.to(x_init.device) != x_init)
    if bool(changed.any()):
        raise BadDistribution(f"sampling failed: sampler {sampler!r} changed {int(changed.sum())} fixed positions (the "
                              "prompt, BOS/EOS or padding) of its start states; no sample was written")
