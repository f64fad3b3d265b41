"""Published MDLM-family checkpoints load into the native DiT and give the reference logits.

Each test writes a tiny checkpoint in an exact on-disk format from the reference DiT in
``mdlm_reference`` (same names and shapes as the published code), loads it through
``load_teacher`` and compares logits and SUBS log-probs on the same input.
"""

import os

import pytest
import torch
from typer.testing import CliRunner

import mdlm_reference as ref
from conftest import one_error_line
from didi_seq.errors import CheckpointError
from didi_seq.io.checkpoint import file_sha256
from didi_seq.io.provenance import SourceInfo
from didi_seq.models.loading import load_teacher
from didi_seq.registry.plugins import get_domain
from didi_seq_cli.main import app

TEXT = get_domain("text")
L = 12


@pytest.fixture(scope="module")
def dit():
    return ref.random_dit(seed=0)


def _input(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 50257, (2, L), generator=g)
    x[torch.rand(2, L, generator=g) < 0.5] = ref.MASK
    return x


def assert_matches(adapter, model, x=None):
    """fp32 logits equal the reference's (σ = 0: MDLM is time-agnostic) and so does SUBS."""
    x = _input() if x is None else x
    adapter.bf16 = False
    with torch.no_grad():
        want = model(x, torch.zeros(x.shape[0]))
    got = adapter.logits(x, torch.full((x.shape[0],), 0.5))
    assert got.dtype == torch.float32 and got.shape == (2, L, ref.VOCAB)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    lp, want_lp = adapter.log_probs(x, torch.full((2,), 0.5)), ref.subs(want, x)
    masked = x == ref.MASK
    # MDLM adds -1e6 to the mask column, didi-seq sets -inf: both give it probability 0
    torch.testing.assert_close(lp[masked][:, :ref.MASK], want_lp[masked][:, :ref.MASK], rtol=1e-4, atol=1e-4)
    assert torch.equal(lp[masked][:, ref.MASK].exp(), want_lp[masked][:, ref.MASK].exp())
    assert torch.equal(lp[~masked].exp(), want_lp[~masked].exp())  # one-hot carry-over


def test_mdlm_hf_safetensors(dit, tmp_path):
    adapter, tok = load_teacher(str(ref.write_hf(tmp_path / "mdlm-owt", dit)), TEXT)
    assert_matches(adapter, dit)
    assert (tok.vocab_size, tok.mask_id, tok.eos_id) == (50258, 50257, 50256)
    p = adapter.provenance
    assert isinstance(p, SourceInfo) and p.format == "mdlm-hf" and p.tokenizer == "gpt2" and len(p.model_sha256) == 64
    # the dict form keeps the key order the MDLM loader has always written (save_pretrained copies it)
    assert list(p.to_dict()) == ["format", "source", "path", "revision", "weights", "file_sha256", "model_sha256", "id",
                                 "domain", "tokenizer", "architecture"]
    assert p.extra["source"] == p.path and p.file_sha256 == file_sha256(p.path) and p.revision is None and p.weights == "as published"
    assert adapter.spec.max_length == 16 and adapter.model.config.heads == 2


def test_sdtt_revision(dit, tmp_path):
    adapter, _ = load_teacher(str(ref.write_mixin(tmp_path / "sdtt", dit)), TEXT)
    assert adapter.provenance.format == "sdtt"
    assert_matches(adapter, dit)


def test_lightning_ema_is_default_and_raw_is_selectable(dit, tmp_path):
    ema = ref.random_dit(seed=5)
    path = ref.write_lightning(tmp_path / "mdlm.ckpt", dit, ema_dit=ema)
    a_ema, _ = load_teacher(str(path), TEXT)
    assert isinstance(a_ema.provenance, SourceInfo) and a_ema.provenance.weights == "ema"
    assert a_ema.provenance.extra["ema_decay"] == 0.9999 and list(a_ema.provenance.to_dict())[-2:] == ["ema_decay", "ema_updates"]
    assert a_ema.provenance.file_sha256 == file_sha256(path)
    assert_matches(a_ema, ema)
    a_raw, _ = load_teacher(str(path), TEXT, use_ema=False)
    assert a_raw.provenance.weights == "raw"
    assert_matches(a_raw, dit)
    assert a_raw.provenance.model_sha256 != a_ema.provenance.model_sha256


def test_didi_instruct_lightning_ckpt_uses_its_student_ema_module(dit, tmp_path):
    """DiDi's .ckpt: backbone.* (training student), student_ema.*, discriminator.*; no EMA list."""
    ema = ref.random_dit(seed=6)
    extra_state = {f"student_ema.{k}": v for k, v in ema.state_dict().items()}
    extra_state.update({f"discriminator.{k}": v for k, v in ref.didi_discriminator(seed=2).state_dict().items()})
    path = ref.write_lightning(tmp_path / "didi-instruct.ckpt", dit, shadow=[], extra_state=extra_state)
    a, _ = load_teacher(str(path), TEXT)
    assert a.provenance.weights == "ema (student_ema)"
    assert_matches(a, ema)
    assert_matches(load_teacher(str(path), TEXT, use_ema=False)[0], dit)


