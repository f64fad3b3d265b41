"""MDLM-family weights → didi-seq's native DiT: key table, architecture, provenance.

MDLM's DiT (and SDTT's ``dit_orig``, DUO's and DiDi-Instruct's copies of it) uses the
same parameter names as ``didi_seq.models.dit.DiT``; only wrappers differ: Lightning
prefixes ``backbone.``, HF nests another ``backbone.``, torch.compile adds
``_orig_mod.``. The rotary ``inv_freq`` buffer is stored but derived here, so it is
checked, not loaded. Loading is strict (``load_state_strict``): a missing or mis-shaped
tensor is an error, never a silently random weight (see ``didi_seq.io.checkpoint.load_state_strict``).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from didi_seq import CheckpointError

from . import gpt2

MDLM_LENGTH = 1024  # all published OWT models: 1024-token wrapped blocks
ROTARY_KEY = "rotary_emb.inv_freq"
# published sizes whose head count is not hidden/64 (SDTT's large: 24 x 1536, 16 heads)
HEADS_BY_HIDDEN = {768: 12, 1024: 16, 1280: 20, 1536: 16}


def strip_wrappers(state: dict, prefix: str = "") -> dict:
    """Drop ``prefix``, torch.compile's ``_orig_mod.`` and any leading ``backbone.`` levels."""
    out = {}
    for key, value in state.items():
        key = key.replace("_orig_mod.", "")
        if prefix:
            if not key.startswith(prefix):
                continue
            key = key[len(prefix):]
        while key.startswith("backbone."):
            key = key[len("backbone."):]
        out[key] = value
    return out


def backbone_of(state: dict) -> dict:
    """The DiT inside a wrapper: the ``backbone.`` subtree when there is one (a wrapper's
    other tensors, such as noise-schedule buffers, are not the network), else everything."""
    nested = any(k.replace("_orig_mod.", "").startswith("backbone.") for k in state)
    return strip_wrappers(state, "backbone." if nested else "")


