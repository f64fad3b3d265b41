"""LLaDA and Dream checkpoints load through ``load_teacher`` and give the reference logits.

The fixtures are written here, tiny and random, with the config keys and tensor names of the
published checkpoints (GSAI-ML/LLaDA-8B-*: ``model.transformer.*``, sharded with an index;
Dream-org/Dream-v0-*: Qwen2 names, one file) and a ``tokenizer.json`` smaller than the network's
vocabulary, as both real ones are. ``reference_logits`` is an independent forward in float64:
explicit per-head attention with each query head's key/value head picked by index, rotate-half
RoPE on concatenated angles, RMSNorm, SwiGLU, and Dream's shift of the outputs by one position.
"""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from typer.testing import CliRunner

from conftest import one_error_line
from didi_seq.errors import CheckpointError
from didi_seq.models.loading import load_teacher
from didi_seq.registry.plugins import get_domain, teacher_formats
from didi_seq_cli.main import app

TEXT = get_domain("text")
WORDS = ("the cat sat on a mat and then it ran to see what was over there by old red house while "
         "some dog slept near one big tree under blue sky so we all went home at last for tea").split()
L = 12


# --- fixtures as the published checkpoints lay them out -------------------------------------

def write_tokenizer(directory, specials):
    """A word-level tokenizer.json: the words, then ``specials`` as added special tokens (in order)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(dict.fromkeys(["[UNK]", *WORDS]))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(specials)
    tok.save(str(directory / "tokenizer.json"))
    return {s: tok.token_to_id(s) for s in specials}, tok.get_vocab_size()


LLADA_SPECIALS = ["<|startoftext|>", "<|endoftext|>", "<|eot_id|>", "<|mdm_mask|>"]
DREAM_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|beginoftext|>", "<|mask|>"]


def llada_config(ids, rows=64, **over):
    cfg = {"architectures": ["LLaDAModelLM"], "model_type": "llada", "activation_type": "silu", "alibi": False,
           "attention_layer_norm": False, "bias_for_layer_norm": False, "block_group_size": 1, "block_type": "llama",
           "d_model": 32, "embedding_size": rows, "vocab_size": rows, "eos_token_id": ids["<|endoftext|>"],
           "pad_token_id": ids["<|endoftext|>"], "include_bias": False, "include_qkv_bias": False,
           "input_emb_norm": False, "layer_norm_type": "rms", "layer_norm_with_affine": True,
           "mask_token_id": ids["<|mdm_mask|>"], "max_sequence_length": 16, "mlp_hidden_size": 48, "mlp_ratio": 4,
           "n_heads": 4, "n_kv_heads": 2, "n_layers": 2, "rms_norm_eps": 1e-5, "rope": True, "rope_full_precision": True,
           "rope_theta": 500000.0, "scale_logits": False, "weight_tying": False, "precision": "amp_bf16"}
    return {**cfg, **over}


def dream_config(ids, rows=72, **over):
    cfg = {"architectures": ["DreamModel"], "model_type": "Dream", "hidden_act": "silu", "hidden_size": 32,
           "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "vocab_size": rows, "max_position_embeddings": 24, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
           "rope_scaling": None, "use_sliding_window": False, "sliding_window": None, "tie_word_embeddings": False,
           "mask_token_id": ids["<|mask|>"], "pad_token_id": ids["<|endoftext|>"], "bos_token_id": ids["<|beginoftext|>"],
           "eos_token_id": ids["<|endoftext|>"], "torch_dtype": "float32"}
    return {**cfg, **over}


def names(kind, cfg):
    """Checkpoint tensor name → shape, spelled as the published models spell them."""
    if kind == "llada":
        d, kv, m, rows = cfg["d_model"], cfg["n_kv_heads"] * cfg["d_model"] // cfg["n_heads"], cfg["mlp_hidden_size"], cfg["embedding_size"]
        out = {"model.transformer.wte.weight": (rows, d), "model.transformer.ln_f.weight": (d,),
               "model.transformer.ff_out.weight": (rows, d)}
        for i in range(cfg["n_layers"]):
            p = f"model.transformer.blocks.{i}."
            out.update({p + "attn_norm.weight": (d,), p + "q_proj.weight": (d, d), p + "k_proj.weight": (kv, d),
                        p + "v_proj.weight": (kv, d), p + "attn_out.weight": (d, d), p + "ff_norm.weight": (d,),
                        p + "ff_proj.weight": (m, d), p + "up_proj.weight": (m, d), p + "ff_out.weight": (d, m)})
        return out
    d, m, rows = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = cfg["num_key_value_heads"] * d // cfg["num_attention_heads"]
    out = {"model.embed_tokens.weight": (rows, d), "model.norm.weight": (d,), "lm_head.weight": (rows, d)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out.update({p + "input_layernorm.weight": (d,), p + "self_attn.q_proj.weight": (d, d),
                    p + "self_attn.q_proj.bias": (d,), p + "self_attn.k_proj.weight": (kv, d),
                    p + "self_attn.k_proj.bias": (kv,), p + "self_attn.v_proj.weight": (kv, d),
                    p + "self_attn.v_proj.bias": (kv,), p + "self_attn.o_proj.weight": (d, d),
                    p + "post_attention_layernorm.weight": (d,), p + "mlp.gate_proj.weight": (m, d),
                    p + "mlp.up_proj.weight": (m, d), p + "mlp.down_proj.weight": (d, m)})
    return out


def random_state(kind, cfg, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in names(kind, cfg).items():
        norm = "norm" in name or "ln_f" in name
        std = 0.1 if norm else 1.0 / math.sqrt(shape[-1])
        state[name] = ((1.0 if norm else 0.0) + std * torch.randn(shape, generator=g)).to(dtype)
    return state


def write_checkpoint(directory, kind, state, cfg, shards=1, tokenizer_config=None):
    """config.json, tokenizer.json and the weights: one model.safetensors or an index + ``shards`` files."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(cfg, indent=2))
    if tokenizer_config is not None:
        (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    if shards == 1:
        save_file({k: v.contiguous() for k, v in state.items()}, str(directory / "model.safetensors"))
        return directory
    keys, weight_map = sorted(state), {}
    for s in range(shards):
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = keys[s::shards]
        save_file({k: state[k].contiguous() for k in part}, str(directory / file))
        weight_map.update({k: file for k in part})
    total = sum(v.numel() * v.element_size() for v in state.values())
    (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                         "weight_map": weight_map}))
    return directory


