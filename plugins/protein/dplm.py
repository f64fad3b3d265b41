"""DPLM (and any ESM-2 masked LM) as a didi-seq teacher, through transformers' ``EsmForMaskedLM``.

DPLM's network (``byprot``'s ``EsmForDPLM``) subclasses ``EsmForMaskedLM`` with the stock
parameter names, so ``airkingbd/dplm_150m|650m|3b`` (hub id in the local cache, or a local
directory) load straight into transformers — no ``byprot`` dependency (it pins
transformers 4.39 / torch 2.2 and fails to import on Python 3.11: bytedance/dplm,
``requirements.txt`` and ``src/byprot/models/dplm/modules/dplm_modeling_esm.py``).

Kept from the checkpoint's config: ESM's *token dropout* (mask embeddings zeroed, the rest
rescaled by 0.88 / (1 − observed mask ratio)), which DPLM inherits and which its logits
depend on. Attention ignores ``<pad>`` (``attention_mask = ids != pad``), as DPLM does.
DPLM has no time input; the adapter is time-agnostic, so the sampler's exact cache applies.
"""

from __future__ import annotations

import copy
import pickle
import re
from pathlib import Path

import torch

from didi_seq import CheckpointError, DidiError, LogLinearSchedule, SourceInfo, TeacherAdapter, TeacherFormat, TeacherSpec

from .alphabet import ProteinTokenizer, require_transformers

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
# DPLM drops the contact head (``contact_head = None``): absent from its checkpoints, unused for logits.
OPTIONAL_KEYS = ("esm.contact_head.",)
# index/frequency buffers that older transformers versions saved: recomputed, never learned
BUFFER_SUFFIXES = ("position_ids", "inv_freq")


class EsmTeacher(TeacherAdapter):
    """An ``EsmForMaskedLM`` behind the TeacherAdapter: fp32 logits, padding-aware attention."""

    def __init__(self, model, spec: TeacherSpec, provenance: SourceInfo | dict):
        self.model = model.eval()
        self.spec = spec
        self.schedule = LogLinearSchedule()
        self.provenance = SourceInfo.of(provenance)

    def _ids(self, x_t: torch.Tensor) -> torch.Tensor:
        if x_t.is_floating_point():
            raise DidiError("ESM/DPLM teachers take token ids only: soft-token input (RGAS) is not supported for them")
        return x_t

    @torch.no_grad()
    def logits(self, x_t, t=None):
        ids = self._ids(x_t)
        return self.model(input_ids=ids, attention_mask=(ids != self.spec.pad_id).long()).logits.float()

    def student_copy(self) -> torch.nn.Module:
        """Trainable copy with dropout off: the policy whose log-probs the policy gradient
        records must be the one that sampled (ESM configs may carry dropout 0.1)."""
        student = copy.deepcopy(self.model)
        student.train()
        for module in student.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
            elif isinstance(getattr(module, "dropout", None), float):
                module.dropout = 0.0
        student.config.hidden_dropout_prob = student.config.attention_probs_dropout_prob = 0.0
        for p in student.parameters():
            p.requires_grad_(True)
        return student

    architecture = "esm"

    def denoiser(self, model: torch.nn.Module, bf16: bool = True):
        from .esm_distill import esm_denoiser

        return esm_denoiser(model, self.spec.mask_id, list(self.spec.never_emit), self.spec.pad_id, bf16)

    def discriminator(self, trainable_blocks: int, bf16: bool = True) -> torch.nn.Module:
        from .esm_distill import EsmDiscriminator

        return EsmDiscriminator(self.model, trainable_blocks, self.schedule, self.spec.pad_id, bf16)

    def trunk_features(self, block: int, bf16: bool = True):
        from .esm_distill import esm_block_features

        return esm_block_features(self.model, block, self.spec.pad_id, bf16, self.provenance.id or "this teacher")


def _read_config(path: Path) -> dict | None:
    from didi_seq.io.untrusted import read_json

    try:
        config = read_json(path / "config.json", "config")
    except DidiError:
        return None
    return config if isinstance(config, dict) else None


