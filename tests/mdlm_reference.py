"""A reference MDLM DiT written for the tests, and writers for every published on-disk format.

Independent of ``didi_seq.models.dit``: explicit attention (no SDPA), MDLM's rotate-half
rotary applied to q and k, bias-free fp32 LayerNorm, adaLN-Zero blocks, the same
parameter names and registration order as ``kuleshov-group/mdlm`` ``models/dit.py``
(and its Lightning / Hugging Face checkpoints, ``kuleshov-group/mdlm-owt``). Tiny sizes; GPT-2's 50258 classes.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

VOCAB, MASK = 50258, 50257


class LayerNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones([dim]))

    def forward(self, x):
        return F.layer_norm(x.float(), [x.shape[-1]]) * self.weight[None, None, :]


class Rotary(nn.Module):
    def __init__(self, dim, base=10_000):
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (base ** (torch.arange(0, dim, 2).float() / dim)))

    def forward(self, seq_len):
        freqs = torch.einsum("i,j->ij", torch.arange(seq_len).float(), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


def rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


class TimestepEmbedder(nn.Module):
    def __init__(self, hidden_size, frequency_embedding_size=256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(frequency_embedding_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))
        self.freq = frequency_embedding_size

    def forward(self, t):
        half = self.freq // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        args = t[:, None].float() * freqs[None]
        return self.mlp(torch.cat([torch.cos(args), torch.sin(args)], dim=-1))


class DDiTBlock(nn.Module):
    def __init__(self, dim, n_heads, cond_dim, mlp_ratio=4):
        super().__init__()
        self.n_heads = n_heads
        self.norm1 = LayerNorm(dim)
        self.attn_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.attn_out = nn.Linear(dim, dim, bias=False)
        self.norm2 = LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(approximate="tanh"), nn.Linear(mlp_ratio * dim, dim))
        self.adaLN_modulation = nn.Linear(cond_dim, 6 * dim)

    def forward(self, x, cos, sin, c):
        b, s, dim = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN_modulation(c)[:, None].chunk(6, dim=2)
        h = self.norm1(x) * (1 + scale1) + shift1
        q, k, v = self.attn_qkv(h).view(b, s, 3, self.n_heads, dim // self.n_heads).unbind(2)  # b s h d
        cos, sin = cos[None, :, None, :], sin[None, :, None, :]
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        att = torch.softmax(torch.einsum("bshd,bthd->bhst", q, k) / math.sqrt(q.shape[-1]), dim=-1)
        a = torch.einsum("bhst,bthd->bshd", att, v).reshape(b, s, dim)
        x = x + gate1 * self.attn_out(a)
        return x + gate2 * self.mlp(self.norm2(x) * (1 + scale2) + shift2)


class EmbeddingLayer(nn.Module):
    def __init__(self, dim, vocab):
        super().__init__()
        self.embedding = nn.Parameter(torch.empty((vocab, dim)))

    def forward(self, x):
        return self.embedding[x]


class DDitFinalLayer(nn.Module):
    def __init__(self, hidden, out, cond_dim):
        super().__init__()
        self.norm_final = LayerNorm(hidden)
        self.linear = nn.Linear(hidden, out)
        self.adaLN_modulation = nn.Linear(cond_dim, 2 * hidden)

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c)[:, None].chunk(2, dim=2)
        return self.linear(self.norm_final(x) * (1 + scale) + shift)


class DIT(nn.Module):
    def __init__(self, hidden=32, heads=2, layers=2, cond_dim=16, vocab=VOCAB):
        super().__init__()
        self.vocab_embed = EmbeddingLayer(hidden, vocab)
        self.sigma_map = TimestepEmbedder(cond_dim)
        self.rotary_emb = Rotary(hidden // heads)
        self.blocks = nn.ModuleList(DDiTBlock(hidden, heads, cond_dim) for _ in range(layers))
        self.output_layer = DDitFinalLayer(hidden, vocab, cond_dim)

    def trunk(self, indices, sigma):
        x = self.vocab_embed(indices)
        c = F.silu(self.sigma_map(sigma))
        cos, sin = self.rotary_emb(x.shape[1])
        for block in self.blocks:
            x = block(x, cos, sin, c)
        return x, c

    def forward(self, indices, sigma):
        return self.output_layer(*self.trunk(indices, sigma))


class Wrapper(nn.Module):
    """HF ``MDLM`` / Lightning ``Diffusion``: the DiT lives under ``backbone``."""

    def __init__(self, dit):
        super().__init__()
        self.backbone = dit


def random_dit(seed=0, **sizes) -> DIT:
    """Non-trivial weights everywhere (MDLM zero-initialises adaLN and the head)."""
    torch.manual_seed(seed)
    model = DIT(**sizes)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.normal_(1.0 if "norm" in name else 0.0, 0.2)
    return model.eval()


def subs(logits, x, mask_id=MASK):
    """MDLM's SUBS: forbid the mask, log-normalise, carry unmasked tokens over."""
    out = logits.clone().float()
    out[:, :, mask_id] += -1e6
    out = out - torch.logsumexp(out, dim=-1, keepdim=True)
    unmasked = x != mask_id
    out[unmasked] = -float("inf")
    out[unmasked, x[unmasked]] = 0
    return out


