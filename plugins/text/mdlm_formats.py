"""Teacher formats of the published OWT models, registered by the text plugin.

* ``mdlm-hf``: ``kuleshov-group/mdlm-owt`` (``config.json`` with ``model_type: mdlm`` +
  ``model.safetensors``); its remote code needs flash-attn, so only the weights are used.
* ``lightning-ckpt``: MDLM/DUO ``.ckpt`` files. ``--ema`` (default, what the papers
  evaluate) zips ``ema.shadow_params``, a positional list, onto the parameters in
  registration order (DiDi-Instruct's ``.ckpt`` has a ``student_ema.*`` module instead);
  ``--raw`` takes ``state_dict``'s ``backbone.*``.
* ``sdtt``: one revision of ``jdeschena/sdtt`` (``model.safetensors`` + the OmegaConf
  config dumped as ``config.json`` by PyTorchModelHubMixin).
* ``didi-instruct-hf``: ``haoyangzheng/didi-instruct-small``: the student
  (``model.safetensors``) and its discriminator (``discriminator.safetensors``).

Every format ends in ``mdlm_dit.build_teacher``: strict loading into the native DiT,
provenance, and the GPT-2 (+ mask) tokenizer named for the text domain.
"""

from __future__ import annotations

from pathlib import Path

from didi_seq import CheckpointError, TeacherFormat
from didi_seq.io.hub import download_command

from . import mdlm_dit

WEIGHTS, CONFIG, DISCRIMINATOR = "model.safetensors", "config.json", "discriminator.safetensors"
DIDI_TRAINABLE_BLOCKS = 4  # DiDi-Instruct unfreezes the discriminator's last 4 blocks


def _dir(path: Path) -> Path:
    return path.parent if path.is_file() else path


def _json(path: Path) -> dict | None:
    """A JSON object from a (size-bounded, regular) file, or None: detection never reads without bound."""
    from didi_seq import DidiError
    from didi_seq.io.untrusted import read_json

    try:
        data = read_json(path, "config")
    except (OSError, DidiError):
        return None
    return data if isinstance(data, dict) else None


def _names_directory(path: Path) -> bool:
    """The directory formats answer for a directory or a file of theirs, not for a .ckpt beside them."""
    return path.is_dir() or path.name in (WEIGHTS, CONFIG, DISCRIMINATOR)


def _foreign_config(path: Path) -> dict | None:
    """config.json of a directory that is not a didi-seq checkpoint."""
    cfg = _json(_dir(path) / CONFIG)
    return None if cfg is None or cfg.get("format") == "didi-seq" else cfg


def _require(directory: Path, *names: str) -> None:
    """Name the files a (partly downloaded) checkpoint lacks, and the command that fetches them."""
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        in_cache = any(part.startswith("models--") for part in directory.absolute().parts)
        repo = mdlm_dit.display_name(directory) if in_cache else "<repo>"
        rev = mdlm_dit.hub_revision(directory / missing[0])
        raise CheckpointError(f"{directory} lacks {', '.join(missing)}; download the complete checkpoint "
                              f"(`{download_command(repo, *missing, revision=rev)}`) and retry")


def _safetensors(path: Path) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is truncated or not a safetensors file ({e})") from None


def _find_key(tree, key: str):
    """First value under ``key`` anywhere in a nested config (OmegaConf dumps nest freely)."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for v in tree.values():
            found = _find_key(v, key)
            if found is not None:
                return found
    return None


def _hydra_fields(cfg: dict) -> dict | None:
    """MDLM's Hydra ``model`` group (hidden_size, n_blocks, n_heads, cond_dim, length)."""
    model = _find_key(cfg, "model")
    if not isinstance(model, dict) or "n_blocks" not in model:
        return None
    return {"hidden": model.get("hidden_size"), "layers": model.get("n_blocks"), "heads": model.get("n_heads"),
            "cond_dim": model.get("cond_dim"), "length": model.get("length"),
            "vocab_size": _find_key(cfg, "vocab_size"), "time_conditioning": _find_key(cfg, "time_conditioning")}


# --- MDLM on the Hugging Face hub ----------------------------------------------------------

def _is_mdlm_hf(path: Path) -> bool:
    cfg = _foreign_config(path) if _names_directory(path) else None
    return cfg is not None and (cfg.get("model_type") == "mdlm" or "MDLM" in (cfg.get("architectures") or []))


