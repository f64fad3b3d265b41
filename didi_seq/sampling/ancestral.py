"""Ancestral sampling for masked diffusion, with exact fp64 draws and a per-sequence cache.

One step from t to s < t: every masked position is revealed with probability
(α_s − α_t) / (1 − α_t) and, if revealed, takes a token drawn from p(x0 | x_t).
This is exactly MDLM's ancestral update (the categorical over {tokens ∝ p(x0)(α_s−α_t),
mask ∝ 1−α_s}) but only draws tokens where something is revealed, which keeps the
sampler cheap next to the network (docs/machine-notes.md §3).

Why float64: Gumbel-max or inverse-CDF draws in fp32 lower the effective temperature
and flatter perplexity (Zheng et al. 2024); all uniforms and CDFs here are fp64.

Only masked positions get log-probs (``masked_log_probs``): SUBS carries every other
position over, so the output head, which dominates at V = 50k, runs where it is read.

The cache: for a time-agnostic teacher p(x0 | x_t) depends on x_t only, so a row in
which no token changed since its last evaluation reuses its cached log-probs; only the
rows that changed are sent through the network. Samples are identical with or without
the cache (same random draws), only the number of network calls differs.

The loop (``denoise``) is written once: a sampler in this family supplies its transition
x_t → x_s given the cached prediction (``ancestral_transition``; RGAS in ``rgas.py``), so
every such sampler gets the cache, start states ``x_init`` and the temperature T, which
divides the prediction's logits before each draw (``contract.tempered``; T = 1: untouched).
It hands a transition only the positions masked in ``x_init``, so a prompt (and BOS/EOS,
padding) is never changed (``contract.fixed_positions``), and with ``--block-length`` it runs
the transition block by block (``blocks.py``: LLaDA's semi-autoregressive sampling).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..devices import host_rand
from ..errors import DidiError
from ..models.process import prior
from ..options import option
from .blocks import answer_blocks, block_plan
from .contract import SampleResult, SamplerOptions, check_distribution, tempered


@dataclass(kw_only=True)
class SamplerConfig(SamplerOptions):
    """Options of the ancestral sampler (RGAS extends them)."""

    final: str = option("ancestral", "Last step: ancestral draw or greedy arg-max (greedy: arg-max for tokens "
                                     "revealed at the last step).")
    cache: bool = option(True, "The exact p(x0) cache (--no-cache: every step re-runs the network on every row).")
    schedule: str = option("linear", "Time grid of the steps: linear (MDLM) | cosine | poly:P (MaskGIT's schedules; "
                                     "see didi_seq.sampling.ancestral.time_grid).")
    block_length: int | None = option(None, "Semi-autoregressive sampling (LLaDA): generate the answer in blocks of "
                                            "this many positions, left to right, each with an equal share of --nfe "
                                            "(see didi_seq.sampling.blocks).")
    # the call's block count, fixed by ``generate`` for every batch (None: from the batch); derived, never an option
    blocks: int | None = field(default=None, init=False)

    def validate(self) -> None:
        super().validate()
        if self.final not in ("ancestral", "greedy"):
            raise DidiError(f"--final must be 'ancestral' or 'greedy', got {self.final!r}")
        check_schedule(self.schedule)
        for name in ("block_length", "blocks"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
                raise DidiError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")

    def record(self) -> dict:
        """The time grid and the blocks, when they are not the defaults (default records stay as they were)."""
        out = {} if self.schedule == "linear" else {"schedule": self.schedule}
        if self.block_length:
            out.update(block_length=self.block_length, blocks=self.blocks)
        return out


def draw_categorical(log_probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per row of ``log_probs`` [N, V] by inverse CDF in float64 (uniforms from the host generator)."""
    return categorical_from_uniform(log_probs, host_rand(log_probs.shape[0], generator, log_probs.device))