def is_esm_masked_lm(path: Path) -> bool:
    """A transformers ESM directory that is a language model (not ESMFold)."""
    path = path.parent if path.is_file() else path
    config = _read_config(path)
    return bool(config) and config.get("model_type") == "esm" and not config.get("is_folding_model", False)


def is_esm_student(path: Path) -> bool:
    """A didi-seq checkpoint (or run directory) whose network is ESM: a student distilled from DPLM."""
    from didi_seq.io.checkpoint import resolve_checkpoint_dir

    path = path.parent if path.is_file() else path
    try:
        config = _read_config(resolve_checkpoint_dir(path))
    except DidiError:
        return False
    return bool(config) and config.get("format") == "didi-seq" and config.get("architecture") == "esm"


def _weights_id(path: Path) -> tuple[str, str]:
    from didi_seq.io.checkpoint import file_sha256

    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return name, file_sha256(path / name)
    raise CheckpointError(f"{path} has config.json but no weights ({' or '.join(WEIGHT_FILES)})")


def _check_vocab(path: Path, tok: ProteinTokenizer) -> None:
    vocab = path / "vocab.txt"
    if vocab.is_file():
        from didi_seq.io.untrusted import read_text

        tokens = tuple(line.strip() for line in read_text(vocab, "vocabulary", error=CheckpointError).splitlines() if line.strip())
        if tokens != tok.tokens:
            raise CheckpointError(f"{vocab} differs from the ESM alphabet this domain uses (fair-esm ESM-1b)")


def check_esm_size(cfg, shapes: dict[str, tuple[int, ...]], source) -> None:
    """The weights must hold the layers and widths an ESM config claims, checked from tensor shapes
    before the network is built: a config claiming a billion layers fails here, not after allocating them."""
    layers = {m.group(1) for k in shapes if (m := re.search(r"encoder\.layer\.(\d+)\.", k))}
    emb = next((v for k, v in shapes.items() if k.endswith("embeddings.word_embeddings.weight")), None)
    ffn = next((v for k, v in shapes.items() if k.endswith("encoder.layer.0.intermediate.dense.weight")), None)
    claims = {"num_hidden_layers": (cfg.num_hidden_layers, len(layers)),
              "vocab_size x hidden_size": ((cfg.vocab_size, cfg.hidden_size), emb),
              "intermediate_size x hidden_size": ((cfg.intermediate_size, cfg.hidden_size), ffn)}
    wrong = [f"{name} {want} (weights: {have})" for name, (want, have) in claims.items() if want != have]
    if wrong:
        raise CheckpointError(f"{source}: config.json does not describe these weights: {'; '.join(wrong)}")