def hf_config(dit: DIT, length=16, **over) -> dict:
    h = dit.vocab_embed.embedding.shape[1]
    cfg = {"architectures": ["MDLM"], "model_type": "mdlm", "auto_map": {"AutoModelForMaskedLM": "modeling_mdlm.MDLM"},
           "vocab_size": dit.vocab_embed.embedding.shape[0], "model_length": length, "hidden_dim": h,
           "cond_dim": dit.sigma_map.mlp[0].weight.shape[0], "n_blocks": len(dit.blocks),
           "n_heads": dit.blocks[0].n_heads, "dropout": 0.1, "time_conditioning": False, "return_dict": False}
    return {**cfg, **over}


def hydra_config(dit: DIT, length=16) -> dict:
    """The OmegaConf dump PyTorchModelHubMixin writes for SDTT / DiDi-Instruct."""
    return {"mode": "train", "parameterization": "subs", "time_conditioning": False,
            "model": {"name": "small", "type": "ddit", "hidden_size": dit.vocab_embed.embedding.shape[1],
                      "cond_dim": dit.sigma_map.mlp[0].weight.shape[0], "length": length, "n_blocks": len(dit.blocks),
                      "n_heads": dit.blocks[0].n_heads, "scale_by_sigma": True, "dropout": 0.1},
            "tokenizer": {"name": "gpt2"}, "vocab_size": dit.vocab_embed.embedding.shape[0]}


def write_hf(directory, dit, config=None, state=None):
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    state = state if state is not None else Wrapper(dit).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(config or hf_config(dit)))
    return directory


def write_mixin(directory, dit, config=None, discriminator=None):
    """SDTT revision / DiDi-Instruct student: mixin safetensors + OmegaConf config.json."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in Wrapper(dit).state_dict().items()}, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps(config or hydra_config(dit)))
    if discriminator is not None:
        save_file({k: v.contiguous() for k, v in discriminator.state_dict().items()},
                  str(directory / "discriminator.safetensors"))
    return directory


class DiscriminatorHead(nn.Module):
    """DiDi-Instruct's head: legacy spectral norm, one logit per position."""

    def __init__(self, hidden):
        super().__init__()
        self.main = nn.Sequential(nn.utils.spectral_norm(nn.Linear(hidden, hidden)), nn.SiLU(),
                                  nn.utils.spectral_norm(nn.Linear(hidden, 1)))

    def forward(self, x, c=None):
        return self.main(x)


def didi_discriminator(seed=1, **sizes) -> DIT:
    disc = random_dit(seed, **sizes)
    disc.output_layer = DiscriminatorHead(disc.vocab_embed.embedding.shape[1])
    disc.train()
    with torch.no_grad():  # a few power iterations so u, v are not their random init
        for _ in range(3):
            disc.output_layer(torch.randn(1, 2, disc.vocab_embed.embedding.shape[1]))
    return disc.eval()


def write_lightning(path, dit, ema_dit=None, extra=None, shadow=None, config=None, extra_state=None):
    """A Lightning checkpoint as MDLM/DUO save it: prefixed state_dict, EMA as a positional
    list over chain(backbone.parameters(), noise.parameters()), and what
    ``save_hyperparameters(config, tokenizer)`` pickles: an OmegaConf config and a
    transformers tokenizer; plus numpy RNG state and loop counters."""
    import numpy as np
    from omegaconf import OmegaConf
    from transformers import PreTrainedTokenizerFast

    from didi_seq_text import gpt2

    tokenizer = PreTrainedTokenizerFast(tokenizer_object=gpt2.build(mask=False), bos_token="<|endoftext|>",
                                        eos_token="<|endoftext|>")
    ckpt = {"epoch": 0, "global_step": 1000, "pytorch-lightning_version": "2.2.1",
            "state_dict": OrderedDict({**Wrapper(dit).state_dict(), **(extra_state or {})}),
            "ema": {"decay": 0.9999, "num_updates": 1000,
                    "shadow_params": shadow if shadow is not None else
                    [p.detach().clone() for p in (ema_dit or dit).parameters()]},
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"current": {"completed": 0}}}},
            "sampler": {"random_state": np.random.RandomState(0).get_state()},
            "hyper_parameters": {"config": OmegaConf.create(config or hydra_config(dit)), "tokenizer": tokenizer},
            **(extra or {})}
    torch.save(ckpt, path)
    return path