def make_llada(directory, seed=0, dtype=torch.float32, **over):
    directory.mkdir(parents=True, exist_ok=True)
    ids, _ = write_tokenizer(directory, LLADA_SPECIALS)
    cfg = llada_config(ids, **over)
    state = random_state("llada", cfg, seed, dtype)
    # LLaDA's config.json names no BOS: it comes from tokenizer_config.json, as in GSAI-ML/LLaDA-8B-*
    write_checkpoint(directory, "llada", state, cfg, shards=3, tokenizer_config={"bos_token": "<|startoftext|>",
                                                                                    "eos_token": "<|endoftext|>"})
    return directory, cfg, state, ids


def make_dream(directory, seed=1, dtype=torch.float32, **over):
    directory.mkdir(parents=True, exist_ok=True)
    ids, _ = write_tokenizer(directory, DREAM_SPECIALS)
    cfg = dream_config(ids, **over)
    state = random_state("dream", cfg, seed, dtype)
    write_checkpoint(directory, "dream", state, cfg)
    return directory, cfg, state, ids


@pytest.fixture(scope="module")
def llada(tmp_path_factory):
    return make_llada(tmp_path_factory.mktemp("llada") / "LLaDA-tiny")


@pytest.fixture(scope="module")
def dream(tmp_path_factory):
    return make_dream(tmp_path_factory.mktemp("dream") / "Dream-tiny")


# --- the independent forward ----------------------------------------------------------------