def check_rotary(state: dict, head_dim: int, source: str) -> dict:
    """Remove the stored rotary buffer after checking it is the standard base-10,000 one."""
    import torch

    stored = state.pop(ROTARY_KEY, None)
    if stored is not None:
        expected = 1.0 / (10_000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        if stored.shape != expected.shape or not torch.allclose(stored.float(), expected, rtol=1e-4):
            raise CheckpointError(f"{source}: rotary frequencies {tuple(stored.shape)} do not match head size {head_dim} "
                                  f"with base 10000 (is n_heads in the config right?)")
    return state


def shape_config(state: dict, source: str) -> dict:
    """Architecture read from tensor shapes: vocab, hidden, cond_dim, layers, mlp ratio."""
    try:
        vocab, hidden = state["vocab_embed.embedding"].shape
        cond_dim = state["sigma_map.mlp.0.weight"].shape[0]
        mlp = state["blocks.0.mlp.0.weight"].shape[0]
    except KeyError as e:
        raise CheckpointError(f"{source}: not an MDLM DiT state dict (no {e.args[0]}; keys start "
                              f"{sorted(state)[:3]})") from None
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    found = {"vocab_size": int(vocab), "hidden": int(hidden), "cond_dim": int(cond_dim), "layers": layers,
             "mlp_ratio": int(mlp // hidden)}
    if ROTARY_KEY in state:  # the stored rotary buffer has head_dim / 2 frequencies: it gives the head count
        found["heads"] = int(hidden // (2 * state[ROTARY_KEY].numel()))
    return found


def default_heads(hidden: int, source: str) -> int:
    if hidden in HEADS_BY_HIDDEN:
        return HEADS_BY_HIDDEN[hidden]
    if hidden % 64 == 0:
        return hidden // 64
    raise CheckpointError(f"{source}: cannot tell the number of attention heads of a {hidden}-wide model; "
                          "put the model's config.json (with n_heads) next to the file")


def dit_config(state: dict, source: str, declared: dict | None = None):
    """A DiTConfig from the shapes, cross-checked against whatever the file's config declares."""
    from didi_seq import DiTConfig

    found = shape_config(state, source)
    declared = {k: v for k, v in (declared or {}).items() if v is not None}
    clash = [f"{k}: config {declared[k]} vs weights {found[k]}" for k in found if k in declared and declared[k] != found[k]]
    if clash:
        raise CheckpointError(f"{source}: config.json does not describe these weights ({'; '.join(clash)})")
    if "heads" not in found:
        found["heads"] = int(declared.get("heads") or default_heads(found["hidden"], source))
    return DiTConfig(**found, length=int(declared.get("length") or MDLM_LENGTH), dropout=0.0,
                     time_conditioning=bool(declared.get("time_conditioning", False)))


def state_sha256(state: dict) -> str:
    """Hash of the tensors actually loaded (names, dtypes, bytes): EMA and raw weights from
    one file get different ids."""
    import torch

    h = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().contiguous().cpu()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def hub_revision(path: Path) -> str | None:
    """The commit of a file inside the Hugging Face cache (…/snapshots/<commit>/…)."""
    parts = Path(path).absolute().parts  # not resolved: cache files are symlinks into blobs/
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def display_name(path: Path) -> str:
    """owner/name for a file in the HF cache (…/models--owner--name/snapshots/…), else the
    checkpoint's directory name or file stem."""
    parts = Path(path).absolute().parts
    for part in parts:
        if part.startswith("models--"):
            return "/".join(part[len("models--"):].split("--", 1))
    return Path(path).stem if Path(path).suffix == ".ckpt" else (Path(path).parent.name if Path(path).is_file() else Path(path).name)


def tokenizer_ref(directory: Path) -> str:
    """GPT-2 files shipped next to the weights win; otherwise the text domain finds GPT-2."""
    return str(directory) if gpt2.pair_in(directory) else gpt2.NAME


def build_teacher(state: dict, cfg, source: Path, fmt: str, weights: str, bf16: bool = True, extra: dict | None = None):
    """Strictly load ``state`` into a native DiT and wrap it as a teacher with provenance."""
    from didi_seq import DiT, LogLinearSchedule, NativeTeacher, SourceInfo, TeacherSpec
    from didi_seq.io.checkpoint import file_sha256, load_state_strict
    from didi_seq.models.teacher import check_size

    if cfg.vocab_size != gpt2.MASK_ID + 1:
        raise CheckpointError(f"{source}: vocabulary of {cfg.vocab_size} classes, but MDLM-family teachers have "
                              f"{gpt2.MASK_ID + 1} (GPT-2's 50257 + mask id {gpt2.MASK_ID}); is this a different tokenizer?")
    try:
        cfg.validate()  # an untrusted config is checked before anything is built from it
    except ValueError as e:
        raise CheckpointError(f"{source}: invalid model config ({e})") from None
    state = check_rotary(dict(state), cfg.hidden // cfg.heads, str(source))
    check_size(cfg, state, source)  # by arithmetic, before the DiT is allocated
    model = DiT(cfg)
    load_state_strict(model, state, str(source))
    sha = state_sha256(model.state_dict())
    name = display_name(source)
    prov = SourceInfo.build(format=fmt, source=str(source), path=str(source), revision=hub_revision(source),
                            weights=weights, file_sha256=file_sha256(source) if source.is_file() else None,
                            model_sha256=sha, id=f"{name}@{sha[:12]}", domain="text",
                            tokenizer=tokenizer_ref(source.parent if source.is_file() else source),
                            architecture=cfg.to_dict(), **(extra or {}))
    spec = TeacherSpec(vocab_size=cfg.vocab_size, mask_id=gpt2.MASK_ID, max_length=cfg.length,
                       time_conditioned=cfg.time_conditioning)
    return NativeTeacher(model, spec, LogLinearSchedule(eps=1e-3), prov, bf16=bf16)
