"""The Python API: one object for a teacher or student, as Hugging Face users expect it.

    model = MaskedDiffusionModel.from_pretrained("student", domain="text")
    records = model.sample(nfe=16, num_samples=4, seed=0)
    result = model.evaluate(records, metrics=["entropy"])
    model.save_pretrained("my-student")

A thin layer over what the CLI runs (``didi_seq.sampling.generate``, ``didi_seq.evaluation.harness``,
``didi_seq.io.checkpoint``): the same records, the same numbers for the same seed. Documented
(and tested block by block) in docs/python-api.md.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .errors import DidiError
from .io.provenance import SourceInfo

# evaluate()'s options beyond its named arguments: what the scorers read (the CLI's evaluate flags)
EVALUATE_OPTIONS = ("judge_batch_size", "judge_context", "plddt_model", "pdb_dir", "fold_batch_size", "mauve_clusters",
                    "device")


def _require(name: str, value, types: type | tuple, what: str) -> None:
    """A TypeError naming the argument: the API's callers get Python's error for a wrong type, at the call."""
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    if not isinstance(value, types):
        raise TypeError(f"{name} must be {what}, got {type(value).__name__} {value!r}"[:200])


def _refuse_unknown(call: str, given, known) -> None:
    """A misspelt keyword (``temprature=``) is a TypeError naming the known ones, never silently ignored."""
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise TypeError(f"{call}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                        f"it takes: {', '.join(sorted(known))}")


def _domain_of(src: str, domain):
    """A Domain from ``domain`` (a name or a Domain), else from a native checkpoint's config.json."""
    from .domain import Domain
    from .registry.plugins import get_domain

    if domain is not None:
        _require("domain", domain, (str, Domain), "a domain name (str) or a Domain")
        return get_domain(domain) if isinstance(domain, str) else domain
    from .io.checkpoint import read_config, resolve_checkpoint_dir

    if src not in ("teacher", "student") and Path(src).exists():
        name = read_config(resolve_checkpoint_dir(src)).get("domain")
        if name:
            return get_domain(name)
    raise DidiError(f"cannot tell the domain of {src!r}; pass domain= (see `didi-seq plugins`)")