def reference_logits(kind, state, cfg, x, *, kv_of=None, rope="half", theta=None, shift=None, blocks=None):
    """float64 logits [B, L, V] from the checkpoint's own tensors. The keyword arguments swap in
    plausible mistakes (tiled kv heads, interleaved RoPE, another base, a missing or extra shift)
    so the tests can show that each of them would be caught. ``blocks``: return instead the residual
    stream [B, L, H] after that many blocks (MMD's feature map)."""
    W = {k: v.double() for k, v in state.items()}
    if kind == "llada":
        d, H, KV, layers = cfg["d_model"], cfg["n_heads"], cfg["n_kv_heads"], cfg["n_layers"]
        eps, base = cfg["rms_norm_eps"], cfg["rope_theta"]
        emb, final, head = W["model.transformer.wte.weight"], W["model.transformer.ln_f.weight"], W["model.transformer.ff_out.weight"]

        def lay(i, part):
            leaf = {"an": "attn_norm", "q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "attn_out", "fn": "ff_norm",
                    "gate": "ff_proj", "up": "up_proj", "down": "ff_out"}[part]
            return W[f"model.transformer.blocks.{i}.{leaf}.weight"], None
    else:
        d, H, KV, layers = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_hidden_layers"]
        eps, base = cfg["rms_norm_eps"], cfg["rope_theta"]
        emb, final, head = W["model.embed_tokens.weight"], W["model.norm.weight"], W["lm_head.weight"]

        def lay(i, part):
            leaf = {"an": "input_layernorm", "q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
                    "o": "self_attn.o_proj", "fn": "post_attention_layernorm", "gate": "mlp.gate_proj",
                    "up": "mlp.up_proj", "down": "mlp.down_proj"}[part]
            return W[f"model.layers.{i}.{leaf}.weight"], W.get(f"model.layers.{i}.{leaf}.bias")
    base = theta if theta is not None else base
    D = d // H
    kv_of = kv_of or (lambda h: h // (H // KV))  # query head h reads key/value head h // group

    def rms(v, w):
        return w * (v / torch.sqrt((v * v).mean(-1, keepdim=True) + eps))

    def lin(v, wb):
        w, b = wb
        return v @ w.T + (b if b is not None else 0)

    n = x.shape[1]
    inv = base ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)
    ang = torch.arange(n, dtype=torch.float64)[:, None] * inv[None]

    def rotate(t):  # t [B, n, D]
        if rope == "half":  # (first half, second half) pairs, angles concatenated twice
            cos, sin = torch.cat([ang, ang], -1).cos(), torch.cat([ang, ang], -1).sin()
            return t * cos + torch.cat([-t[..., D // 2:], t[..., :D // 2]], -1) * sin
        even, odd = t[..., 0::2], t[..., 1::2]  # GPT-J: adjacent pairs
        out = torch.empty_like(t)
        out[..., 0::2], out[..., 1::2] = even * ang.cos() - odd * ang.sin(), odd * ang.cos() + even * ang.sin()
        return out

    h = emb[x]
    for i in range(layers if blocks is None else blocks):
        a = rms(h, lay(i, "an")[0])
        q, k, v = lin(a, lay(i, "q")), lin(a, lay(i, "k")), lin(a, lay(i, "v"))
        heads = []
        for hq in range(H):
            j = kv_of(hq)
            qh = rotate(q[..., hq * D:(hq + 1) * D])
            kh, vh = rotate(k[..., j * D:(j + 1) * D]), v[..., j * D:(j + 1) * D]
            p = torch.softmax(qh @ kh.transpose(1, 2) / math.sqrt(D), dim=-1)  # no causal mask
            heads.append(p @ vh)
        h = h + lin(torch.cat(heads, -1), lay(i, "o"))
        f = rms(h, lay(i, "fn")[0])
        g, u = lin(f, lay(i, "gate")), lin(f, lay(i, "up"))
        h = h + lin(g * torch.sigmoid(g) * u, lay(i, "down"))
    if blocks is not None:
        return h
    logits = rms(h, final) @ head.T
    if (kind == "dream") if shift is None else shift:  # Dream: row i − 1 predicts position i; row 0 its own
        logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
    return logits


def ids_with_masks(mask_id, words=len(WORDS), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(1, words, (2, L), generator=g)
    x[torch.rand(2, L, generator=g) < 0.5] = mask_id
    x[0, 0] = mask_id  # position 0 masked: Dream's unshifted row
    return x


def assert_matches(adapter, kind, state, cfg, x):
    """Logits, SUBS log-probs and the samplers' masked log-probs all equal the reference's."""
    want = reference_logits(kind, state, cfg, x)
    got = adapter.logits(x)
    assert got.dtype == torch.float32 and got.shape == want.shape
    torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-4)
    masked = x == adapter.spec.mask_id
    never = sorted({*adapter.spec.never_emit, adapter.spec.mask_id})
    ref = want.clone()
    ref[..., never] = -math.inf
    ref = torch.log_softmax(ref, -1)
    torch.testing.assert_close(adapter.masked_log_probs(x, None, masked).double(), ref[masked], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(adapter.log_probs(x)[masked].double(), ref[masked], rtol=1e-4, atol=1e-4)


# --- loading and logits ---------------------------------------------------------------------

def test_llada_sharded_checkpoint_gives_the_reference_logits(llada):
    directory, cfg, state, ids = llada
    adapter, tok = load_teacher(str(directory), TEXT)
    assert adapter.provenance.format == "llada" and adapter.provenance.domain == "text"
    assert adapter.provenance.file_sha256 is None and len(adapter.provenance.model_sha256) == 64
    assert (adapter.spec.vocab_size, adapter.spec.mask_id, adapter.spec.max_length) == (64, ids["<|mdm_mask|>"], 16)
    assert (tok.vocab_size, tok.mask_id, tok.eos_id, tok.bos_id) == (64, ids["<|mdm_mask|>"], ids["<|endoftext|>"],
                                                                     ids["<|startoftext|>"])
    assert_matches(adapter, "llada", state, cfg, ids_with_masks(ids["<|mdm_mask|>"]))


def test_dream_checkpoint_gives_the_shifted_reference_logits(dream):
    directory, cfg, state, ids = dream
    adapter, tok = load_teacher(str(directory), TEXT)
    assert adapter.provenance.format == "dream" and adapter.provenance.extra["shifted_logits"] is True
    assert adapter.provenance.file_sha256 == adapter.provenance.model_sha256  # one file: its own hash
    assert (tok.vocab_size, tok.mask_id, tok.bos_id, tok.eos_id) == (72, ids["<|mask|>"], ids["<|beginoftext|>"],
                                                                     ids["<|endoftext|>"])
    x = ids_with_masks(ids["<|mask|>"])
    assert_matches(adapter, "dream", state, cfg, x)
    # a deliberately unshifted forward fails the same comparison
    adapter.shift = False
    with pytest.raises(AssertionError):
        assert_matches(adapter, "dream", state, cfg, x)


@pytest.mark.parametrize("kind", ["llada", "dream"])
@pytest.mark.parametrize("mistake", ["tiled kv heads", "interleaved rope", "rope base 10000", "shift flipped"])
def test_each_detail_is_pinned_by_the_comparison(llada, dream, kind, mistake):
    """Implementations with one plausible mistake (GQA heads repeated by tiling, GPT-J RoPE pairs, the
    default RoPE base instead of the config's, the shift missing or misplaced) disagree with the
    loaded model beyond the comparison's tolerance, so the tests above would catch each."""
    directory, cfg, state, ids = llada if kind == "llada" else dream
    adapter, _ = load_teacher(str(directory), TEXT)
    x = ids_with_masks(adapter.spec.mask_id)
    H = cfg.get("n_heads", cfg.get("num_attention_heads"))
    KV = cfg.get("n_kv_heads", cfg.get("num_key_value_heads"))
    wrong = {"tiled kv heads": {"kv_of": lambda h: h % KV}, "interleaved rope": {"rope": "pairs"},
             "rope base 10000": {"theta": 10000.0}, "shift flipped": {"shift": kind == "llada"}}[mistake]
    assert H > KV > 1  # grouped-query attention is exercised
    got = adapter.logits(x).double()
    assert (got - reference_logits(kind, state, cfg, x, **wrong)).abs().max() > 1e-2


def test_bf16_checkpoint_stays_bf16_until_placed_and_runs_fp32_on_cpu(tmp_path):
    """The precision policy: weights keep the stored dtype at load (no fp32 copy of an 8B model on its
    way to a GPU), compute in fp32 on a CPU and would be bf16 on a GPU."""
    from didi_seq.sampling.generate import trunk_precision

    directory, cfg, state, ids = make_llada(tmp_path / "bf16", dtype=torch.bfloat16)
    adapter, _ = load_teacher(str(directory), TEXT)
    assert adapter.model.embed.weight.dtype == torch.bfloat16
    assert adapter.precision(torch.device("cuda")) == torch.bfloat16
    assert adapter.precision(torch.device("cpu")) == torch.float32
    x = ids_with_masks(ids["<|mdm_mask|>"])
    got = adapter.logits(x)
    assert adapter.model.embed.weight.dtype == torch.float32 and trunk_precision(adapter) == "fp32"
    torch.testing.assert_close(got.double(), reference_logits("llada", state, cfg, x), rtol=1e-4, atol=1e-4)
    adapter.bf16 = False
    assert adapter.precision(torch.device("cuda")) == torch.float32  # --no-bf16 keeps a GPU in fp32


def test_tokenizer_has_the_network_rows_and_forbids_specials_and_padding_rows(llada, dream):
    for (directory, _, _, ids), specials, rows in ((llada, LLADA_SPECIALS, 64), (dream, DREAM_SPECIALS, 72)):
        adapter, tok = load_teacher(str(directory), TEXT)
        mask = adapter.spec.mask_id
        size = tok.tok.get_vocab_size()
        want = sorted({ids[s] for s in specials} - {mask} | set(range(size, rows)))
        assert adapter.spec.never_emit == tok.never_emit == want
        assert tok.encode_batch(["the cat sat <|endoftext|>"])[0][:3] == [tok.tok.token_to_id(w) for w in ("the", "cat", "sat")]
        assert ids["<|endoftext|>"] not in tok.encode_batch(["the cat sat <|endoftext|>"])[0]  # literal text stays text
        assert tok.decode(tok.encode_batch(["the cat sat"])[0]) == "the cat sat"


# --- detection, the hub and the CLI ----------------------------------------------------------

def test_formats_are_detected_from_config_json(llada, dream, tmp_path):
    by_name = {f.name: f for f in teacher_formats()}
    llada_dir, dream_dir = llada[0], dream[0]
    assert by_name["llada"].detect(llada_dir) and not by_name["llada"].detect(dream_dir)
    assert by_name["dream"].detect(dream_dir) and not by_name["dream"].detect(llada_dir)
    assert by_name["llada"].detect(llada_dir / "config.json")  # a file of the checkpoint names it too
    assert not any(by_name[n].detect(llada_dir) for n in by_name if n != "llada")
    other = tmp_path / "arch-only"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"architectures": ["DreamModel"]}))
    assert by_name["dream"].detect(other)  # model_type absent: the architectures list decides
    (other / "config.json").write_text(json.dumps({"model_type": "mdlm"}))
    assert not by_name["dream"].detect(other) and not by_name["llada"].detect(other)


def _cached_snapshot(repo, make):
    """A Hugging Face cache entry as huggingface_hub lays it out (refs/main → snapshots/<commit>)."""
    from pathlib import Path

    from huggingface_hub import constants

    root = Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    make(root / "snapshots" / commit)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    return root / "snapshots" / commit, commit


def test_hub_id_resolves_from_the_cache_and_names_a_missing_shard(tmp_path):
    snap, commit = _cached_snapshot("test-org/llada-tiny", lambda d: make_llada(d))
    adapter, _ = load_teacher("test-org/llada-tiny", TEXT)
    assert adapter.provenance.revision == commit and adapter.provenance.id.startswith("test-org/llada-tiny@")
    os.remove(snap / "model-00002-of-00003.safetensors")
    r = CliRunner().invoke(app, ["sample", "--domain", "text", "--checkpoint", "test-org/llada-tiny", "--nfe", "2"])
    one_error_line(r, "lacks model-00002-of-00003.safetensors; download the complete checkpoint (`hf download "
                      f"test-org/llada-tiny model-00002-of-00003.safetensors --revision {commit}`)")


@pytest.mark.parametrize("kind", ["llada", "dream"])
def test_cli_samples_a_few_steps_from_each_fixture(llada, dream, kind, tmp_path):
    directory, _, _, ids = llada if kind == "llada" else dream
    out = tmp_path / "s.jsonl"
    r = CliRunner().invoke(app, ["sample", "--domain", "text", "--checkpoint", str(directory), "--nfe", "3",
                                 "--num-samples", "3", "--output", str(out), "--threads", "1"])
    assert r.exit_code == 0, r.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    adapter, _ = load_teacher(str(directory), TEXT)
    forbidden = {*adapter.spec.never_emit, adapter.spec.mask_id}
    assert len(records) == 3
    for rec in records:
        assert len(rec["tokens"]) == adapter.spec.max_length and not forbidden & set(rec["tokens"])
        assert rec["checkpoint"] == adapter.provenance.id and rec["trunk_precision"] == "fp32"


# --- bad checkpoints: one error line, nothing allocated ---------------------------------------

def _rewrite_state(directory, kind, cfg, state, **changes):
    for f in directory.glob("model*.safetensors*"):
        f.unlink()
    new = {k: v for k, v in state.items() if k not in changes}
    new.update({k: v for k, v in changes.items() if v is not None})
    write_checkpoint(directory, kind, new, cfg, shards=3 if kind == "llada" else 1)


@pytest.mark.parametrize("break_it, fragment", [
    (lambda d, c, s: os.remove(d / "model-00003-of-00003.safetensors"), "lacks model-00003-of-00003.safetensors"),
    (lambda d, c, s: _rewrite_state(d, "llada", c, s, **{"model.transformer.blocks.1.up_proj.weight": torch.zeros(48, 31)}),
     "wrong shapes: model.transformer.blocks.1.up_proj.weight (48, 31) vs model (48, 32)"),
    (lambda d, c, s: _rewrite_state(d, "llada", c, s, **{"model.transformer.ln_f.weight": None}),
     "1 missing keys: model.transformer.ln_f.weight"),
    (lambda d, c, s: _rewrite_state(d, "llada", c, s, **{"model.transformer.wte.weight": torch.zeros(64, 32, dtype=torch.int32)}),
     "model.transformer.wte.weight is I32; weights must be BF16, F16 or F32"),
    (lambda d, c, s: (d / "config.json").write_text(json.dumps({**c, "n_layers": 3})),
     "9 missing keys: model.transformer.blocks.2.attn_norm.weight"),
    (lambda d, c, s: (d / "config.json").write_text(json.dumps({**c, "n_layers": 10**9})),
     "not a usable llada config (layers must be an integer in 1..1024"),
    (lambda d, c, s: (d / "config.json").write_text(json.dumps({**c, "block_type": "sequential"})),
     "block_type = 'sequential' is not supported"),
    (lambda d, c, s: (d / "config.json").write_text(json.dumps({**c, "n_kv_heads": 3})),
     "4 attention heads cannot share 3 key/value heads evenly"),
    (lambda d, c, s: (d / "config.json").write_text(json.dumps({**c, "mlp_hidden_size": None, "mlp_ratio": "4"})),
     "MLP hidden size must be an integer in 1..1048576, got '4'"),
    (lambda d, c, s: (d / "config.json").write_text(json.dumps({k: v for k, v in c.items() if k != "d_model"})),
     "not a usable llada config (it lacks d_model)"),
    (lambda d, c, s: (d / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"model.transformer.wte.weight": "../elsewhere.safetensors"}})),
     "names shard files outside its directory"),
    (lambda d, c, s: (d / "model-00001-of-00003.safetensors").write_bytes(b"\x00" * 5),
     "model-00001-of-00003.safetensors is truncated or not a safetensors file"),
    (lambda d, c, s: os.remove(d / "tokenizer.json"), "has no tokenizer.json"),
])
def test_bad_llada_checkpoint_is_one_error_line(tmp_path, break_it, fragment):
    directory, cfg, state, _ = make_llada(tmp_path / "m")
    break_it(directory, cfg, state)
    r = CliRunner().invoke(app, ["sample", "--domain", "text", "--checkpoint", str(directory), "--nfe", "2"])
    one_error_line(r, fragment)


