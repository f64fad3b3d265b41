"""Teacher formats ``llada`` and ``dream``: masked diffusion LLMs published as transformers checkpoints.

* LLaDA (GSAI-ML/LLaDA-8B-Base, -Instruct; code ML-GSAI/LLaDA): ``config.json`` with ``model_type: llada``
  (OLMo-style keys: d_model, n_heads, n_kv_heads, n_layers, mlp_hidden_size, embedding_size, ...),
  tensors ``model.transformer.{wte, blocks.N.{q_proj, k_proj, v_proj, attn_out, attn_norm, ff_norm,
  ff_proj, up_proj, ff_out}, ln_f, ff_out}``. ``ff_proj`` is SwiGLU's gate (``act(ff_proj(x)) * up_proj(x)``).
  Mask id 126,336; position i's logits predict token i.
* Dream (Dream-org/Dream-v0-Base-7B, -Instruct-7B): a Qwen2 decoder run without a causal mask,
  ``model_type: Dream``, tensors ``model.{embed_tokens, layers.N.{self_attn.{q,k,v,o}_proj,
  mlp.{gate,up,down}_proj, input_layernorm, post_attention_layernorm}, norm}`` and ``lm_head``;
  q/k/v carry biases. Mask id 151,666. Dream was adapted from an autoregressive model and keeps its
  alignment: the output at position i − 1 predicts token i, and position 0 keeps its own output
  (Dream's ``generation_utils.py``: ``logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)``).

Both run on ``didi_seq.models.bidir.BidirTransformer``; a family here is only what differs: how to
read the config, the tensor-name table and the shift. ``didi_seq.models.formats`` registers one
teacher format per family. Detection reads ``config.json`` alone, so this module imports no torch
until a checkpoint is loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import CheckpointError, DidiError

CONFIG = "config.json"
REQUIRED = object()


@dataclass(frozen=True)
class DllmConfig:
    """What a family's config.json says: the network, the special ids and the context length."""

    net: object  # didi_seq.models.bidir.BidirConfig
    mask_id: int
    bos_id: int | None
    eos_id: int | None
    max_length: int
    torch_dtype: str | None
    source: dict = field(default_factory=dict)  # config.json as read: a student's config.json repeats it


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    model_types: tuple[str, ...]  # config.json model_type, compared case-insensitively
    architectures: tuple[str, ...]
    read: Callable[[dict], DllmConfig]
    top: dict[str, str]  # the network's top-level modules → the checkpoint's
    blocks: str  # the checkpoint's prefix of block N (followed by ".N.")
    block: dict[str, str]  # a block's modules → the checkpoint's
    shift: bool  # output i − 1 predicts token i (Dream)

    def checkpoint_name(self, internal: str) -> str:
        """``blocks.3.q.bias`` → e.g. ``model.layers.3.self_attn.q_proj.bias``."""
        parts = internal.split(".")
        if parts[0] == "blocks":
            return ".".join([self.blocks, parts[1], self.block[parts[2]], *parts[3:]])
        return ".".join([self.top[parts[0]], *parts[1:]])


def _get(cfg: dict, key: str, default=REQUIRED):
    if key not in cfg or cfg[key] is None:
        if default is REQUIRED:
            raise ValueError(f"it lacks {key}")
        return default
    return cfg[key]


def _refuse(cfg: dict, supported: dict[str, tuple]) -> None:
    """Variants the native network does not implement are named, never silently computed wrong."""
    for key, allowed in supported.items():
        if key in cfg and cfg[key] not in allowed:
            raise ValueError(f"{key} = {cfg[key]!r} is not supported (only {' or '.join(map(repr, allowed))})")


def _read_llada(cfg: dict) -> DllmConfig:
    """ML-GSAI/LLaDA's ModelConfig keys; k/v heads as its ``effective_n_kv_heads``."""
    from .bidir import BidirConfig

    _refuse(cfg, {"block_type": ("llama",), "activation_type": ("silu",), "layer_norm_type": ("rms",), "rope": (True,),
                  "alibi": (False,), "attention_layer_norm": (False,), "input_emb_norm": (False,), "scale_logits": (False,),
                  "include_bias": (False,), "bias_for_layer_norm": (False, None), "layer_norm_with_affine": (True,),
                  "block_group_size": (1,)})
    hidden, heads = _get(cfg, "d_model"), _get(cfg, "n_heads")
    kv = 1 if cfg.get("multi_query_attention") else _get(cfg, "n_kv_heads", heads)
    mlp = _get(cfg, "mlp_hidden_size", None)
    if mlp is None:  # LLaDA's default: mlp_ratio × d_model (only integers multiply: a string would repeat)
        ratio = _get(cfg, "mlp_ratio")
        mlp = ratio * hidden if all(isinstance(v, int) and not isinstance(v, bool) for v in (ratio, hidden)) else ratio
    net = BidirConfig(vocab_rows=_get(cfg, "embedding_size", None) or _get(cfg, "vocab_size"), hidden=hidden,
                      layers=_get(cfg, "n_layers"), heads=heads, kv_heads=kv, mlp_hidden=mlp,
                      rope_theta=_get(cfg, "rope_theta"), norm_eps=_get(cfg, "rms_norm_eps"),
                      qkv_bias=bool(cfg.get("include_qkv_bias", False)), tied_head=bool(cfg.get("weight_tying", False)))
    return DllmConfig(net, _get(cfg, "mask_token_id", 126336), cfg.get("bos_token_id"), cfg.get("eos_token_id"),
                      _get(cfg, "max_sequence_length"), cfg.get("torch_dtype"))