def test_lightning_ema_list_of_wrong_length(dit, tmp_path):
    path = ref.write_lightning(tmp_path / "bad.ckpt", dit, shadow=[p.detach() for p in dit.parameters()][:-1])
    with pytest.raises(CheckpointError, match=r"EMA holds \d+ tensors but the model has \d+ parameters"):
        load_teacher(str(path), TEXT)
    load_teacher(str(path), TEXT, use_ema=False)  # the raw weights are intact


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch exploited",))


def test_lightning_metadata_objects_are_never_constructed(dit, tmp_path, monkeypatch):
    """The OmegaConf config and the pickled tokenizer are read as inert placeholders."""
    import omegaconf
    import tokenizers

    path = ref.write_lightning(tmp_path / "mdlm.ckpt", dit)

    def boom(*_):
        raise AssertionError("foreign code ran while loading")

    monkeypatch.setattr(omegaconf.DictConfig, "__setstate__", boom)
    monkeypatch.setattr(tokenizers.Tokenizer, "__setstate__", boom)
    adapter, _ = load_teacher(str(path), TEXT)
    assert adapter.spec.max_length == 16  # the length came from the saved Hydra config


def test_lightning_duo_uniform_state_model_is_refused(dit, tmp_path):
    config = {**ref.hydra_config(dit), "algo": {"name": "duo", "parameterization": "mean"}, "parameterization": "mean"}
    path = ref.write_lightning(tmp_path / "duo.ckpt", dit, config=config)
    with pytest.raises(CheckpointError, match=r"'duo' model .*not a masked \(SUBS\) teacher.*50257 is \[PAD\]"):
        load_teacher(str(path), TEXT)