class MaskedDiffusionModel:
    """A loaded masked-diffusion teacher or distilled student, its domain and tokenizer."""

    def __init__(self, model):
        self._model = model  # didi_seq.sampling.generate.Model

    @classmethod
    def from_pretrained(cls, src: str | Path, domain=None, *, device: str = "cpu", use_ema: bool = True) -> MaskedDiffusionModel:
        """``src``: 'teacher' / 'student' (the domain's embedded ones), a checkpoint or run directory, a
        file another format reads (.ckpt), or a hub id (``owner/name[@revision]``, from the local cache).
        ``domain``: a name or Domain; optional for didi-seq checkpoints, whose config names it."""
        from .devices import resolve_device
        from .sampling.generate import load_model

        _require("src", src, (str, Path), "a name, path or hub id (str or Path)")
        _require("device", device, str, "a device name (str)")
        _require("use_ema", use_ema, bool, "True or False")
        src = str(src)
        dom = _domain_of(src, domain)
        return cls(load_model(dom, src, device=resolve_device(device), use_ema=use_ema))

    @property
    def domain(self):
        return self._model.domain

    @property
    def tokenizer(self):
        return self._model.tokenizer

    @property
    def provenance(self) -> SourceInfo:
        """Where the model came from (its format loader's record; ``to_dict()`` for the plain dict)."""
        return SourceInfo.of(self._model.adapter.provenance)

    @property
    def id(self) -> str:
        """name@weight-hash, as recorded next to every sample."""
        return self.provenance.id or "?"

    def __repr__(self) -> str:
        return f"MaskedDiffusionModel({self.id!r}, domain={self.domain.name!r})"

    def sample(self, nfe: int = 16, num_samples: int = 4, seed: int = 0, *, sampler: str | None = None,
               temperature: float = 1.0, lengths: str | int | None = None, batch_size: int = 32,
               prompt: str | list[str] | list[int] | list[list[int]] | None = None, **options) -> list[dict]:
        """Sample records, exactly those ``didi-seq sample --output`` writes (``record["decoded"]`` is the sample).
        ``sampler``: a registered name; None: the checkpoint's ``generation_config.json`` choice, else ancestral.
        ``lengths``: a fixed-length domain (text): one integer N, the positions generated (the answer's length after a
        prompt, else the row's); a variable-length domain (protein): ``--lengths``'s spec ("100", "100,200", a FASTA path).
        ``prompt``: a text, a list of texts, or token ids (a list of ints, or a list of such lists); its tokens stay
        fixed and ``num_samples`` answers follow each prompt, the prompt included in every sample.
        ``options``: the sampler's own (``final="greedy"``, ``cache=False``, ``block_length=``, RGAS's ``candidates=``, …)."""
        from dataclasses import fields

        from .registry.plugins import get_sampler
        from .sampling.generate import default_sampler, generate, sampler_config

        for name, value in (("nfe", nfe), ("num_samples", num_samples), ("seed", seed), ("batch_size", batch_size)):
            _require(name, value, int, "an integer")
        _require("temperature", temperature, (int, float), "a number")
        if lengths is not None:
            _require("lengths", lengths, (str, int), "a length (int) or a length spec (str)")
            lengths = str(lengths)
        if prompt is not None:
            _require("prompt", prompt, (str, list, tuple), "a text, a list of texts, or token ids")
        if sampler is None:  # the checkpoint's own choice (generation_config.json), else ancestral
            sampler, defaults = default_sampler(self.domain, self.provenance.path)
            options = {**defaults, **options}
        _require("sampler", sampler, str, "a sampler name (str)")
        config = get_sampler(sampler, self.domain.name).config
        _refuse_unknown("sample", options, [f.name for f in fields(config) if f.init and f.name not in ("nfe", "temperature")])
        cfg = sampler_config(sampler, self.domain.name, nfe=nfe, temperature=temperature, **options)
        return generate(self._model, cfg, sampler=sampler, num_samples=num_samples, seed=seed, lengths=lengths,
                        batch_size=batch_size, prompt=prompt).records

    def evaluate(self, samples: list[dict] | list[str | Path], *, metrics: list[str] | None = None, judge: str | None = None,
                 reference_samples: int = 0, **options) -> dict:
        """The evaluation record ``didi-seq evaluate --output`` writes, for records or JSONL paths of this domain."""
        from .evaluation.harness import evaluate

        _refuse_unknown("evaluate", options, EVALUATE_OPTIONS)
        _require("reference_samples", reference_samples, int, "an integer")
        if metrics is not None and (isinstance(metrics, str) or not all(isinstance(m, str) for m in metrics)):
            raise TypeError(f"metrics must be a list of metric names, got {metrics!r}"[:200])
        return evaluate(self.domain, samples, judge=judge, metrics=metrics, reference_samples=reference_samples,
                        options=options or None)

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write a didi-seq checkpoint directory (weights, config, tokenizer, provenance, model card) that
        ``from_pretrained`` and ``--checkpoint`` load; a student's discriminator files are copied along."""
        from .io.checkpoint import checkpoint_config, save_checkpoint
        from .models.networks import DISC_CONFIG, DISC_FILE
        from .sampling.generate import GENERATION_CONFIG

        _require("directory", directory, (str, Path), "a directory path (str or Path)")
        adapter, directory = self._model.adapter, Path(directory)
        if directory.exists() and not directory.is_dir():
            raise DidiError(f"{directory} exists and is not a directory; save_pretrained writes a new directory")
        from .io.outputs import is_checkpoint_dir

        for d in directory.resolve().parents:
            if is_checkpoint_dir(d):
                raise DidiError(f"{directory} lies inside the checkpoint directory {d}; save elsewhere")
        config_of = getattr(getattr(getattr(adapter, "model", None), "config", None), "to_dict", None)
        if config_of is None:
            raise DidiError(f"save_pretrained: a {adapter.architecture} model cannot be written as a didi-seq checkpoint")
        if directory.exists() and any(directory.iterdir()):
            raise DidiError(f"{directory} exists and is not empty; choose a new directory")
        directory.parent.mkdir(parents=True, exist_ok=True)
        prov = SourceInfo.of(adapter.provenance).to_dict()
        kind = prov.get("kind") or "teacher"
        # clones: tied weights (an ESM head shares its embedding) share memory, which safetensors refuses
        weights = {k: v.detach().clone() for k, v in adapter.model.state_dict().items()}
        config, weights = adapter.checkpoint_layout(
            checkpoint_config(self.domain.name, kind, config_of(), adapter.spec, adapter.schedule,
                              architecture=adapter.architecture), weights)
        provenance = {k: v for k, v in prov.items() if k not in ("path", "id", "model_sha256", "tokenizer_file")}
        provenance.update({"name": prov.get("name") or f"{self.domain.name}-{kind}", "kind": kind, "saved_from": self.id})
        source = Path(prov["path"]) if prov.get("path") and Path(prov["path"]).is_dir() else None

        def extra(tmp: Path) -> None:
            # a student's discriminator (for --sampler rgas) and the sampler it is meant for
            for name in (DISC_FILE, DISC_CONFIG, GENERATION_CONFIG):
                if source is not None and (source / name).is_file():
                    shutil.copyfile(source / name, tmp / name)

        if directory.exists():
            directory.rmdir()  # empty: atomic_write_dir renames the finished checkpoint into its place
        save_checkpoint(directory, weights, config, json.loads(json.dumps(provenance, default=str)),
                        self.tokenizer.to_json(), extra=extra)
        return directory