def _read_dream(cfg: dict) -> DllmConfig:
    """Qwen2's config keys (Dream's DreamConfig); Dream's attention always has q/k/v biases."""
    from .bidir import BidirConfig

    _refuse(cfg, {"hidden_act": ("silu",), "rope_scaling": (None,), "use_sliding_window": (False,)})
    heads = _get(cfg, "num_attention_heads")
    net = BidirConfig(vocab_rows=_get(cfg, "vocab_size"), hidden=_get(cfg, "hidden_size"),
                      layers=_get(cfg, "num_hidden_layers"), heads=heads, kv_heads=_get(cfg, "num_key_value_heads", heads),
                      mlp_hidden=_get(cfg, "intermediate_size"), rope_theta=_get(cfg, "rope_theta"),
                      norm_eps=_get(cfg, "rms_norm_eps"), qkv_bias=True,
                      tied_head=bool(cfg.get("tie_word_embeddings", False)))
    return DllmConfig(net, _get(cfg, "mask_token_id", 151666), cfg.get("bos_token_id"), cfg.get("eos_token_id"),
                      _get(cfg, "max_position_embeddings"), cfg.get("torch_dtype"))


LLADA = Family(
    name="llada", description="LLaDA (GSAI-ML/LLaDA-8B-Base, -Instruct): config.json model_type llada + safetensors",
    model_types=("llada",), architectures=("LLaDAModelLM",), read=_read_llada,
    top={"embed": "model.transformer.wte", "norm": "model.transformer.ln_f", "head": "model.transformer.ff_out"},
    blocks="model.transformer.blocks",
    block={"attn_norm": "attn_norm", "q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "attn_out",
           "ffn_norm": "ff_norm", "gate": "ff_proj", "up": "up_proj", "down": "ff_out"},
    shift=False)

DREAM = Family(
    name="dream", description="Dream (Dream-org/Dream-v0-Base-7B, -Instruct-7B): config.json model_type Dream + safetensors",
    model_types=("dream",), architectures=("DreamModel",), read=_read_dream,
    top={"embed": "model.embed_tokens", "norm": "model.norm", "head": "lm_head"},
    blocks="model.layers",
    block={"attn_norm": "input_layernorm", "q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
           "o": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm", "gate": "mlp.gate_proj",
           "up": "mlp.up_proj", "down": "mlp.down_proj"},
    shift=True)


def checkpoint_dir(path: Path) -> Path:
    """The directory a path names: itself, the directory of a file of the checkpoint, or the latest
    checkpoint of a didi-seq run directory (a student distilled from one of these teachers)."""
    from ..io.checkpoint import LATEST_FILE, latest_checkpoint

    if path.is_file():
        return path.parent
    return latest_checkpoint(path) if (path / LATEST_FILE).is_file() else path


def foreign_config(path: Path) -> dict | None:
    """config.json of a transformers checkpoint directory, or None; bounded read. A didi-seq config counts
    only for a network that is not the native DiT: a student written in its teacher's layout."""
    from ..io.untrusted import read_json

    if path.is_file() and not (path.name == CONFIG or path.name.endswith((".safetensors", ".index.json"))):
        return None
    try:
        cfg = read_json(checkpoint_dir(path) / CONFIG, "config")
    except (OSError, DidiError):
        return None
    if not isinstance(cfg, dict) or ("format" in cfg and cfg.get("architecture", "dit") == "dit"):
        return None
    return cfg


def is_family(family: Family, path: Path) -> bool:
    cfg = foreign_config(path)
    if cfg is None:
        return False
    archs = cfg.get("architectures")
    return (str(cfg.get("model_type", "")).lower() in family.model_types
            or (isinstance(archs, list) and any(a in family.architectures for a in archs)))


def read_config(family: Family, directory: Path) -> DllmConfig:
    """The family's reading of config.json, every value checked before anything is built."""
    cfg = foreign_config(directory) or {}
    try:
        parsed = replace(family.read(cfg), source=cfg)
        parsed.net.validate()
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / CONFIG}: not a usable {family.name} config ({e})") from None
    from .dit import require_int
    from .teacher import MAX_LENGTH

    try:
        require_int("max length", parsed.max_length, 1, MAX_LENGTH)
        require_int("mask_token_id", parsed.mask_id, 0, parsed.net.vocab_rows - 1)
    except ValueError as e:
        raise CheckpointError(f"{directory / CONFIG}: {e}") from None
    return parsed


def detector(family: Family) -> Callable[[Path], bool]:
    return lambda path: is_family(family, path)


def loader(family: Family) -> Callable[..., object]:
    def load(path: Path, bf16: bool = True, **_):
        from .dllm_teacher import load_dllm

        directory = checkpoint_dir(path)
        return load_dllm(directory, family, read_config(family, directory), bf16)

    return load


FAMILIES = (LLADA, DREAM)