@pytest.mark.parametrize("over, fragment", [
    ({"rope_scaling": {"type": "yarn", "factor": 4.0}}, "rope_scaling = {'type': 'yarn', 'factor': 4.0} is not supported"),
    ({"torch_dtype": "bfloat16"}, "config.json declares torch_dtype bfloat16 but lm_head.weight is F32"),
    ({"mask_token_id": 500}, "mask_token_id must be an integer in 0..71"),
    ({"vocab_size": 50}, "2 wrong shapes: lm_head.weight (72, 32) vs model (50, 32)"),
])
def test_bad_dream_config_is_one_error_line(dream, tmp_path, over, fragment):
    directory, cfg, _, _ = dream
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in directory.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "config.json").write_text(json.dumps({**cfg, **over}))
    with pytest.raises(CheckpointError, match="^.*$") as e:
        load_teacher(str(bad), TEXT)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_tokenizer_larger_than_the_vocabulary_is_refused(tmp_path):
    directory, cfg, state, _ = make_dream(tmp_path / "m", rows=47)  # 46 tokens fit: one row to spare
    load_teacher(str(directory), TEXT)
    write_tokenizer(directory, [*DREAM_SPECIALS, "<|a|>", "<|b|>"])  # now 48 tokens for 47 rows
    with pytest.raises(CheckpointError, match="has 48 tokens but the network only 47 vocabulary rows"):
        load_teacher(str(directory), TEXT)
