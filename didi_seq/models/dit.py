"""DiT backbone: a bidirectional transformer with rotary attention and adaLN conditioning.

Parameter names follow MDLM's ``models/dit.py`` (``vocab_embed.embedding``,
``sigma_map.mlp``, ``blocks.{i}.attn_qkv`` …) so published MDLM/SDTT checkpoints map
onto this module with a small key table. Two additions the distiller needs:
soft-token input (a probability tensor [B, L, V] becomes a weighted embedding, for
RGAS gradients) and hidden-state output (for discriminator heads).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class DiTConfig:
    vocab_size: int
    length: int = 256
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    cond_dim: int = 128
    mlp_ratio: int = 4
    dropout: float = 0.0
    # MDLM's teachers are time-agnostic: σ is forced to 0, so adaLN sees a constant,
    # learned vector. Time-agnostic teachers also allow the exact sampler cache.
    time_conditioning: bool = False
    # Variable-length rows are padded with this id after their end; attention ignores those
    # keys. None (packed rows, no padding) keeps the unmasked attention path.
    pad_id: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DiTConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown DiT config fields: {sorted(unknown)}")
        return cls(**d)

    def validate(self) -> None:
        """Every field of the right type and range (a config from an untrusted checkpoint is checked
        before a network is built from it); raises ValueError naming the field."""
        for name in ("vocab_size", "length", "hidden", "layers", "heads", "cond_dim", "mlp_ratio"):
            require_int(name, getattr(self, name), 1)
        if self.hidden % self.heads or (self.hidden // self.heads) % 2:
            raise ValueError(f"hidden {self.hidden} must split into {self.heads} heads of even size")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {self.dropout!r}")
        if not isinstance(self.time_conditioning, bool):
            raise ValueError(f"time_conditioning must be true or false, got {self.time_conditioning!r}")
        if self.pad_id is not None:
            require_int("pad_id", self.pad_id, 0, self.vocab_size - 1)

    def num_parameters(self) -> int:
        """Parameters a DiT of this config holds, by arithmetic alone: a checkpoint's weights file
        must hold exactly this many before the network is built (a bounded-memory check)."""
        h, c, v, m = self.hidden, self.cond_dim, self.vocab_size, self.mlp_ratio * self.hidden
        freq = TimestepEmbedder.FREQ_DIM
        block = 2 * h + 3 * h * h + h * h + (h * m + m + m * h + h) + (c * 6 * h + 6 * h)
        return v * h + (freq * c + c + c * c + c) + self.layers * block + (h + h * v + v + c * 2 * h + 2 * h)


    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """Name → shape of every tensor in a DiT's state dict, without building it (for error reports)."""
        h, c, v, m = self.hidden, self.cond_dim, self.vocab_size, self.mlp_ratio * self.hidden
        shapes = {"vocab_embed.embedding": (v, h), "sigma_map.mlp.0.weight": (c, TimestepEmbedder.FREQ_DIM),
                  "sigma_map.mlp.0.bias": (c,), "sigma_map.mlp.2.weight": (c, c), "sigma_map.mlp.2.bias": (c,)}
        for i in range(self.layers):
            block = {"norm1.weight": (h,), "attn_qkv.weight": (3 * h, h), "attn_out.weight": (h, h), "norm2.weight": (h,),
                     "mlp.0.weight": (m, h), "mlp.0.bias": (m,), "mlp.2.weight": (h, m), "mlp.2.bias": (h,),
                     "adaLN_modulation.weight": (6 * h, c), "adaLN_modulation.bias": (6 * h,)}
            shapes.update({f"blocks.{i}.{k}": s for k, s in block.items()})
        shapes.update({"output_layer.norm_final.weight": (h,), "output_layer.linear.weight": (v, h),
                       "output_layer.linear.bias": (v,), "output_layer.adaLN_modulation.weight": (2 * h, c),
                       "output_layer.adaLN_modulation.bias": (2 * h,)})
        return shapes


def require_int(name: str, value, low: int, high: int | None = None) -> None:
    """``value`` is an int (not a bool) in [low, high]; else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"in {low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")


class LayerNorm(nn.Module):
    """Bias-free LayerNorm computed in fp32 (as MDLM does, for bf16 stability)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return F.layer_norm(x.float(), (x.shape[-1],)) * self.weight