def _load_mdlm_hf(path: Path, bf16: bool = True, **_):
    d = _dir(path)
    _require(d, WEIGHTS)
    cfg = _foreign_config(d)
    declared = {"vocab_size": cfg.get("vocab_size"), "hidden": cfg.get("hidden_dim"), "layers": cfg.get("n_blocks"),
                "heads": cfg.get("n_heads"), "cond_dim": cfg.get("cond_dim"), "length": cfg.get("model_length"),
                "time_conditioning": cfg.get("time_conditioning")}
    state = mdlm_dit.backbone_of(_safetensors(d / WEIGHTS))
    arch = mdlm_dit.dit_config(state, str(d / WEIGHTS), declared)
    # the model card (huggingface.co/kuleshov-group/mdlm-owt) does not say whether these are EMA weights
    return mdlm_dit.build_teacher(state, arch, d / WEIGHTS, "mdlm-hf", "as published", bf16)


# --- SDTT revisions and the DiDi-Instruct student (PyTorchModelHubMixin) --------------------

def _is_mixin(path: Path, with_discriminator: bool) -> bool:
    cfg = _foreign_config(path) if _names_directory(path) else None
    return (cfg is not None and _hydra_fields(cfg) is not None
            and (_dir(path) / DISCRIMINATOR).is_file() == with_discriminator)


def _load_mixin(path: Path, fmt: str, bf16: bool, extra: dict | None = None):
    d = _dir(path)
    _require(d, WEIGHTS)
    state = mdlm_dit.backbone_of(_safetensors(d / WEIGHTS))
    arch = mdlm_dit.dit_config(state, str(d / WEIGHTS), _hydra_fields(_foreign_config(d)))
    return mdlm_dit.build_teacher(state, arch, d / WEIGHTS, fmt, "as published", bf16, extra)


def _load_sdtt(path: Path, bf16: bool = True, **_):
    return _load_mixin(path, "sdtt", bf16)


def _load_didi(path: Path, bf16: bool = True, **_):
    adapter = _load_mixin(path, "didi-instruct-hf", bf16, {"discriminator": str(_dir(path) / DISCRIMINATOR)})
    adapter.discriminator_factory = lambda bf16=True: load_didi_discriminator(_dir(path), adapter.schedule, bf16)
    return adapter


def didi_discriminator_state(state: dict) -> dict:
    """DiDi's names (backbone copy + ``output_layer.main`` with legacy spectral norm) → the
    names of ``didi_seq.models.networks.Discriminator`` (parametrised spectral norm)."""
    legacy = {"weight_orig": "parametrizations.weight.original", "weight_u": "parametrizations.weight.0._u",
              "weight_v": "parametrizations.weight.0._v", "bias": "bias"}
    out = {}
    for key, value in state.items():
        if key.startswith("output_layer.main."):
            index, _, leaf = key[len("output_layer.main."):].partition(".")
            out[f"head.{index}.{legacy.get(leaf, leaf)}"] = value
        elif key != mdlm_dit.ROTARY_KEY:
            out[f"trunk.{key}"] = value
    return out