def load_esm_teacher(path: Path, domain=None, **_) -> EsmTeacher:
    """Load a DPLM/ESM-2 masked LM directory strictly (only the unused contact head may be missing)."""
    if domain is not None and domain.name != "protein":
        raise CheckpointError(f"{path} is an ESM/DPLM protein checkpoint; pass --domain protein")
    require_transformers("loading a DPLM/ESM teacher")
    from transformers import EsmForMaskedLM
    from transformers.utils import logging as hf_logging

    path = path.parent if path.is_file() else path
    tok = ProteinTokenizer()
    _check_vocab(path, tok)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    if (path / "model.safetensors").is_file():  # a .bin file cannot be inspected without unpickling it
        from transformers import EsmConfig

        from didi_seq.io.untrusted import safetensors_shapes

        try:
            esm_cfg = EsmConfig.from_pretrained(str(path))
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot load {path} as an ESM masked LM: {str(e).strip()[:200]}") from None
        shapes = {k.removeprefix("esm."): v for k, v in safetensors_shapes(path / "model.safetensors", CheckpointError).items()}
        check_esm_size(esm_cfg, shapes, path)
    try:
        model, info = EsmForMaskedLM.from_pretrained(str(path), output_loading_info=True, dtype=torch.float32)
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as e:  # the last: a pickle weights_only refuses
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"cannot load {path} as an ESM masked LM: {first}") from None
    missing = [k for k in info.get("missing_keys", []) if not k.startswith(OPTIONAL_KEYS) and not k.endswith(BUFFER_SUFFIXES)]
    unexpected = [k for k in info.get("unexpected_keys", []) if not k.endswith(BUFFER_SUFFIXES)]
    problems = {"missing": missing, "unexpected": unexpected,
                "wrong shape": [str(k) for k in info.get("mismatched_keys", [])]}
    if any(problems.values()):
        shown = "; ".join(f"{len(v)} {k} keys: {', '.join(v[:3])}" for k, v in problems.items() if v)
        raise CheckpointError(f"{path} does not match EsmForMaskedLM ({shown}); random weights would survive, refusing")
    cfg = model.config
    if cfg.vocab_size != tok.vocab_size or cfg.mask_token_id != tok.mask_id or cfg.pad_token_id != tok.pad_id:
        raise CheckpointError(f"{path}: vocab {cfg.vocab_size} / mask {cfg.mask_token_id} / pad {cfg.pad_token_id} "
                              f"do not match the ESM alphabet ({tok.vocab_size} / {tok.mask_id} / {tok.pad_id})")
    spec = TeacherSpec(vocab_size=tok.vocab_size, mask_id=tok.mask_id, max_length=int(cfg.max_position_embeddings) - 2,
                       never_emit=list(tok.never_emit), never_mask=list(tok.never_mask), pad_id=tok.pad_id)
    weights, sha = _weights_id(path)
    name = path.parent.parent.name.replace("models--", "").replace("--", "/") if path.parent.name == "snapshots" else path.name
    provenance = SourceInfo.build(name=name, id=f"{name.split('/')[-1]}@{sha[:12]}", model_sha256=sha, path=str(path),
                                  format="esm-masked-lm", weights_file=weights, domain="protein",
                                  token_dropout=bool(getattr(cfg, "token_dropout", False)),
                                  revision=path.name if path.parent.name == "snapshots" else None,
                                  architectures=getattr(cfg, "architectures", None))
    return EsmTeacher(model, spec, provenance)


def load_esm_student(path: Path, domain=None, **_) -> EsmTeacher:
    """A didi-seq checkpoint whose network is an ``EsmForMaskedLM`` (a DiDi-Instruct student of a DPLM teacher)."""
    require_transformers("loading an ESM student")
    from transformers import EsmConfig, EsmForMaskedLM

    from didi_seq.io.checkpoint import load_checkpoint, load_state_strict

    ckpt = load_checkpoint(path)
    try:
        config = EsmConfig.from_dict(ckpt.config["model"])
        spec = TeacherSpec(**ckpt.config["spec"])
        spec.validate()
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt.path}/config.json is incomplete or invalid ({e})") from None
    check_esm_size(config, {k: tuple(v.shape) for k, v in ckpt.state.items()}, ckpt.path)
    model = EsmForMaskedLM(config)
    load_state_strict(model, ckpt.state, str(ckpt.path))
    prov = SourceInfo.of_checkpoint(ckpt, format="didi-seq esm",
                                    tokenizer_file=str(ckpt.tokenizer_file) if ckpt.tokenizer_file else None)
    return EsmTeacher(model, spec, prov)


ESM_STUDENT_FORMAT = TeacherFormat(
    name="esm-student",
    description="didi-seq checkpoint of an ESM network (a DiDi-Instruct student distilled from a DPLM/ESM teacher)",
    detect=is_esm_student,
    load=load_esm_student,
)

DPLM_FORMAT = TeacherFormat(
    name="dplm",
    description="DPLM / ESM-2 masked LM (transformers EsmForMaskedLM directory or hub id, e.g. airkingbd/dplm_150m)",
    detect=is_esm_masked_lm,
    load=load_esm_teacher,
)
