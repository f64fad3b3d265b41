"""``didi-seq plan``: will a distillation run fit, and what does each rank hold? From config.json alone.

The teacher's config gives the network's shape (``read_shape``: didi-seq's DiT, Hugging Face
LLaMA-style configs such as Dream's, LLaDA's OLMo-style keys); the method gives the networks a
run holds beside it; the result is one row per thing a rank keeps in memory, in bytes.

Byte counts per parameter (``--dtype``):

- frozen weights: 2 (bf16) or 4 (fp32);
- a trained network with Adam: bf16 = 2 (weights) + 4 (fp32 master) + 2 (gradients) + 8 (two fp32
  moments) = 16, the mixed-precision Adam count of ZeRO (Rajbhandari et al., arXiv 1910.02054, §3.1);
  fp32 = 4 + 4 + 8 = 16, how didi-seq trains today (fp32 weights, bf16 autocast);
- the student's EMA, which checkpoints publish: 4 (fp32, ``training/state.py``).

With ``--shard fsdp`` every one of these is divided by the number of GPUs (``training/sharding.py``),
plus the units FSDP gathers whole while it computes (the root: embeddings and head, and a block,
with their gradients). With ``ddp`` each rank holds them whole.

Activations (kept for the backward pass, per rank's rows ``b`` of length ``s``): Korthikanti et
al., arXiv 2205.05198, §4.1, eq. 1 gives s·b·h·(34 + 5·a·s/h) bytes per transformer layer with
16-bit activations, of which 19·s·b·h is the 4h-wide MLP (input 2sbh, GeLU input and output 8sbh
each, dropout mask sbh). For an MLP of width m this is 3sbh + 4sbm, and 3sbh + 6sbm for a gated
one (SwiGLU keeps both branches); the 5·a·s²·b of the attention scores is not kept by memory-
efficient attention (torch SDPA, FlashAttention), which the GPU runs use. So a layer keeps
s·b·(18h + 4m) bytes, (18h + 6m) gated, twice that in fp32. The fp32 logits at the masked
positions, their softmax and gradient add 12·s·V bytes per row (``distill/run.check_batch_memory``).

Compute: 2 FLOPs per parameter and token forward, 4 more backward, plus the attention's
4·layers·s·h per token forward (Kaplan et al., arXiv 2001.08361, §2.1); ``--tflops`` is the
sustained rate per GPU that turns it into hours (an assumption, printed).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import DidiError
from ..io.checkpoint import CONFIG_FILE, resolve_checkpoint_dir
from ..io.untrusted import read_json

GIB = 1 << 30
DTYPES = {"bf16": 2, "fp32": 4}
SHARDS = ("ddp", "fsdp")
# a CUDA context and the allocator's fragmentation: a rule of thumb, printed with the result
RESERVE_GIB, RESERVE_FRACTION = 1.0, 0.10


@dataclass(frozen=True)
class Shape:
    """What the planner needs of a network: sizes and parameter counts (whole network, one block, and
    the output head a discriminator's trunk leaves out)."""

    kind: str
    hidden: int
    layers: int
    heads: int
    mlp: int  # MLP width
    gated: bool  # a gated MLP (SwiGLU): three matrices
    vocab: int
    max_length: int | None
    params: int
    block: int  # parameters of one transformer block
    head: int  # output head and final norm
    embedding: int  # the input embedding (a lookup: no FLOPs)

    @property
    def root(self) -> int:
        """Everything outside the blocks (embeddings, head, time embedder): FSDP's root unit."""
        return self.params - self.layers * self.block

    def layer_activations(self, rows: int, length: int, width: int) -> int:
        """Bytes one layer keeps for backward (module docstring), ``width`` bytes per activation / 2."""
        per_token = 18 * self.hidden + (6 if self.gated else 4) * self.mlp
        return rows * length * per_token * width // 2

    def forward_flops(self, tokens: int, length: int, blocks: int | None = None) -> float:
        """Forward FLOPs over ``tokens`` tokens of sequences of ``length``: the whole network (the embedding
        lookup aside), or only ``blocks`` transformer blocks (a discriminator's or a feature trunk's)."""
        if blocks is None:
            return tokens * (2 * (self.params - self.embedding) + 4 * self.layers * length * self.hidden)
        return tokens * (2 * blocks * self.block + 4 * blocks * length * self.hidden)


def _int(config: dict, key: str, where: str, default: int | None = None) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DidiError(f"{where}: '{key}' must be a positive integer, got {value!r}")
    return value


def read_shape(config: dict, where: str = "config.json") -> Shape:
    """The shape of a teacher from its config.json: didi-seq (``format``), LLaDA (``d_model``) or a
    Hugging Face LLaMA-style config (``hidden_size``); anything else is one error naming what is missing."""
    if not isinstance(config, dict):
        raise DidiError(f"{where} is not a JSON object")
    if config.get("format") == "didi-seq":
        model = config.get("model")
        if not isinstance(model, dict):
            raise DidiError(f"{where}: a didi-seq config without a 'model' object")
        spec = config.get("spec") if isinstance(config.get("spec"), dict) else {}
        if config.get("architecture", "dit") == "dit":
            return _dit(model, spec.get("max_length"), where)
        config = model  # another architecture's didi-seq checkpoint: its network's own keys
    if "d_model" in config:
        return _llada(config, where)
    if "hidden_size" in config:
        return _hf(config, where)
    raise DidiError(f"{where}: not a config plan reads (a didi-seq checkpoint's, or one with hidden_size / d_model, "
                    "num_hidden_layers / n_layers, num_attention_heads / n_heads, intermediate_size / mlp_hidden_size "
                    "and vocab_size)")


def _dit(model: dict, max_length, where: str) -> Shape:
    from ..models.dit import DiTConfig

    try:
        cfg = DiTConfig.from_dict(model)
        cfg.validate()
    except (TypeError, ValueError) as e:
        raise DidiError(f"{where}: invalid didi-seq model config ({e})") from None
    shapes = cfg.parameter_shapes()  # the DiT's own names and shapes: no second copy of its layout here
    count = lambda prefix: sum(math.prod(s) for k, s in shapes.items() if k.startswith(prefix))  # noqa: E731
    return Shape("didi-seq DiT", cfg.hidden, cfg.layers, cfg.heads, cfg.mlp_ratio * cfg.hidden, False, cfg.vocab_size,
                 max_length or cfg.length, cfg.num_parameters(), count("blocks.0."), count("output_layer."),
                 count("vocab_embed."))


def _attention(h: int, heads: int, kv_heads: int, head_dim: int, bias: bool) -> int:
    q, kv = heads * head_dim, kv_heads * head_dim
    return h * q + 2 * h * kv + q * h + (q + 2 * kv if bias else 0)


def _hf(cfg: dict, where: str) -> Shape:
    """A LLaMA-style decoder (LLaMA, Qwen2, Dream): separate q/k/v/o (q/k/v biases when ``attention_bias`` or
    Qwen2/Dream), a gated MLP (gate, up, down), two RMSNorm weights per block and a final one; an output head
    unless ``tie_word_embeddings`` (absent: untied, the larger count)."""
    h, n = _int(cfg, "hidden_size", where), _int(cfg, "num_hidden_layers", where)
    heads = _int(cfg, "num_attention_heads", where)
    kv = _int(cfg, "num_key_value_heads", where, heads)
    head_dim = _int(cfg, "head_dim", where) if cfg.get("head_dim") is not None else h // heads
    m, v = _int(cfg, "intermediate_size", where), _int(cfg, "vocab_size", where)
    bias = cfg.get("attention_bias", str(cfg.get("model_type", "")).lower() in ("qwen2", "dream")) is True
    mlp_bias = cfg.get("mlp_bias") is True
    block = _attention(h, heads, kv, head_dim, bias) + 3 * h * m + (2 * m + h if mlp_bias else 0) + 2 * h
    head = h + (0 if cfg.get("tie_word_embeddings") is True else v * h)
    length = cfg.get("max_position_embeddings")
    return Shape(f"Hugging Face ({cfg.get('model_type', 'llama-style')})", h, n, heads, m, True, v,
                 length if isinstance(length, int) else None, v * h + n * block + head, block, head, v * h)


def _llada(cfg: dict, where: str) -> Shape:
    """LLaDA's OLMo-style keys (GSAI-ML/LLaDA-8B-Instruct config.json): ``block_type`` llama = separate q/k/v and
    a SwiGLU MLP of three mlp_hidden_size matrices (ff_proj, up_proj, ff_out); RMSNorm weights; the embedding
    has ``embedding_size`` rows; an output head unless ``weight_tying``."""
    h, n = _int(cfg, "d_model", where), _int(cfg, "n_layers", where)
    heads = _int(cfg, "n_heads", where)
    kv = _int(cfg, "n_kv_heads", where, heads) if cfg.get("n_kv_heads") is not None else heads
    m = _int(cfg, "mlp_hidden_size", where) if cfg.get("mlp_hidden_size") is not None else \
        _int(cfg, "mlp_ratio", where) * h
    v = _int(cfg, "vocab_size", where)
    rows = _int(cfg, "embedding_size", where) if cfg.get("embedding_size") is not None else v
    if cfg.get("block_type", "llama") != "llama":
        raise DidiError(f"{where}: LLaDA block_type {cfg.get('block_type')!r}; plan knows 'llama' (LLaDA-8B's)")
    bias = cfg.get("include_bias") is True
    block = _attention(h, heads, kv, h // heads, bias) + 3 * h * m + (2 * m + h if bias else 0) + 2 * h
    head = h + (0 if cfg.get("weight_tying") is True else rows * h)
    length = cfg.get("max_sequence_length")
    return Shape("LLaDA", h, n, heads, m, True, v, length if isinstance(length, int) else None,
                 rows * h + n * block + head, block, head, rows * h)


def read_teacher_shape(src: str) -> Shape:
    """The shape of the teacher at ``src``: a config.json, a checkpoint directory holding one, or a run directory."""
    path = Path(src)
    if not path.exists():
        raise DidiError(f"--teacher {src}: no such file or directory; plan reads a local config.json (for a hub model, "
                        "download that file first, e.g. `hf download ID config.json --local-dir DIR`)")
    if path.is_dir():
        path = resolve_checkpoint_dir(path) / CONFIG_FILE
    return read_shape(read_json(path, "config"), str(path))


# -- the plan ------------------------------------------------------------------------------------


@dataclass
class Row:
    what: str
    bytes: int
    how: str  # the arithmetic, for the reader to check


@dataclass
class Plan:
    rows: list[Row]
    per_rank: int
    usable: int
    fits: bool
    flops_per_step: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {**asdict(self), "per_rank_gib": self.per_rank / GIB, "usable_gib": self.usable / GIB}


@dataclass(frozen=True)
class Setup:
    """The run asked about: method, its options (a method config object, read with defaults), hardware."""

    method: str
    gpus: int
    gpu_mem_gib: float
    rows: int  # sequences per optimiser step over all GPUs (DiDi-Instruct: batch × group)
    length: int
    shard: str = "fsdp"
    dtype: str = "bf16"
    options: object = None

    def opt(self, name: str, default):
        return getattr(self.options, name, default)


METHODS = ("didi-instruct", "sdtt", "mmd")


def check_setup(s: Setup) -> None:
    if s.method not in METHODS:
        raise DidiError(f"plan knows the memory of --method {', '.join(METHODS)}; not {s.method!r}")
    if s.shard not in SHARDS:
        raise DidiError(f"unknown --shard {s.shard!r}; expected {' or '.join(SHARDS)}")
    if s.dtype not in DTYPES:
        raise DidiError(f"unknown --dtype {s.dtype!r}; expected {' or '.join(DTYPES)}")
    for name in ("gpus", "rows", "length"):
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            flag = {"rows": "--batch-size"}.get(name, f"--{name}")
            raise DidiError(f"{flag} must be a positive integer, got {value!r}")
    if not (math.isfinite(s.gpu_mem_gib) and s.gpu_mem_gib > 0):
        raise DidiError(f"--gpu-mem must be a positive number of GiB, got {s.gpu_mem_gib}")
    if s.rows % s.gpus:
        raise DidiError(f"--batch-size {s.rows} does not split over {s.gpus} GPUs; use a multiple of {s.gpus}")


def plan(shape: Shape, s: Setup) -> Plan:
    """Per-rank memory and compute of ``s.method`` distilling ``shape`` (module docstring for every count)."""
    check_setup(s)
    w = DTYPES[s.dtype]
    n = s.gpus if s.shard == "fsdp" else 1  # what the states are divided by
    per = f"/ {n} GPUs" if n > 1 else "(whole on every GPU)"
    b, L = s.rows // s.gpus, s.length  # this rank's rows
    rows: list[Row] = []

    def frozen(what: str, params: int) -> None:
        rows.append(Row(f"{what} weights (frozen)", params * w // n, f"{params:,} params × {w} B {per}"))

    def trained(what: str, params: int, ema: bool) -> None:
        master = 4 if w == 2 else 0
        rows.append(Row(f"{what} weights", params * w // n, f"{params:,} × {w} B {per}"))
        if master:
            rows.append(Row(f"{what} fp32 master weights", params * 4 // n, f"{params:,} × 4 B {per}"))
        rows.append(Row(f"{what} gradients", params * w // n, f"{params:,} × {w} B {per}"))
        rows.append(Row(f"{what} Adam moments", params * 8 // n, f"{params:,} × 2 × 4 B {per}"))
        if ema:
            rows.append(Row(f"{what} EMA (fp32)", params * 4 // n, f"{params:,} × 4 B {per}"))

    def activations(what: str, passes: int, layers: int, logits: bool) -> None:
        total = passes * (layers * shape.layer_activations(b, L, w) + (12 * b * L * shape.vocab if logits else 0))
        how = f"{passes} × ({layers} layers × {b}·{L}·(18h + {6 if shape.gated else 4}m) B{' × 2' if w > 2 else ''}"
        rows.append(Row(f"{what} activations", total, how + (f" + 12·{b}·{L}·V B logits)" if logits else ")")))

    p, f = shape.params, shape.forward_flops
    tokens = s.rows * L  # over all GPUs
    frozen("teacher", p)
    trained("student", p, ema=True)
    if s.method == "didi-instruct":
        k = s.opt("disc_trainable_blocks", 1)
        steps = 2 if s.opt("score_decomposition", True) else 1
        disc_head = shape.hidden * shape.hidden + 2 * shape.hidden + 1  # spectral-norm Linear(h, h), SiLU, Linear(h, 1)
        frozen("discriminator trunk", p - shape.head - k * shape.block)
        trained(f"discriminator last {k} block(s) + head", k * shape.block + disc_head, ema=False)
        activations(f"student rollout ({steps} steps)", steps, shape.layers, logits=True)
        activations(f"discriminator (real and student rows, {k} trainable block(s))", 2, k, logits=False)
        # student rollout forward + backward, the teacher's KL forward at each state, the discriminator's
        # three trunk forwards (real, student rows, rewards) and backward through its trainable blocks twice
        flops = steps * 3 * f(tokens, L) + steps * f(tokens, L) + 3 * f(tokens, L, shape.layers) + 2 * 2 * f(tokens, L, k)
    elif s.method == "sdtt":
        frozen("round teacher (the EMA student of the last round)", p)
        activations("student", 1, shape.layers, logits=True)
        flops = 3 * f(tokens, L) + s.opt("teacher_steps", 2) * f(tokens, L)
    else:  # mmd
        fills = s.opt("groups", 4) * s.opt("draws", 2)
        depth = min(s.opt("feature_block", 1) + 1, shape.layers)
        activations("student", 1, shape.layers, logits=True)
        rows.append(Row(f"MMD features of x0 and {fills} fills (fp32)", (1 + fills) * b * L * shape.hidden * 4,
                        f"(1 + {fills}) × {b} rows × {L} × {shape.hidden} × 4 B"))
        flops = 3 * f(tokens, L) + (1 + fills) * f(tokens, L, depth) + (f(tokens, L) if s.opt("kl_coef", 1e-3) > 0 else 0)
    if n > 1:
        unit = shape.root + shape.block
        rows.append(Row("FSDP gathered units (root + one block, with gradients)", unit * 2 * w,
                        f"({shape.root:,} + {shape.block:,}) × (weights + gradients) × {w} B"))
    per_rank = sum(r.bytes for r in rows)
    usable = int(((1 - RESERVE_FRACTION) * s.gpu_mem_gib - RESERVE_GIB) * GIB)
    notes = [f"usable = (1 − {RESERVE_FRACTION:.0%}) × {s.gpu_mem_gib:g} GiB − {RESERVE_GIB:g} GiB "
             "(CUDA context, allocator fragmentation: a rule of thumb)",
             "frozen networks' forwards keep no activations (no gradient); their transient layer is left out"]
    return Plan(rows, per_rank, usable, per_rank <= usable, flops, notes)


def gpu_hours(flops_per_step: float, steps: int, tflops: float) -> float:
    """GPU-hours of ``steps`` steps at ``tflops`` sustained TFLOP/s per GPU (an assumption the caller states)."""
    return flops_per_step * steps / (tflops * 1e12) / 3600