def load_didi_discriminator(directory: Path, schedule, bf16: bool = True):
    """The released discriminator, every weight from its own file (its frozen trunk is not
    assumed to equal any teacher: DiDi copies the backbone before loading weights)."""
    from didi_seq import DiT
    from didi_seq.io.checkpoint import load_state_strict
    from didi_seq.models.networks import Discriminator

    source = directory / DISCRIMINATOR
    _require(directory, DISCRIMINATOR)
    raw = mdlm_dit.backbone_of(_safetensors(source))
    trunk = {k: v for k, v in raw.items() if not k.startswith("output_layer.")}
    arch = mdlm_dit.dit_config(trunk, str(source), _hydra_fields(_foreign_config(directory) or {}))
    mdlm_dit.check_rotary(trunk, arch.hidden // arch.heads, str(source))
    disc = Discriminator(DiT(arch), min(DIDI_TRAINABLE_BLOCKS, arch.layers), schedule, bf16=bf16)
    load_state_strict(disc, didi_discriminator_state(raw), str(source))
    return disc.eval()


# --- Lightning .ckpt (MDLM, DUO's MDLM baseline) ----------------------------------------------

def _is_lightning(path: Path) -> bool:
    return path.is_file() and path.suffix == ".ckpt"


def _ema_state(ckpt: dict, backbone: dict, arch, source: str) -> dict:
    """``shadow_params`` follow ``chain(backbone.parameters(), noise.parameters())``; the
    log-linear noise has none, so the list must match the DiT's parameters one to one."""
    import torch

    from didi_seq import DiT

    ema = ckpt.get("ema")
    shadow = ema.get("shadow_params") if isinstance(ema, dict) else None
    if not shadow:
        raise CheckpointError(f"{source} holds no EMA weights (no ema.shadow_params); pass --raw to use the raw weights")
    with torch.device("meta"):
        params = list(DiT(arch).named_parameters())
    if len(shadow) != len(params):
        raise CheckpointError(f"{source}: EMA holds {len(shadow)} tensors but the model has {len(params)} parameters "
                              "(a noise schedule with parameters, or a different architecture); pass --raw")
    for (name, p), t in zip(params, shadow, strict=True):
        if not isinstance(t, torch.Tensor) or tuple(t.shape) != tuple(p.shape):
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise CheckpointError(f"{source}: EMA entry for {name} has shape {got}, the model {tuple(p.shape)}")
    return {**backbone, **{name: t for (name, _), t in zip(params, shadow, strict=True)}}


def _saved_hydra_config(ckpt: dict, path: Path) -> dict:
    """The Hydra config Lightning saved (``hyper_parameters.config``), as plain data; refuses
    a non-SUBS model: DUO's uniform-state model shares the weight layout, but its id 50257
    is an added [PAD], not a mask (s-sahoo/duo, ``get_tokenizer`` in ``dataloader.py``)."""
    from didi_seq.io.safe_load import plain

    hp = plain(ckpt.get("hyper_parameters"))
    config = hp.get("config") if isinstance(hp, dict) else None
    config = config if isinstance(config, dict) else {}
    param = _find_key(config, "parameterization")
    if param is not None and param != "subs":
        name = _find_key(config.get("algo") or {}, "name")
        raise CheckpointError(f"{path} is a {name or param!r} model (parameterization {param!r}), not a masked "
                              "(SUBS) teacher; didi-seq distils MDLM-style teachers only (in DUO, id 50257 is [PAD])")
    return config


def _load_lightning(path: Path, bf16: bool = True, use_ema: bool = True, **_):
    from didi_seq.io.safe_load import load_pickle_checkpoint

    ckpt = load_pickle_checkpoint(path)
    raw = ckpt.get("state_dict")
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} has no state_dict: not a Lightning checkpoint")
    ema = ckpt.get("ema") if isinstance(ckpt.get("ema"), dict) else {}
    # DiDi-Instruct's own .ckpt keeps its EMA student as a module (student_ema.*), not a list
    student_ema = mdlm_dit.strip_wrappers(raw, prefix="student_ema.")
    if use_ema and not ema.get("shadow_params") and student_ema:
        backbone, use_ema, weights = student_ema, False, "ema (student_ema)"
    else:
        backbone, weights = mdlm_dit.strip_wrappers(raw, prefix="backbone."), "ema" if use_ema else "raw"
    if not backbone:
        raise CheckpointError(f"{path}: no backbone.* weights in its state_dict (keys start {sorted(raw)[:3]})")
    hydra = _saved_hydra_config(ckpt, path)
    sidecar = _foreign_config(path) or {}
    declared = (_hydra_fields(hydra) or _hydra_fields(sidecar)
                or {"heads": sidecar.get("n_heads"), "length": sidecar.get("model_length")})
    arch = mdlm_dit.dit_config(backbone, str(path), declared)
    state = _ema_state(ckpt, backbone, arch, str(path)) if use_ema else backbone
    extra = {"global_step": ckpt.get("global_step"), "ema_decay": ema.get("decay"), "ema_updates": ema.get("num_updates")}
    return mdlm_dit.build_teacher(state, arch, path, "lightning-ckpt", weights, bf16, extra)


FORMATS = (
    TeacherFormat("mdlm-hf", "MDLM on the HF hub (kuleshov-group/mdlm-owt: config.json + model.safetensors)",
                  _is_mdlm_hf, _load_mdlm_hf),
    TeacherFormat("didi-instruct-hf", "DiDi-Instruct student + discriminator (haoyangzheng/didi-instruct-small)",
                  lambda p: _is_mixin(p, with_discriminator=True), _load_didi),
    TeacherFormat("sdtt", "SDTT hub revision (jdeschena/sdtt@REVISION: model.safetensors + OmegaConf config.json)",
                  lambda p: _is_mixin(p, with_discriminator=False), _load_sdtt),
    TeacherFormat("lightning-ckpt", "MDLM/DUO Lightning .ckpt (--ema default, or --raw)", _is_lightning, _load_lightning),
)