class Rotary(nn.Module):
    def __init__(self, head_dim: int, base: float = 10_000.0):
        super().__init__()
        inv = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(length, device=device, dtype=torch.float32)
        freqs = torch.outer(pos, self.inv_freq)
        return freqs.cos(), freqs.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (first half, second half) pairs; x is [B, heads, L, head_dim]."""
    x1, x2 = x.chunk(2, dim=-1)
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


class TimestepEmbedder(nn.Module):
    """Sinusoidal features of σ → 2-layer MLP → conditioning vector."""

    FREQ_DIM = 256

    def __init__(self, cond_dim: int, freq_dim: int = FREQ_DIM):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=sigma.device) / half)
        args = sigma.float()[:, None] * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        h = cfg.hidden
        self.heads = cfg.heads
        self.norm1 = LayerNorm(h)
        self.attn_qkv = nn.Linear(h, 3 * h, bias=False)
        self.attn_out = nn.Linear(h, h, bias=False)
        self.norm2 = LayerNorm(h)
        self.mlp = nn.Sequential(
            nn.Linear(h, cfg.mlp_ratio * h), nn.GELU(approximate="tanh"), nn.Linear(cfg.mlp_ratio * h, h)
        )
        self.adaLN_modulation = nn.Linear(cfg.cond_dim, 6 * h)
        self.dropout = nn.Dropout(cfg.dropout)
        nn.init.zeros_(self.adaLN_modulation.weight)
        nn.init.zeros_(self.adaLN_modulation.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor],
                key_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, h = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c).chunk(6, dim=-1)
        y = modulate(self.norm1(x), shift1, scale1)
        q, k, v = self.attn_qkv(y).view(b, n, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask)
        a = self.attn_out(a.transpose(1, 2).reshape(b, n, h))
        x = x + gate1[:, None] * self.dropout(a)
        y = self.mlp(modulate(self.norm2(x), shift2, scale2))
        return x + gate2[:, None] * self.dropout(y)


class FinalLayer(nn.Module):
    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.norm_final = LayerNorm(cfg.hidden)
        self.linear = nn.Linear(cfg.hidden, cfg.vocab_size)
        self.adaLN_modulation = nn.Linear(cfg.cond_dim, 2 * cfg.hidden)
        for p in (self.linear.weight, self.linear.bias, self.adaLN_modulation.weight, self.adaLN_modulation.bias):
            nn.init.zeros_(p)

    def features(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Normalised, modulated hidden state: the input of the vocabulary projection."""
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
        return modulate(self.norm_final(x), shift, scale)


class DiT(nn.Module):
    """(token ids [B, L] | probabilities [B, L, V], σ [B]) → logits [B, L, V]."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        if cfg.hidden % cfg.heads or (cfg.hidden // cfg.heads) % 2:
            raise ValueError("hidden must split into heads of even size")
        self.config = cfg
        self.vocab_embed = nn.Module()
        self.vocab_embed.embedding = nn.Parameter(torch.empty(cfg.vocab_size, cfg.hidden))
        nn.init.kaiming_uniform_(self.vocab_embed.embedding, a=math.sqrt(5))
        self.sigma_map = TimestepEmbedder(cfg.cond_dim)
        self.rotary_emb = Rotary(cfg.hidden // cfg.heads)
        self.blocks = nn.ModuleList(DiTBlock(cfg) for _ in range(cfg.layers))
        self.output_layer = FinalLayer(cfg)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        if x.is_floating_point():  # soft tokens: a distribution over the vocabulary
            return x.to(self.vocab_embed.embedding.dtype) @ self.vocab_embed.embedding
        return self.vocab_embed.embedding[x]

    def key_mask(self, x: torch.Tensor) -> torch.Tensor | None:
        """Attention mask [B, 1, 1, L] that hides padding keys, or None when there is no padding.

        Soft-token inputs carry one-hot rows at revealed positions (padding included) and give
        padding zero mass elsewhere, so their arg-max identifies padding too.
        """
        if self.config.pad_id is None:
            return None
        ids = x.argmax(-1) if x.is_floating_point() else x
        keep = ids != self.config.pad_id
        return None if bool(keep.all()) else keep[:, None, None, :]

    def cond(self, sigma: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        if sigma is None or not self.config.time_conditioning:
            sigma = torch.zeros(batch, device=device)
        return F.silu(self.sigma_map(sigma))

    def trunk(self, x: torch.Tensor, c: torch.Tensor, blocks=None, h: torch.Tensor | None = None) -> torch.Tensor:
        """The one walk through the trunk: ``blocks`` (default: all) on ids or soft tokens ``x`` [B, L]
        under conditioning ``c``, from the embedding or from ``h``, the hidden state the blocks before
        them left (the discriminator runs its frozen blocks without a graph, then its trainable ones)."""
        rope = self.rotary_emb(x.shape[1], x.device)
        keys = self.key_mask(x)
        if h is None:
            h = self.embed(x)
        for block in self.blocks if blocks is None else blocks:
            h = block(h, c, rope, keys)
        return h

    def hidden_states(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Trunk output [B, L, H] and the conditioning vector c [B, cond_dim]."""
        c = self.cond(sigma, x.shape[0], x.device)
        return self.trunk(x, c), c

    def head(self, h: torch.Tensor, c: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Vocabulary logits, everywhere or only at ``positions`` (bool [B, L]) — the
        output projection dominates the cost, so training evaluates it where the loss is."""
        f = self.output_layer.features(h, c)
        if positions is not None:
            f = f[positions]
        return self.output_layer.linear(f)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
        h, c = self.hidden_states(x, sigma)
        return self.head(h, c)