def categorical_from_uniform(log_probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw per row of ``log_probs`` [N, V] from given float64 uniforms ``u`` [N]
    (or [N, K]: K draws per row from one CDF, shaped like ``u``)."""
    p = log_probs.double().exp()
    cdf = p.cumsum(-1)
    k = u.numel() // max(len(p), 1)
    idx = torch.searchsorted(cdf, u.reshape(len(p), k) * cdf[:, -1:], right=True).view(u.shape)
    return idx.clamp_max(p.shape[-1] - 1)


SCHEDULES = ("linear", "cosine", "poly:P")


def check_schedule(schedule: str) -> None:
    """One error line for a schedule name ``time_grid`` does not know."""
    if schedule in ("linear", "cosine"):
        return
    name, _, power = str(schedule).partition(":")
    try:
        ok = name == "poly" and math.isfinite(float(power)) and float(power) > 0
    except ValueError:
        ok = False
    if not ok:
        raise DidiError(f"--schedule must be linear, cosine or poly:P with a power P > 0 (e.g. poly:2), got {schedule!r}")


def time_grid(nfe: int, schedule: str = "linear") -> torch.Tensor:
    """t_0 = 1 > … > t_nfe = 0; the last step reaches α = 1 and reveals every mask.

    With progress r = k/nfe: ``linear`` t = 1 − r (MDLM's grid); ``cosine`` t = cos(πr/2) and
    ``poly:P`` t = 1 − r^P, MaskGIT's masking schedules (arXiv 2202.04200 §3.2: cosine, square = poly:2,
    cubic = poly:3), which reveal few positions early and many late. Under the log-linear schedule
    α = 1 − t the expected masked fraction after step k is t_k, so these name how fast masks fall.
    """
    check_schedule(schedule)
    if schedule == "linear":
        return torch.linspace(1.0, 0.0, nfe + 1, dtype=torch.float64)
    r = torch.arange(nfe + 1, dtype=torch.float64) / nfe
    grid = torch.cos(math.pi / 2 * r) if schedule == "cosine" else 1.0 - r ** float(schedule.split(":")[1])
    grid[0], grid[-1] = 1.0, 0.0
    return grid


class Prediction:
    """p(x0 | x_t) at the masked positions of every row, through the exact per-sequence cache.

    ``table`` [B, L, V] holds valid log-probs at the ``held`` positions: those asked for when their
    row was last evaluated. A row is sent through the network again only if it changed since or a
    step asks for a position it does not hold (a new block), or always without the cache or for a
    time-conditioned network. Counts the calls it makes.
    """

    def __init__(self, adapter, num: int, use_cache: bool):
        self.adapter, self.use_cache = adapter, use_cache and not adapter.spec.time_conditioned
        self.held: torch.Tensor | None = None  # bool [B, L]
        self.table: torch.Tensor | None = None
        self.calls = self.rows = 0

    def update(self, x: torch.Tensor, masked: torch.Tensor, t: float) -> torch.Tensor:
        if self.held is None:
            self.held = torch.zeros_like(masked)
        need = (masked & ~self.held).any(-1) if self.use_cache else masked.any(-1)
        if need.any():  # p(x0) only where it can be read: the asked positions of changed rows
            n = int(need.sum())
            lp = self.adapter.masked_log_probs(x[need], torch.full((n,), t, device=x.device), masked[need])
            if self.table is None:
                self.table = torch.empty((*x.shape, lp.shape[-1]), dtype=lp.dtype, device=x.device)
            self.table[masked & need[:, None]] = lp
            self.held[need] = masked[need]
            self.calls, self.rows = self.calls + 1, self.rows + n
        return self.table

    def changed(self, rows: torch.Tensor) -> None:
        """Rows whose tokens changed in the last step: their cached log-probs are stale."""
        if self.held is not None:
            self.held[rows] = False


def reveal_probability(schedule, t: torch.Tensor, s: torch.Tensor) -> float:
    """P(a masked position is revealed on the step t → s) = (α_s − α_t) / (1 − α_t)."""
    a_t, a_s = schedule.alpha(t), schedule.alpha(s)
    return float((a_s - a_t) / (1 - a_t))


def draw_reveal(x: torch.Tensor, masked: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """bool [B, L]: masked positions revealed on this step (one fp64 uniform per position)."""
    return masked & (host_rand(x.shape, generator, x.device) < p)


def fill(x: torch.Tensor, reveal: torch.Tensor, log_probs: torch.Tensor, generator: torch.Generator,
         temperature: float = 1.0, greedy: bool = False) -> torch.Tensor:
    """A copy of ``x`` whose ``reveal`` positions take tokens drawn from ``log_probs`` [n_revealed, V]
    (tempered by T), or their arg-max when ``greedy``."""
    x = x.clone()
    if reveal.any():
        check_distribution(log_probs)
        x[reveal] = log_probs.argmax(-1) if greedy else draw_categorical(tempered(log_probs, temperature), generator)
    return x


Transition = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator],
                      torch.Tensor]


def ancestral_transition(adapter, cfg: SamplerConfig) -> Transition:
    """The ancestral step k from t to s: reveal each masked position with probability
    (α_s − α_t)/(1 − α_t), draw revealed tokens from p(x0 | x_t) (the cached ``table``)."""

    def step(k, x, masked, table, t, s, generator):
        reveal = draw_reveal(x, masked, reveal_probability(adapter.schedule, t, s), generator)
        greedy = k == cfg.nfe - 1 and cfg.final == "greedy"
        return fill(x, reveal, table[reveal], generator, cfg.temperature, greedy)

    return step


@torch.no_grad()
def denoise(adapter, x_init: torch.Tensor, cfg: SamplerConfig, generator: torch.Generator,
            transition_for: Callable[[SamplerConfig], Transition],
            on_step: Callable[[], None] | None = None) -> SampleResult:
    """The loop every ancestral-style sampler runs: ``cfg.nfe`` steps, each
    ``transition(k, x, masked, table, t, s, generator) -> x_s`` given p(x0 | x_t) at the masked
    positions (``Prediction``, with the exact cache). A step with nothing masked costs nothing.

    ``transition_for(cfg)`` makes the sampler's transition for one run of ``cfg.nfe`` steps on the
    time grid: the whole call, or one block of ``--block-length`` (``blocks.block_plan``: K blocks of
    nfe/K steps each, the block's positions as ``masked``). Only positions masked in ``x_init`` are
    ever handed to a transition: the others (a prompt, BOS/EOS, padding) are fixed."""
    cfg.validate()
    x = x_init.to(adapter.device, copy=True)  # a variable-length batch arrives cut to its own width
    block_of = answer_blocks(x == adapter.spec.mask_id, getattr(cfg, "block_length", None))
    blocks, block_cfg = block_plan(cfg, block_of >= 0)
    prediction = Prediction(adapter, x.shape[0], cfg.cache)
    grid = time_grid(block_cfg.nfe, cfg.schedule)
    start = time.perf_counter()
    for block in range(blocks):
        transition, in_block = transition_for(block_cfg), block_of == block
        for k in range(block_cfg.nfe):
            t, s = grid[k], grid[k + 1]
            masked = (x == adapter.spec.mask_id) & in_block
            if masked.any():  # otherwise the block is complete and the step costs nothing
                table = prediction.update(x, masked, float(t))
                x_s = transition(k, x, masked, table, t, s, generator)
                prediction.changed((x_s != x).any(-1))
                x = x_s
            if on_step:
                on_step()
    return SampleResult(x.cpu(), prediction.calls, prediction.rows, cfg.nfe, time.perf_counter() - start)


def start_states(adapter, num: int, length: int | None = None) -> torch.Tensor:
    """All-mask rows of ``length`` (default: the adapter's max length) for a fixed-length domain."""
    return prior((num, length or adapter.spec.max_length), adapter.spec.mask_id, adapter.device)


def ancestral_sample(teacher, num: int, cfg: SamplerConfig, generator: torch.Generator,
                     x_init: torch.Tensor | None = None, on_step: Callable[[], None] | None = None) -> SampleResult:
    """``num`` ancestral samples from ``x_init`` (default: all-mask rows of ``cfg.length``)."""
    x = start_states(teacher, num, cfg.length) if x_init is None else x_init
    return denoise(teacher, x, cfg, generator, lambda c: ancestral_transition(teacher, c), on_step)


@dataclass(frozen=True)
class AncestralSampler:
    """MDLM's ancestral sampler with fp64 draws and the exact per-sequence cache."""

    name: str = "ancestral"
    description: str = "exact ancestral sampling (fp64 categorical draws, per-sequence p(x0) cache)"
    config: type = SamplerConfig
    domains: tuple[str, ...] | None = None

    def sample(self, adapter, x_init, cfg, generator, on_step=None) -> SampleResult:
        return denoise(adapter, x_init, cfg, generator, lambda c: ancestral_transition(adapter, c), on_step)


def in_batches(draw: Callable[[int, torch.Generator], SampleResult], num: int, seed: int, batch_size: int) -> SampleResult:
    """``num`` samples as ``draw(n, generator)`` batches from one seeded generator; costs are summed."""
    gen = torch.Generator().manual_seed(seed)
    parts = [draw(min(batch_size, num - start), gen) for start in range(0, num, batch_size)]
    return SampleResult(torch.cat([r.tokens for r in parts]), sum(r.network_calls for r in parts),
                        sum(r.rows_evaluated for r in parts), parts[0].nfe, sum(r.wall_clock_s for r in parts),
                        sum(r.aux_calls for r in parts))


def from_states(draw: Callable[[torch.Tensor, torch.Generator], SampleResult], x_init: torch.Tensor, seed: int,
                batch_size: int, pad_id: int | None) -> SampleResult:
    """``draw(states, generator)`` over batches of the start states ``x_init`` [N, L].

    Each batch is cut to its own width first (columns that are padding in all its rows carry
    nothing under a key-padding mask), so a batch of short proteins does not pay for the longest
    one; the samples are padded back to L so every batch concatenates.
    """
    from ..domain.data import trim_padding

    chunks, width = iter(x_init.split(batch_size)), x_init.shape[1]

    def one(n: int, gen: torch.Generator) -> SampleResult:
        res = draw(trim_padding(next(chunks), pad_id), gen)
        if res.tokens.shape[1] < width:
            res.tokens = torch.nn.functional.pad(res.tokens, (0, width - res.tokens.shape[1]), value=pad_id)
        return res

    return in_batches(one, len(x_init), seed, batch_size)


def sample_batches(teacher, num: int, cfg: SamplerConfig, seed: int, batch_size: int = 32,
                   on_step: Callable[[], None] | None = None, x_init: torch.Tensor | None = None) -> SampleResult:
    """Ancestral samples in batches (see ``from_states``); ``x_init`` [num, L] gives each row its
    start state (variable-length domains: ``initial_states``), else every row starts all-mask."""
    x = start_states(teacher, num, cfg.length) if x_init is None else x_init
    return from_states(lambda xb, gen: AncestralSampler().sample(teacher, xb, cfg, gen, on_step), x, seed, batch_size,
                       teacher.spec.pad_id)


def initial_states(domain, tokenizer, spec, num: int, seed: int, lengths: str | None = None,
                   prompt_lengths: list[int] | None = None) -> tuple[torch.Tensor | None, dict]:
    """Start states for a variable-length domain, with the length model's description.

    Lengths come from the domain's length model (``lengths`` is its spec: None for the fitted
    default, one length, or a list) and are drawn from their own generator, so the sampler's
    random stream is the same whatever the lengths. Fixed-length domains: all-mask rows of
    ``fixed_row_length`` when ``lengths`` is given, else (None, {}) (rows of the config's length).
    ``prompt_lengths`` (one per row): room for a prompt before each row's masks (``prompt.py``
    writes it there); the drawn length is then the answer's, within what the longest prompt leaves.
    """
    if domain.length_model is None:
        if lengths is None:
            return None, {}
        width = fixed_row_length(domain.name, lengths, spec.max_length, prompt_lengths)
        return prior((num, width), spec.mask_id), {"kind": "fixed", "length": answer_length(domain.name, lengths)}
    reserved = list(prompt_lengths or [0] * num)
    room = spec.max_length - 2 - max(reserved, default=0)
    if room < 1:
        raise DidiError(f"the prompt has {max(reserved)} tokens: longer than the {spec.max_length - 3} the model's rows "
                        f"of {spec.max_length} hold with BOS, EOS and at least one position to generate")
    model = domain.length_model(lengths, room)
    drawn = model.draw(num, torch.Generator().manual_seed(seed + 7919))
    from ..models.process import framed_prior

    x = framed_prior([n + p for n, p in zip(drawn, reserved, strict=True)], spec.mask_id, tokenizer.bos_id,
                     tokenizer.eos_id, tokenizer.pad_id)
    return x, model.describe()


def answer_length(domain_name: str, lengths: str) -> int:
    """N of ``--lengths N`` in a fixed-length domain: one positive integer (every row has the same width,
    so a list or a length model has nothing to choose between)."""
    text = str(lengths).strip()
    try:
        n = int(text)
    except ValueError:
        why = "only one length applies there" if "," in text else "it takes one integer"
        raise DidiError(f"--lengths {lengths!r}: domain {domain_name!r} has fixed-length rows, so {why}: the number "
                        "of positions to generate (e.g. --lengths 128)") from None
    if n < 1:
        raise DidiError(f"--lengths {lengths!r}: the number of positions to generate must be at least 1")
    return n


def fixed_row_length(domain_name: str, lengths: str, max_length: int, prompt_lengths: list[int] | None) -> int:
    """The row width for ``--lengths N`` in a fixed-length domain: N, or with prompts [BOS] + the prompt + N,
    nothing after (LLaDA's ``gen_length``, ML-GSAI/LLaDA ``generate.py``). Rows of one call share their
    width, so prompts of different token counts cannot each get exactly N."""
    n = answer_length(domain_name, lengths)
    prompt = sorted(set(prompt_lengths or []))
    if len(prompt) > 1:
        raise DidiError(f"--lengths {n} with prompts of {prompt[0]} to {prompt[-1]} tokens: in domain {domain_name!r} "
                        "all rows have one width, so each answer gets N positions only when the prompts have the same "
                        "number of tokens; sample such prompts in separate calls")
    width = n + (1 + prompt[0] if prompt else 0)
    if width > max_length:
        row = f"[BOS] + the prompt's {prompt[0]} tokens + {n} = {width}" if prompt else str(n)
        raise DidiError(f"--lengths {n}: a row of {row} positions is longer than the model's {max_length}")
    return width
