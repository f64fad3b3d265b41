"""A LLaMA-style transformer without a causal mask: the trunk of LLaDA and Dream.

LLaDA (ML-GSAI/LLaDA, HF ``modeling_llada.py``, ``LLaDALlamaBlock``) and Dream (Dream-org/Dream-v0-*,
``modeling_dream.py``, a Qwen2 decoder with ``is_causal = False``) compute the same thing: pre-norm
blocks of RMSNorm → grouped-query attention with rotate-half RoPE → RMSNorm → SwiGLU, a final RMSNorm
and a vocabulary projection. They differ only in biases on q/k/v (Dream has them), in the names of
their tensors (each format keeps its own table) and in how logits line up with positions (Dream's
are shifted; the adapter handles that). So one network serves both; its parameter names are its own.

Numerics follow both references: RMSNorm in fp32, cast back, then scaled; RoPE angles and the
rotation in fp32 (LLaDA's ``rope_full_precision``); attention and projections in the weights' dtype.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .dit import apply_rotary, require_int

MAX_ROWS = 1 << 22  # vocabulary rows: far above any published tokenizer (LLaDA 126,464; Dream 152,064)
MAX_WIDTH = 1 << 16
MAX_LAYERS = 1024


@dataclass(frozen=True)
class BidirConfig:
    vocab_rows: int  # embedding / output rows (may exceed the tokenizer's size: padding rows)
    hidden: int
    layers: int
    heads: int
    kv_heads: int  # < heads: grouped-query attention, kv head j serves query heads j·g … j·g + g − 1
    mlp_hidden: int
    rope_theta: float
    norm_eps: float
    qkv_bias: bool = False
    tied_head: bool = False  # the output projection reuses the embedding

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def to_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> None:
        """Ranges and divisibility, checked before anything is built (configs come from untrusted files)."""
        require_int("vocab rows", self.vocab_rows, 2, MAX_ROWS)
        require_int("hidden size", self.hidden, 2, MAX_WIDTH)
        require_int("layers", self.layers, 1, MAX_LAYERS)
        require_int("attention heads", self.heads, 1, self.hidden)
        require_int("key/value heads", self.kv_heads, 1, self.heads)
        require_int("MLP hidden size", self.mlp_hidden, 1, 16 * MAX_WIDTH)
        if self.hidden % self.heads or self.head_dim % 2:
            raise ValueError(f"hidden size {self.hidden} must split into {self.heads} heads of even size")
        if self.heads % self.kv_heads:
            raise ValueError(f"{self.heads} attention heads cannot share {self.kv_heads} key/value heads evenly")
        for name, value in (("rope_theta", self.rope_theta), ("rms_norm_eps", self.norm_eps)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"{name} must be a positive number, got {value!r}")

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name → shape of every tensor of ``BidirTransformer(self)``, without building it."""
        h, kv = self.hidden, self.kv_heads * self.head_dim
        shapes = {"embed.weight": (self.vocab_rows, h)}
        block = {"attn_norm.weight": (h,), "q.weight": (h, h), "k.weight": (kv, h), "v.weight": (kv, h),
                 "o.weight": (h, h), "ffn_norm.weight": (h,), "gate.weight": (self.mlp_hidden, h),
                 "up.weight": (self.mlp_hidden, h), "down.weight": (h, self.mlp_hidden)}
        if self.qkv_bias:
            block.update({"q.bias": (h,), "k.bias": (kv,), "v.bias": (kv,)})
        for i in range(self.layers):
            shapes.update({f"blocks.{i}.{k}": s for k, s in block.items()})
        shapes["norm.weight"] = (h,)
        if not self.tied_head:
            shapes["head.weight"] = (self.vocab_rows, h)
        return shapes


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.float()
        y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * y.to(x.dtype)


def rope_angles(length: int, head_dim: int, theta: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [L, head_dim / 2] in fp32, computed per call (no buffer a bf16 cast could round)."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv)
    return angles.cos(), angles.sin()


class Block(nn.Module):
    def __init__(self, cfg: BidirConfig):
        super().__init__()
        h, kv = cfg.hidden, cfg.kv_heads * cfg.head_dim
        self.heads, self.kv_heads, self.head_dim = cfg.heads, cfg.kv_heads, cfg.head_dim
        self.attn_norm = RMSNorm(h, cfg.norm_eps)
        self.q = nn.Linear(h, h, bias=cfg.qkv_bias)
        self.k = nn.Linear(h, kv, bias=cfg.qkv_bias)
        self.v = nn.Linear(h, kv, bias=cfg.qkv_bias)
        self.o = nn.Linear(h, h, bias=False)
        self.ffn_norm = RMSNorm(h, cfg.norm_eps)
        self.gate = nn.Linear(h, cfg.mlp_hidden, bias=False)
        self.up = nn.Linear(h, cfg.mlp_hidden, bias=False)
        self.down = nn.Linear(cfg.mlp_hidden, h, bias=False)

    def attention(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.q(x).view(b, n, self.heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(b, n, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q.float(), *rope).to(v.dtype), apply_rotary(k.float(), *rope).to(v.dtype)
        group = self.heads // self.kv_heads  # both references repeat each kv head for consecutive query heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        a = F.scaled_dot_product_attention(q, k, v)  # no mask: every position sees every other
        return self.o(a.transpose(1, 2).reshape(b, n, -1))

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = x + self.attention(self.attn_norm(x), rope)
        y = self.ffn_norm(x)
        return x + self.down(F.silu(self.gate(y)) * self.up(y))


class BidirTransformer(nn.Module):
    """(token ids [B, L] | probabilities [B, L, V]) → logits [B, L, V], position i's output at row i."""

    def __init__(self, cfg: BidirConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_rows, cfg.hidden)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.hidden, cfg.norm_eps)
        self.head = None if cfg.tied_head else nn.Linear(cfg.hidden, cfg.vocab_rows, bias=False)

    def embed_tokens(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_floating_point():  # soft tokens (RGAS): the probability-weighted embedding
            return x.to(self.embed.weight.dtype) @ self.embed.weight
        return self.embed(x)

    def trunk(self, x: torch.Tensor, blocks=None, h: torch.Tensor | None = None) -> torch.Tensor:
        """The residual stream [B, L, H] after ``blocks`` (default: all), from the embedding of ``x`` or
        from ``h``, the stream of earlier blocks: the MMD feature cut and the discriminator's frozen and
        trainable halves run the same blocks the denoiser does (no final norm)."""
        rope = rope_angles(x.shape[1], self.config.head_dim, self.config.rope_theta, x.device)
        h = self.embed_tokens(x) if h is None else h
        for block in self.blocks if blocks is None else blocks:
            h = block(h, rope)
        return h

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        """The final-normed trunk output [B, L, H]."""
        return self.norm(self.trunk(x))

    def project(self, h: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits of hidden states [..., H] (only the rows a caller needs: V is ~150k)."""
        return F.linear(h, self.embed.weight if self.head is None else self.head.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.hidden_states(x))


def empty_network(cfg: BidirConfig) -> BidirTransformer:
    """The network with its parameters on the meta device: loading assigns the checkpoint's tensors,
    so an 8B model is never randomly initialised (minutes on a CPU) nor held twice."""
    with torch.device("meta"):
        return BidirTransformer(cfg)