def test_lightning_pickle_never_runs_foreign_code(dit, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = ref.write_lightning(tmp_path / "evil.ckpt", dit, extra={"callbacks": Exploit()})
    with pytest.raises(CheckpointError, match="system.*weights_only=True"):
        load_teacher(str(path), TEXT)
    assert not (tmp_path / "exploited").exists()


def test_didi_instruct_student_and_discriminator(dit, tmp_path):
    disc_ref = ref.didi_discriminator(seed=3)
    adapter, _ = load_teacher(str(ref.write_mixin(tmp_path / "didi", dit, discriminator=disc_ref)), TEXT)
    assert adapter.provenance.format == "didi-instruct-hf"
    assert_matches(adapter, dit)
    disc = adapter.bundled_discriminator(bf16=False)
    x, t = _input(1), torch.tensor([0.3, 0.8])
    sigma = adapter.schedule.sigma(t)
    with torch.no_grad():
        h, _ = disc_ref.trunk(x, sigma)  # DiDi calls its discriminator with the real σ(t)
        want = disc_ref.output_layer(h).squeeze(-1)
        got = disc(x, t)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    # reward-guided sampling uses the discriminator shipped with the student
    r = CliRunner().invoke(app, ["sample", "--domain", "text", "--checkpoint", str(tmp_path / "didi"), "--sampler", "rgas",
                                 "--nfe", "2", "--num-samples", "1"])
    assert r.exit_code == 0, r.output
    assert "discriminator calls" in r.stderr


def test_missing_key_is_one_clear_error(dit, tmp_path):
    state = ref.Wrapper(dit).state_dict()
    state["noise.sigma_min"] = torch.zeros(())  # a wrapper's own tensors are not the network: ignored
    state.pop("backbone.blocks.1.attn_out.weight")
    with pytest.raises(CheckpointError, match=r"1 missing keys: blocks\.1\.attn_out\.weight") as e:
        load_teacher(str(ref.write_hf(tmp_path / "m", dit, state=state)), TEXT)
    assert "\n" not in str(e.value)


def test_wrong_shape_is_one_clear_error(dit, tmp_path):
    state = ref.Wrapper(dit).state_dict()
    state["backbone.blocks.1.mlp.0.bias"] = torch.zeros(7)
    with pytest.raises(CheckpointError, match=r"wrong shapes: blocks\.1\.mlp\.0\.bias \(7,\)"):
        load_teacher(str(ref.write_hf(tmp_path / "s", dit, state=state)), TEXT)


def test_wrong_vocab_is_one_clear_error(tmp_path):
    small = ref.random_dit(vocab=1000)
    with pytest.raises(CheckpointError, match="vocabulary of 1000 classes, but MDLM-family teachers have 50258"):
        load_teacher(str(ref.write_hf(tmp_path / "v", small)), TEXT)
    # a config that does not describe the weights is named as such
    with pytest.raises(CheckpointError, match="config.json does not describe these weights.*vocab_size: config 50258"):
        load_teacher(str(ref.write_hf(tmp_path / "c", small, config=ref.hf_config(small, vocab_size=50258))), TEXT)


def _cache_snapshot(repo, files, dit):
    """Lay out a Hugging Face cache entry as huggingface_hub does (refs/main → snapshot)."""
    from huggingface_hub import constants

    root = os.path.join(constants.HF_HUB_CACHE, f"models--{repo.replace('/', '--')}")
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = ref.write_hf(__import__("pathlib").Path(root) / "snapshots" / commit, dit)
    for name in ("config.json", "model.safetensors"):
        if name not in files:
            (snap / name).unlink()
    os.makedirs(os.path.join(root, "refs"), exist_ok=True)
    with open(os.path.join(root, "refs", "main"), "w") as f:
        f.write(commit)
    return commit


def test_hub_id_from_local_cache_and_cli_sample(dit, tmp_path):
    commit = _cache_snapshot("test-org/mdlm-tiny", ("config.json", "model.safetensors"), dit)
    adapter, _ = load_teacher("test-org/mdlm-tiny", TEXT)
    assert adapter.provenance.revision == commit
    assert adapter.provenance.id.startswith("test-org/mdlm-tiny@")
    out = tmp_path / "s.jsonl"
    r = CliRunner().invoke(app, ["sample", "--domain", "text", "--checkpoint", "test-org/mdlm-tiny", "--nfe", "2",
                                 "--num-samples", "1", "--output", str(out)])
    assert r.exit_code == 0, r.output
    assert '"checkpoint": "test-org/mdlm-tiny@' in out.read_text()


def test_hub_id_with_missing_files_names_them(dit):
    _cache_snapshot("test-org/mdlm-partial", ("config.json",), dit)
    r = CliRunner().invoke(app, ["sample", "--domain", "text", "--checkpoint", "test-org/mdlm-partial", "--nfe", "2"])
    one_error_line(r, "lacks model.safetensors; download the complete checkpoint (`hf download "
                      "test-org/mdlm-partial model.safetensors --revision 0123456789abcdef")
    r = CliRunner().invoke(app, ["sample", "--domain", "text", "--checkpoint", "test-org/not-cached", "--nfe", "2"])
    one_error_line(r, "not in the local Hugging Face cache")


def test_distill_and_sample_from_a_lightning_teacher(dit, tmp_path):
    """CLI end to end: --raw teacher from a .ckpt (length from a config.json beside it),
    a local --corpus in GPT-2 ids, and the student samples with its saved GPT-2 tokenizer."""
    import json

    (tmp_path / "t").mkdir()
    # no model group in the saved config: the length comes from the config.json beside the file
    ckpt = ref.write_lightning(tmp_path / "t" / "mdlm.ckpt", dit, ema_dit=ref.random_dit(seed=9),
                               config={"parameterization": "subs"})
    (tmp_path / "t" / "config.json").write_text(json.dumps(ref.hydra_config(dit, length=16)))
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": f"Document {i}: the cat sat on mat {i}."}) + "\n" for i in range(60)))
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["distill", "--domain", "text", "--teacher", str(ckpt), "--raw", "--corpus", str(corpus),
                                 "--out", str(out), "--steps", "2", "--ckpt-every", "2", "--batch-size", "2",
                                 "--group-size", "2", "--disc-warmup-steps", "1", "--threads", "1"])
    assert r.exit_code == 0, r.output
    from didi_seq.io.checkpoint import load_checkpoint

    student = load_checkpoint(out)
    teacher = student.provenance["teacher"]
    assert teacher["format"] == "lightning-ckpt" and teacher["weights"] == "raw"
    assert student.provenance["validation_sha256"] and student.config["spec"]["mask_id"] == 50257
    assert student.config["spec"]["max_length"] == 16
    s = CliRunner().invoke(app, ["sample", "--domain", "text", "--checkpoint", str(out), "--nfe", "2", "--num-samples", "1"])
    assert s.exit_code == 0, s.output
    adapter, tok = load_teacher(str(out), TEXT)
    assert tok.encode_batch(["Hello world"]) == [[15496, 995]]


@pytest.mark.parametrize("over, fragment", [
    ({"n_blocks": 10**9}, "does not describe these weights"),  # the shapes decide the architecture
    ({"n_heads": 3}, "does not describe these weights"),
    ({"model_length": -5}, "invalid model config"),
])
def test_untrusted_mdlm_config_is_checked_before_the_network_is_built(dit, tmp_path, over, fragment):
    """An MDLM-format config.json is as untrusted as a native one: the architecture comes from the
    tensor shapes, and what the config adds (heads, length) is validated before the DiT is allocated."""
    path = ref.write_hf(tmp_path / "m", dit, config=ref.hf_config(dit, **over))
    with pytest.raises(CheckpointError, match=fragment):
        load_teacher(str(path), TEXT)
