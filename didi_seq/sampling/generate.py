"""One sampling pipeline for the CLI and every benchmark.

``load_model`` picks the checkpoint (default: the domain's embedded student, or its
teacher while it ships none) and moves it to a device; ``generate`` picks the registered
sampler, loads its auxiliary networks (``prepare``), builds the start states (all-mask
rows, or framed rows of lengths drawn from a variable-length domain's length model, each
after its prompt when there is one: ``prompt.py``), samples in batches from one seeded
generator (each batch cut to its own width, padded back), checks that every sampler kept the
fixed positions (``contract.check_fixed_kept``), reports progress, and returns the JSONL
records with every setting in them.

    model = load_model(get_domain("text"), "teacher")
    cfg = sampler_config("ancestral", "text", nfe=16, temperature=0.9)
    out = generate(model, cfg, num_samples=8, seed=0)   # out.records, out.result
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..devices import bf16_in_effect, module_device
from ..errors import DidiError
from .ancestral import from_states, initial_states, start_states
from .blocks import with_block_count
from .contract import Sampler, SampleResult, SamplerOptions, check_fixed_kept, check_samples_complete, prepared
from .prompt import Prompt, encode_prompts, prompted_states


@dataclass
class Model:
    """A loaded checkpoint and what sampling needs beside it."""

    domain: Any  # didi_seq.domain.Domain
    adapter: Any  # didi_seq.models.teacher.TeacherAdapter
    tokenizer: Any


@dataclass
class Generation:
    result: SampleResult  # tokens [N, L] and the run's costs
    records: list[dict]  # one JSONL record per sample (didi_seq.io.samples.sample_records)
    config: SamplerOptions
    sampler: str


# One call holds every sample, its records and its start states in memory (about 10 kB per 256-token
# text sample): a million is far beyond any evaluation, and a typo'd count fails before allocating.
MAX_SAMPLES = 1 << 20


def check_num_samples(num_samples: int) -> None:
    from ..errors import DidiError

    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise DidiError(f"--num-samples must be a positive integer, got {num_samples!r}")
    if num_samples > MAX_SAMPLES:
        raise DidiError(f"--num-samples {num_samples} is more than one call holds in memory (at most {MAX_SAMPLES}); "
                        "split the job over several --seed values")


def default_checkpoint(domain) -> tuple[str, str | None]:
    """('student' | 'teacher', a note for the user or None): the embedded student, else the teacher."""
    if domain.embedded_student is not None and Path(domain.embedded_student).exists():
        return "student", None
    if domain.embedded_teacher is None or not Path(domain.embedded_teacher).exists():
        return "teacher", None  # no note: loading fails with how to train or pass one
    return "teacher", f"domain {domain.name!r} ships no distilled student yet; sampling the embedded teacher"


# The sampler a checkpoint is meant to be sampled with, as a Hugging Face model ships its generation_config.json:
# a student validated with a sampler (e.g. the embedded text student with ``dilated``) carries that choice.
GENERATION_CONFIG = "generation_config.json"


def checkpoint_dir(domain, checkpoint: str | None) -> Path | None:
    """The local directory ``checkpoint`` names ('teacher', 'student', a path; None: the default), or None
    (a hub id, a single file)."""
    if checkpoint is None:
        checkpoint, _ = default_checkpoint(domain)
    path = {"student": domain.embedded_student, "teacher": domain.embedded_teacher}.get(checkpoint, checkpoint)
    return Path(path) if path and Path(path).is_dir() else None


def default_sampler(domain, checkpoint: str | None) -> tuple[str, dict[str, Any]]:
    """(sampler, its options) from the checkpoint's ``generation_config.json`` ({"sampler": NAME,
    "sampler_options": {...}}); ("ancestral", {}) for a checkpoint without one. Read before the weights
    load, so a bad file or flag fails fast."""
    folder = checkpoint_dir(domain, checkpoint)
    path = None if folder is None else folder / GENERATION_CONFIG
    if path is None or not path.is_file():
        return "ancestral", {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DidiError(f"{path} is not a readable JSON file ({e})") from None
    sampler = data.get("sampler") if isinstance(data, dict) else None
    options = data.get("sampler_options", {}) if isinstance(data, dict) else None
    if not isinstance(sampler, str) or not isinstance(options, dict):
        raise DidiError(f"{path} must hold {{\"sampler\": NAME, \"sampler_options\": {{...}}}}")
    return sampler, options


def load_model(domain, checkpoint: str | None = None, *, device: torch.device | str = "cpu", use_ema: bool = True,
               on_note: Callable[[str], None] | None = None) -> Model:
    """``checkpoint``: 'teacher', 'student', a path or a hub id; None → ``default_checkpoint``."""
    from ..models.loading import load_teacher

    if checkpoint is None:
        checkpoint, note = default_checkpoint(domain)
        if note and on_note:
            on_note(note)
    adapter, tokenizer = load_teacher(checkpoint, domain, use_ema=use_ema)
    adapter.to(device)
    return Model(domain, adapter, tokenizer)


def trunk_precision(adapter) -> str:
    """What the network's trunk computed in, for the sample record: a bf16 request is honoured only
    on GPUs and on CPUs with native bf16 (``devices.cpu_has_native_bf16``)."""
    device = module_device(adapter.model) if isinstance(getattr(adapter, "model", None), torch.nn.Module) else None
    requested = bool(getattr(adapter, "bf16", False))
    return "bf16-autocast" if device is not None and bf16_in_effect(device.type, requested) else "fp32"


def sampler_config(sampler: str, domain_name: str, **options) -> SamplerOptions:
    """The validated config of a registered sampler; an option it does not declare is an error."""
    from ..registry.plugins import get_sampler

    cfg = get_sampler(sampler, domain_name).config.from_options(sampler, options)
    cfg.validate()
    return cfg


def ready_sampler(model: Model, sampler: str, cfg: SamplerOptions) -> Sampler:
    """The registered sampler with its auxiliary networks loaded; pass it to ``generate`` to load them once
    for many calls."""
    from ..registry.plugins import get_sampler

    return prepared(get_sampler(sampler, model.domain.name), model.adapter, model.domain, cfg)


def generate(model: Model, cfg: SamplerOptions, *, sampler: str | Sampler = "ancestral", num_samples: int = 4,
             seed: int = 0, lengths: str | None = None, batch_size: int = 32,
             on_step: Callable[[int, int], None] | None = None, prompt: Prompt | None = None) -> Generation:
    """``num_samples`` samples with ``sampler`` (a registered name, or a sampler from ``ready_sampler``).

    ``lengths``: a variable-length domain's length spec (None: its fitted length model); drawn from
    their own generator, so the sampler's random stream is the same whatever the lengths. In a
    fixed-length domain one integer N: the positions generated, after the prompt when there is one
    (None: the rows of ``cfg.length``, default the model's, as before).
    ``on_step(done, total)`` is called after every step of every batch.
    ``prompt``: a text, several texts or token ids (``prompt.encode_prompts``): ``num_samples`` samples
    for each, in prompt order, each the prompt (after BOS) followed by its generated answer.
    """
    from ..errors import DidiError
    from ..io.samples import sample_records
    from ..limits import check_int, check_rows, check_seed
    from ..registry.plugins import get_sampler

    check_num_samples(num_samples)
    check_seed(seed, "seed")
    check_int("batch_size", batch_size)
    chosen = get_sampler(sampler, model.domain.name) if isinstance(sampler, str) else sampler
    if not isinstance(cfg, chosen.config):
        raise DidiError(f"sampler {chosen.name!r} takes a {chosen.config.__name__}, not a {type(cfg).__name__}")
    cfg.validate()
    adapter = model.adapter
    prompts = None if prompt is None else encode_prompts(prompt, model.tokenizer, adapter.spec)
    row_prompts = None if prompts is None else [ids for ids in prompts for _ in range(num_samples)]
    rows = num_samples * len(prompts or [None])
    check_num_samples(rows)
    if lengths is not None and getattr(cfg, "length", None) is not None:
        raise DidiError(f"both length={cfg.length} (the whole row) and lengths={lengths!r} (the positions to generate) "
                        "given; pass lengths only")
    run = prepared(chosen, model.adapter, model.domain, cfg) if isinstance(sampler, str) else sampler
    x_init, length_info = initial_states(model.domain, model.tokenizer, adapter.spec, rows, seed, lengths,
                                         None if row_prompts is None else list(map(len, row_prompts)))
    # the fp64 p(x0) table of a batch: L × V float64s per row, before any row is allocated
    width = (cfg.length or adapter.spec.max_length) if x_init is None else x_init.shape[1]
    check_rows("--batch-size", min(batch_size, rows), 8 * width * adapter.spec.vocab_size, "the sampler's p(x0) table")
    if x_init is None:
        x_init = start_states(adapter, rows, cfg.length)
    if row_prompts is not None:
        x_init = prompted_states(x_init, row_prompts, model.tokenizer.bos_id, adapter.spec.mask_id)
    cfg = with_block_count(cfg, x_init, adapter.spec.mask_id)  # one block count for every batch, checked up front
    total, done = cfg.nfe * -(-rows // batch_size), 0

    def step() -> None:
        nonlocal done
        done += 1
        on_step(done, total)

    result = from_states(lambda x, gen: run.sample(adapter, x, cfg, gen, step if on_step else None),
                         x_init, seed, batch_size, adapter.spec.pad_id)
    check_samples_complete(result.tokens, adapter.spec.mask_id)  # every sampler's, plugins' included
    check_fixed_kept(x_init, result.tokens, adapter.spec.mask_id, run.name)  # the prompt, BOS/EOS, padding
    extra = {run.name: cfg.record()} if cfg.record() else {}
    extra["trunk_precision"] = trunk_precision(adapter)
    if length_info:
        extra["length_model"] = length_info
    records = sample_records(model.domain, model.tokenizer, result, seed=seed, sampler=run.name,
                             final=getattr(cfg, "final", "ancestral"), temperature=cfg.temperature,
                             provenance=adapter.provenance, extra=extra or None)
    for i, (rec, ids) in enumerate(zip(records, row_prompts or [], strict=False)):
        rec["prompt"] = prompt_record(model, i // num_samples, ids)
    return Generation(result, records, cfg, run.name)


def prompt_record(model: Model, index: int, ids: list[int]) -> dict:
    """What a sample record says of its prompt: which one, its tokens (``tokens[1:1 + num_tokens]``, after
    BOS) and its text as the sample's ``decoded`` shows it."""
    return {"index": index, "num_tokens": len(ids), "text": model.domain.readable(model.tokenizer.decode(ids))}
