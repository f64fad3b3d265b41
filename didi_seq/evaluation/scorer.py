"""The scorer contract: what a plugin registers through ``register_scorers``.

A scorer is split in two so the expensive part runs once: ``per_sample`` turns records
into per-sample statistics (e.g. a judge's NLL sum and token count), ``aggregate``
turns any subset of those into one number. The harness aggregates per seed and pooled
without re-scoring, and scores real validation data the same way for a reference line.

Optional parts: ``compare`` makes a two-sample metric (MAUVE: samples against the real-data
reference, whose per-sample stats the harness passes); ``bootstrap`` asks the harness for a
percentile confidence interval by re-aggregating resampled stats; ``cache_key`` names the
scoring protocol so the reference's stats can be cached across calls; ``report`` turns the
scorer's provenance into lines for the command line (the CLI knows no scorer's keys).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Resamples of a bootstrap CI for scorers whose aggregate is cheap: 1000 percentile resamples put
# the 2.5 % / 97.5 % quantiles on 25 points each (Efron & Tibshirani 1993, §13.3 ask for ≥ 1000).
BOOTSTRAP_RESAMPLES = 1000


@dataclass
class EvalContext:
    domain: Any  # didi_seq.domain.Domain
    tokenizer: Any  # the domain tokenizer of the samples' checkpoint
    options: dict[str, Any] = field(default_factory=dict)  # e.g. {"judge": "gpt2-large", "batch_size": 8}
    info: dict[str, Any] = field(default_factory=dict)  # scorers record their provenance here (judge id, revision)
    advance: Callable[[int], None] | None = None  # progress: called with the number of samples just scored

    def tick(self, n: int) -> None:
        if self.advance is not None:
            self.advance(n)


@dataclass
class Scorer:
    name: str
    description: str
    per_sample: Callable[[list[dict], EvalContext], list[dict]]
    aggregate: Callable[[list[dict]], float]
    domains: tuple[str, ...] | None = None  # None: applies to every domain
    unit: str = ""
    # options that must be given for the scorer to run (e.g. a folding model); without them
    # the harness skips it unless it is asked for by name, which is then an error
    requires: tuple[str, ...] = ()
    # two-sample metric: compare(sample stats, reference stats) → float replaces aggregate, and the
    # scorer needs a reference set (it is skipped with --reference-samples 0)
    compare: Callable[[list[dict], list[dict]], float] | None = None
    bootstrap: int = 0  # resamples for a percentile bootstrap CI over samples (0: none, e.g. a costly aggregate)
    # the scoring protocol (judge id + revision, settings, a version) as a JSON-able dict: the reference's
    # per-sample stats are cached under it; None (or a None result, e.g. an unknown revision): re-scored
    cache_key: Callable[[EvalContext], dict | None] | None = None
    report: Callable[[dict], list[str]] | None = None  # provenance info → lines printed under the CLI's table
    # why the scorer cannot run in this environment (e.g. ``install_command("mauve")``), or None:
    # like unmet ``requires``, skipped unless asked for by name, which is then that error
    missing: Callable[[], str | None] | None = None
    # two-sample scorers: (samples, reference texts) → why a value at these sizes must not be trusted, or
    # None; shown with the value (the record's "caveat", a line under the CLI's table)
    caveat: Callable[[int, int], str | None] | None = None
